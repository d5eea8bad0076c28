"""runtimes.py + functions.py: the declared interpreter (or the nearest, with a warning) and a
function's own packages, installed once into a cache and reused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tidings.local.functions import FunctionRunner
from tidings.local.model import Function, LocalApp
from tidings.local.runtimes import RuntimeSetup, find_interpreters

VERSION_HANDLER = """
import sys
def handler(event, context):
    return list(sys.version_info[:2])
"""


def make_function(root: Path, logical_id: str, source: str, requirements: str | None = None) -> Function:
    code_dir = root / logical_id
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "app.py").write_text(textwrap.dedent(source))
    if requirements is not None:
        (code_dir / "requirements.txt").write_text(requirements)
    return Function(
        logical_id=logical_id,
        name=f"local-{logical_id}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:local-{logical_id}",
        code_dir=code_dir,
        handler="app.handler",
        runtime="python3.12",
        timeout_s=30,
        memory_mb=128,
        environment={},
    )


def app_of(tmp_path: Path, *functions: Function) -> LocalApp:
    app = LocalApp(template_path=tmp_path / "template.yaml", region="us-east-1", parameters={})
    app.functions = {function.logical_id: function for function in functions}
    return app


async def test_machine_without_the_declared_version_falls_back_to_the_nearest_with_one_warning(
    tmp_path: Path,
) -> None:
    others = [interpreter for interpreter in find_interpreters() if interpreter.version != (3, 12)]
    assert others, "this machine needs a Python 3 other than 3.12 for this test"
    nearest = min(others, key=lambda i: (abs(i.version[1] - 12), -i.version[1]))
    lines: list[str] = []
    setup = RuntimeSetup(interpreters=others, progress=lines.append)
    first = make_function(tmp_path, "First", VERSION_HANDLER)
    second = make_function(tmp_path, "Second", VERSION_HANDLER)
    async with FunctionRunner(
        app_of(tmp_path, first, second), "http://127.0.0.1:1", watch=False, runtimes=setup
    ) as runner:
        results = [await runner.invoke("First", {}), await runner.invoke("Second", {})]
    assert all(result.ok for result in results), results
    assert all(result.result == list(nearest.version) for result in results)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "python3.12" in warnings[0], lines


async def test_requirements_are_installed_once_into_the_cache_and_reused(tmp_path: Path) -> None:
    source = """
    import idna
    def handler(event, context):
        return idna.__name__
    """
    function = make_function(
        tmp_path, "WithIdna", source, requirements="# small and pure (not a dependency of boto3)\nidna\n"
    )
    without = make_function(tmp_path, "WithoutIdna", source)
    cache = tmp_path / "cache"
    lines: list[str] = []
    runner = FunctionRunner(
        app_of(tmp_path, function),
        "http://127.0.0.1:1",
        watch=False,
        runtimes=RuntimeSetup(cache_dir=cache, progress=lines.append),
    )
    async with runner:
        ran = await runner.invoke("WithIdna", {})
    # without requirements: the runtime's packages only (the shared cache's environment)
    async with FunctionRunner(app_of(tmp_path, without), "http://127.0.0.1:1", watch=False) as runner:
        missing = await runner.invoke("WithoutIdna", {})
    assert ran.ok and ran.result == "idna", ran
    assert (missing.error_type, missing.error_message) == (
        "Runtime.ImportModuleError",
        "Unable to import module 'app': No module named 'idna'",
    )
    installs = [line for line in lines if line.startswith("Installing packages")]
    assert len(installs) == 1 and "idna" in installs[0], lines  # one pip run for the set
    assert any(line.startswith("  pip: Successfully installed") and "idna" in line for line in lines), lines
    assert not any(str(Path.cwd() / ".venv") in str(path) for path in cache.rglob("*.pth"))

    again: list[str] = []
    reused = RuntimeSetup(cache_dir=cache, progress=again.append)
    async with FunctionRunner(
        app_of(tmp_path, function), "http://127.0.0.1:1", watch=False, runtimes=reused
    ) as runner:
        assert (await runner.invoke("WithIdna", {})).ok
    assert not [line for line in again if line.startswith("Installing")], again


@pytest.mark.parametrize("runtime", ["python3.12"])
def test_the_declared_version_is_on_this_machine(runtime: str) -> None:
    """CI runs where pyenv has 3.12: the declared version is used, without a warning."""
    lines: list[str] = []
    interpreter = RuntimeSetup(progress=lines.append).choose(runtime)
    assert interpreter.version == (3, 12) and lines == []
