# Tidings developer tasks. `make dev` and `make test` set everything up on first use.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
SAM_VENV := .venv-sam

.PHONY: setup system-deps dev test test-fast lint bench build clean

setup: $(STAMP)

# Debian packages the tests need: Chromium for the browser tests, Node/npm for wscat.
system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml package.json scripts/system-deps.sh
	@bash scripts/system-deps.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,dev]'
	npm install --silent --no-audit --no-fund
	@touch $(STAMP)

dev: setup
	$(BIN)/tidings dev

test: setup
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q tests/unit tests/functional

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src tidings

bench: setup
	$(BIN)/python -m bench

# sam build runs in its own venv: aws-sam-cli pins old boto3 and click.
build:
	test -x $(SAM_VENV)/bin/sam || ($(PY) -m venv $(SAM_VENV) && $(SAM_VENV)/bin/pip install --quiet aws-sam-cli)
	PATH="$$(pyenv prefix 3.12.1 2>/dev/null)/bin:$$PATH" $(SAM_VENV)/bin/sam build

clean:
	rm -rf $(VENV) .aws-sam node_modules .tidings
