"""Every third-party package the shipped code imports is declared in pyproject.toml.

A package that arrives only as someone else's dependency (cfn-lint through nothing, jsonpath-ng
through moto's extras) disappears the day that dependency drops it.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# our own top-level modules: packages, Lambda function folders and their modules
FIRST_PARTY = {
    "tidings",
    "tidings_core",
    "bench",
    "transcoder",
    "transcode_worker",
    "uploads",
    "app",
    "upload_rules",
}
# groups of optional dependencies the shipped code may import (dev tools are for tests and lint)
SHIPPED_EXTRAS = {"local"}


class _Imports(ast.NodeVisitor):
    """Absolute imports outside `if TYPE_CHECKING:` blocks (those need only the type stubs)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names += [alias.name for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.names.append(node.module)


def _imports(folder: Path) -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        visitor = _Imports()
        visitor.visit(ast.parse(path.read_text(), str(path)))
        for name in visitor.names:
            found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _declared(extras: set[str] | None) -> set[str]:
    """Declared distributions: the dependencies and the named extras (None: every extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for group, members in project.get("optional-dependencies", {}).items():
        if extras is None or group in extras:
            specs += members
    return {canonicalize_name(Requirement(spec).name) for spec in specs if not spec.startswith("tidings")}


def _undeclared(folders: list[str], declared: set[str]) -> list[str]:
    distributions = packages_distributions()
    missing = []
    for folder in folders:
        for module, files in sorted(_imports(ROOT / folder).items()):
            if module in sys.stdlib_module_names or module in FIRST_PARTY or module == "__future__":
                continue
            owners = {canonicalize_name(name) for name in distributions.get(module, [])}
            if not owners:
                missing.append(f"{module} (not installed) imported by {sorted(files)}")
            elif not owners & declared:
                missing.append(f"{module} from {sorted(owners)} imported by {sorted(files)}")
    return missing


def test_the_shipped_code_imports_only_declared_packages() -> None:
    # the CLI, the local stack and the Lambda code, without the dev tools
    assert _undeclared(["tidings", "src"], _declared(SHIPPED_EXTRAS)) == []


def test_benchmarks_import_only_declared_packages() -> None:
    assert _undeclared(["bench"], _declared(None)) == []
