"""The client and the `token`/`watch` commands import nothing from the `local` extra."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tidings.cli import LOCAL_EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[3]


def test_importing_the_client_and_the_cli_loads_no_local_extra_module() -> None:
    probe = (
        "import sys, tidings.cli, tidings.jobs, tidings.sample_events\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert loaded & LOCAL_EXTRA_MODULES == set()


def test_the_base_dependencies_are_the_slim_clients_and_make_setup_installs_the_local_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {Requirement(spec).name.lower() for spec in project["dependencies"]}
    # websockets, PyJWT, boto3, botocore (installed with boto3, imported directly) and httptools
    # (push.py's HTTP answers, in C: the one small compiled package tidings_core posts with)
    assert base == {"websockets", "pyjwt", "boto3", "botocore", "httptools"}
    local = {Requirement(spec).name.lower() for spec in project["optional-dependencies"]["local"]}
    assert {"moto", "aws-sam-translator", "aiohttp", "watchfiles", "pynamodb", "pydantic"} <= local
    assert "'.[local,dev]'" in (ROOT / "Makefile").read_text()
