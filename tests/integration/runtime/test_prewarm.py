"""FunctionRunner.prewarm: workers initialized ahead of invocations (Lambda's proactive
initialization), Python and Node.js, through worker.py / node_worker.mjs's init frame."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tidings.local.functions import FunctionRunner

from . import test_node_functions as node
from .test_functions import make_function, runner_factory

__all__ = ["runner_factory"]  # the fixture, shared with test_functions.py

PROBE = """
import os, time
IMPORTED_AT = time.time()
IMPORTS = 0
IMPORTS += 1
def handler(event, context):
    return {"pid": os.getpid(), "imported_at": IMPORTED_AT, "imports": IMPORTS}
"""

# imports slowly, saying its pid first: a prewarm is observably in flight while it sleeps
SLOW_IMPORT = """
import os, time
with open(os.environ["PID_FILE"] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(os.environ["PID_FILE"] + ".tmp", os.environ["PID_FILE"])
time.sleep(float(os.environ["IMPORT_S"]))
def handler(event, context):
    return {"pid": os.getpid()}
"""


def _pid_in(path: Path) -> int | None:
    return int(path.read_text()) if path.exists() else None


async def _wait_for(path: Path, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (pid := _pid_in(path)) is None:
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)
    return pid


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_after_prewarm_the_first_invocation_is_warm(tmp_path: Path, runner_factory: Any) -> None:
    runner: FunctionRunner = await runner_factory([make_function(tmp_path, "Probe", PROBE)])
    outcomes = await runner.prewarm(["Probe", "Missing"])
    assert outcomes == {"Probe": "warm", "Missing": "unknown"}
    invoked_at = time.time()
    first = await runner.invoke("Probe", {})
    assert first.ok, first.error_message
    assert first.cold is False
    assert first.result["imported_at"] < invoked_at  # the import happened at prewarm
    second = await runner.invoke("Probe", {})
    assert second.result["pid"] == first.result["pid"]
    # a function with a worker already is not prewarmed again
    assert await runner.prewarm(["Probe"]) == {"Probe": "skipped"}


async def test_a_function_reserved_to_zero_concurrency_is_never_prewarmed(
    tmp_path: Path, runner_factory: Any
) -> None:
    off = replace(make_function(tmp_path, "Off", PROBE), reserved_concurrency=0)
    runner: FunctionRunner = await runner_factory([off])
    assert await runner.prewarm(["Off"]) == {"Off": "skipped"}
    assert (await runner.invoke("Off", {})).cold


async def test_an_import_error_at_prewarm_surfaces_on_the_invocation(
    tmp_path: Path, runner_factory: Any
) -> None:
    broken = make_function(
        tmp_path, "Broken", "import no_such_module_here\ndef handler(e, c):\n    return 1\n"
    )
    runner: FunctionRunner = await runner_factory([broken])
    assert await runner.prewarm(["Broken"]) == {"Broken": "failed"}
    invocation = await runner.invoke("Broken", {})
    assert not invocation.ok
    assert invocation.error_type == "Runtime.ImportModuleError"
    assert "no_such_module_here" in (invocation.error_message or "")
    assert invocation.cold  # the failed prewarmed worker was discarded: this one started cold


async def test_an_invocation_during_prewarm_takes_the_prewarmed_worker(
    tmp_path: Path, runner_factory: Any
) -> None:
    pid_file = tmp_path / "pid"
    slow = make_function(
        tmp_path, "Slow", SLOW_IMPORT, environment={"PID_FILE": str(pid_file), "IMPORT_S": "1.0"}
    )
    runner: FunctionRunner = await runner_factory([slow])
    warming = runner.prewarm(["Slow"])
    prewarmed_pid = await _wait_for(pid_file)
    invocation = await runner.invoke("Slow", {})  # arrives mid-import
    assert invocation.ok, invocation.error_message
    assert invocation.result["pid"] == prewarmed_pid
    assert invocation.cold is False
    assert await warming == {"Slow": "warm"}


async def test_stop_during_prewarm_leaves_no_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    slow = make_function(
        tmp_path, "Slow", SLOW_IMPORT, environment={"PID_FILE": str(pid_file), "IMPORT_S": "60"}
    )
    runner = FunctionRunner(node.app_of(tmp_path, slow), "http://127.0.0.1:1", watch=False)
    await runner.start()
    warming = runner.prewarm(["Slow"])
    pid = await _wait_for(pid_file)
    await asyncio.wait_for(runner.stop(), timeout=15)
    assert warming.done()
    assert (await warming)["Slow"] in ("failed", "stopped")
    assert _gone(pid)
    assert not runner.run_dir.exists()


async def test_a_code_reload_during_prewarm_discards_the_prewarmed_worker(
    tmp_path: Path, runner_factory: Any
) -> None:
    pid_file = tmp_path / "pid"
    slow = make_function(
        tmp_path, "Slow", SLOW_IMPORT, environment={"PID_FILE": str(pid_file), "IMPORT_S": "0.5"}
    )
    runner: FunctionRunner = await runner_factory([slow])
    warming = runner.prewarm(["Slow"])
    pid = await _wait_for(pid_file)
    await runner.retire({"Slow"})
    assert await warming == {"Slow": "stopped"}
    assert _gone(pid)


async def test_node_functions_are_prewarmed_too(tmp_path: Path) -> None:
    probe = node.make_function(
        tmp_path,
        "NodeProbe",
        {"app.mjs": "const importedAt = Date.now();\nexport const handler = async () => ({ importedAt });\n"},
    )
    broken = node.make_function(
        tmp_path,
        "NodeBroken",
        {"app.js": "require('no-such-package-here');\nexports.handler = async () => 1;\n"},
    )
    async with node.runner_for(tmp_path, probe, broken) as runner:
        assert await runner.prewarm(["NodeProbe", "NodeBroken"]) == {
            "NodeProbe": "warm",
            "NodeBroken": "failed",
        }
        invoked_at = time.time() * 1000
        first = await runner.invoke("NodeProbe", {})
        assert first.ok, first.error_message
        assert first.cold is False
        assert first.result["importedAt"] < invoked_at
        failed = await runner.invoke("NodeBroken", {})
        assert (failed.ok, failed.error_type, failed.cold) == (False, "Runtime.ImportModuleError", True)
