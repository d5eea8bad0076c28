"""The emulator knows no app: no module under tidings/local imports Tidings' own code or names its
tables, variables or job ids (issue 13 item 7). Read with `ast`, so comments do not count but
every import form, string and identifier does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "tidings" / "local"
FORBIDDEN_MODULES = ("tidings_core", "tidings.devtools", "tidings.client")
FORBIDDEN_NAMES = ("SUBSCRIPTIONS_TABLE", "TOKEN_SECRET_ARN", "ByConnection", "jobId")


def imported_modules(tree: ast.AST, module: str) -> set[str]:
    """Absolute names of everything `tree` imports (relative imports resolved against `module`)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.rsplit(".", node.level)[0]
                base = f"{package}.{base}" if base else package
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            found.update(
                arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            )
    return found


def named(tree: ast.AST) -> set[str]:
    """Every string constant, identifier and attribute name in `tree` (docstrings included)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.keyword | ast.arg) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def offences(source: str, module: str) -> list[str]:
    tree = ast.parse(source)
    found = [
        f"imports {name}"
        for name in sorted(imported_modules(tree, module))
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_MODULES)
    ]
    texts = named(tree)
    found += [f"names {bad}" for bad in FORBIDDEN_NAMES if any(bad in text for text in texts)]
    return found


MODULES = sorted(EMULATOR.rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(EMULATOR)))
def test_no_emulator_module_knows_tidings(path: Path) -> None:
    assert offences(path.read_text(), module_name(path)) == []


def test_the_emulator_has_modules_to_check() -> None:
    assert len(MODULES) > 20 and EMULATOR / "stack.py" in MODULES


@pytest.mark.parametrize(
    "source",
    [
        "import tidings_core.tokens",
        "from tidings_core import tokens",
        "from tidings.devtools.dev import add_ons",
        "from ..devtools import tokens",
        "from .. import client",
        "importlib.import_module('tidings.client')",
        "TABLE = os.environ['SUBSCRIPTIONS_TABLE']",
        "query(IndexName='ByConnection')",
        "message.get('jobId')",
        "def f(jobId): ...",
        "arn = env.get(f'{prefix}TOKEN_SECRET_ARN')",
    ],
)
def test_the_check_catches_each_form(source: str) -> None:
    assert offences(source, "tidings.local.stack") != []


def test_the_check_passes_generic_code_and_comments() -> None:
    assert (
        offences("import json  # a jobId in a comment is not code\nx = 'subscriptions'\n", "tidings.local.x")
        == []
    )
