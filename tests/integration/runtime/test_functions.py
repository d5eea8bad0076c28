"""functions.py + worker.py: handlers run in isolated, warm, concurrent worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tidings.local import functions
from tidings.local.functions import FunctionRunner
from tidings.local.model import Function, Invocation, LocalApp

AWS_ENDPOINT = "http://127.0.0.1:1"  # nothing listens: these handlers do not call AWS


def make_function(
    root: Path, logical_id: str, source: str, *, timeout_s: float = 10.0, **extra: Any
) -> Function:
    code_dir = root / logical_id
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "app.py").write_text(textwrap.dedent(source))
    return Function(
        logical_id=logical_id,
        name=f"local-{logical_id}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:local-{logical_id}",
        code_dir=code_dir,
        handler="app.handler",
        runtime="python3.12",
        timeout_s=timeout_s,
        memory_mb=256,
        environment=extra.pop("environment", {}),
        **extra,
    )


ENV_HANDLER = """
import os
def handler(event, context):
    return {
        "color": os.environ.get("COLOR"),
        "other": os.environ.get("ONLY_IN_B"),
        "name": context.function_name,
        "arn": context.invoked_function_arn,
        "request_id": context.aws_request_id,
        "memory": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "endpoint": os.environ["AWS_ENDPOINT_URL"],
        "region": os.environ["AWS_REGION"],
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "leaked": os.environ.get("TIDINGS_TEST_SECRET"),
    }
"""


@pytest.fixture
async def runner_factory(tmp_path: Path) -> AsyncIterator[Any]:
    runners: list[FunctionRunner] = []

    async def create(functions: list[Function], **options: Any) -> FunctionRunner:
        app = LocalApp(template_path=tmp_path / "template.yaml", region="eu-west-1", parameters={})
        app.functions = {function.logical_id: function for function in functions}
        runner = FunctionRunner(app, AWS_ENDPOINT, **{"watch": False, **options})
        await runner.start()
        runners.append(runner)
        return runner

    yield create
    for runner in runners:
        await runner.stop()


async def test_environment_is_per_function_and_isolated(
    tmp_path: Path, runner_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_TEST_SECRET", "must-not-leak")
    first = make_function(tmp_path, "A", ENV_HANDLER, environment={"COLOR": "red"})
    second = make_function(tmp_path, "B", ENV_HANDLER, environment={"COLOR": "blue", "ONLY_IN_B": "yes"})
    runner = await runner_factory([first, second])
    a, b = await asyncio.gather(runner.invoke("A", {}), runner.invoke("B", {}))
    assert a.ok and b.ok, (a, b)
    assert (a.result["color"], a.result["other"]) == ("red", None)
    assert (b.result["color"], b.result["other"]) == ("blue", "yes")
    assert a.result["name"] == "local-A"
    assert a.result["arn"] == first.arn
    assert a.result["request_id"] == a.request_id
    assert a.result["memory"] == "256"
    assert 0 < a.result["remaining"] <= 10_000
    assert (a.result["endpoint"], a.result["region"]) == (AWS_ENDPOINT, "eu-west-1")
    assert a.result["key"] == "local"
    assert a.result["task_root"] == str(first.code_dir)
    assert a.result["leaked"] is None


async def test_layer_is_importable(tmp_path: Path, runner_factory: Any) -> None:
    plain_layer = tmp_path / "layer" / "python"
    (plain_layer / "helpers").mkdir(parents=True)
    (plain_layer / "helpers" / "__init__.py").write_text("GREETING = 'hello from layer'\n")
    package_layer = tmp_path / "src" / "core_pkg"  # a package folder used as a makefile layer
    package_layer.mkdir(parents=True)
    (package_layer / "__init__.py").write_text("NAME = 'core'\n")
    source = """
    import helpers, core_pkg
    def handler(event, context):
        return [helpers.GREETING, core_pkg.NAME]
    """
    function = make_function(tmp_path, "Layered", source, layer_dirs=(plain_layer, package_layer))
    runner = await runner_factory([function])
    invocation = await runner.invoke("Layered", {})
    assert invocation.ok, invocation
    assert invocation.result == ["hello from layer", "core"]


COUNTER_HANDLER = """
import os
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    return {"count": COUNT, "pid": os.getpid()}
"""


async def test_warm_worker_is_reused_and_first_call_is_cold(tmp_path: Path, runner_factory: Any) -> None:
    runner = await runner_factory([make_function(tmp_path, "Counter", COUNTER_HANDLER)])
    first = await runner.invoke("Counter", {})
    second = await runner.invoke("Counter", {})
    assert (first.cold, second.cold) == (True, False)
    assert (first.result["count"], second.result["count"]) == (1, 2)
    assert first.result["pid"] == second.result["pid"]


SLOW_HANDLER = """
import time
def handler(event, context):
    started = time.time()
    time.sleep(event["sleep"])
    return {"started": started, "ended": time.time()}
"""


async def test_slow_invocations_run_concurrently(tmp_path: Path, runner_factory: Any) -> None:
    runner = await runner_factory([make_function(tmp_path, "Slow", SLOW_HANDLER)])
    first, second = await asyncio.gather(
        runner.invoke("Slow", {"sleep": 1.0}), runner.invoke("Slow", {"sleep": 1.0})
    )
    assert first.ok and second.ok
    # overlap: each started before the other ended
    assert first.result["started"] < second.result["ended"]
    assert second.result["started"] < first.result["ended"]


async def test_max_workers_serialises_invocations(tmp_path: Path, runner_factory: Any) -> None:
    runner = await runner_factory([make_function(tmp_path, "Slow", SLOW_HANDLER)], max_workers_per_function=1)
    first, second = await asyncio.gather(
        runner.invoke("Slow", {"sleep": 0.3}), runner.invoke("Slow", {"sleep": 0.3})
    )
    ordered = sorted([first.result, second.result], key=lambda result: result["started"])
    assert ordered[0]["ended"] <= ordered[1]["started"]


async def test_timeout_kills_the_worker(tmp_path: Path, runner_factory: Any) -> None:
    function = make_function(tmp_path, "Sleepy", SLOW_HANDLER, timeout_s=1.0)
    runner = await runner_factory([function])
    timed_out = await runner.invoke("Sleepy", {"sleep": 30})
    assert not timed_out.ok
    assert timed_out.error_type == "Sandbox.Timedout"
    assert timed_out.error_message == "Task timed out after 1.00 seconds"
    after = await runner.invoke("Sleepy", {"sleep": 0})
    assert after.ok and after.cold


CRASH_HANDLER = """
import os
def handler(event, context):
    if event.get("crash"):
        os._exit(3)
    return "alive"
"""


async def test_crashed_worker_is_replaced(tmp_path: Path, runner_factory: Any) -> None:
    runner = await runner_factory([make_function(tmp_path, "Crashy", CRASH_HANDLER)])
    assert (await runner.invoke("Crashy", {})).result == "alive"
    crashed = await runner.invoke("Crashy", {"crash": True})
    assert not crashed.ok
    assert crashed.error_type == "Runtime.ExitError"
    assert "exit status 3" in (crashed.error_message or "")
    recovered = await runner.invoke("Crashy", {})
    assert recovered.ok and recovered.cold and recovered.result == "alive"


ERROR_HANDLER = """
import logging
logger = logging.getLogger()
logger.setLevel(logging.INFO)
class JobMissing(Exception):
    pass
def handler(event, context):
    print("printed", event["n"])
    logger.info("logged %s", event["n"])
    if event.get("fail"):
        raise JobMissing("no such job")
    return event["n"]
"""


async def test_errors_and_logs_are_reported_like_lambda(tmp_path: Path, runner_factory: Any) -> None:
    runner = await runner_factory([make_function(tmp_path, "Errs", ERROR_HANDLER)])
    good = await runner.invoke("Errs", {"n": 1})
    bad = await runner.invoke("Errs", {"n": 2, "fail": True})
    assert good.ok and good.result == 1
    assert "printed 1" in good.logs and "logged 1" in good.logs
    assert good.request_id in good.logs
    assert "printed 2" not in good.logs  # each invocation has its own logs
    assert not bad.ok
    assert (bad.error_type, bad.error_message) == ("JobMissing", "no such job")
    assert bad.traceback and "raise JobMissing" in bad.traceback
    assert "printed 2" in bad.logs and "printed 1" not in bad.logs


async def test_import_error_and_unknown_function(tmp_path: Path, runner_factory: Any) -> None:
    runner = await runner_factory([make_function(tmp_path, "Broken", "import does_not_exist_anywhere\n")])
    broken = await runner.invoke("Broken", {})
    assert (broken.ok, broken.error_type) == (False, "Runtime.ImportModuleError")
    assert "does_not_exist_anywhere" in (broken.error_message or "")
    missing = await runner.invoke("Nope", {})
    assert (missing.ok, missing.error_type) == (False, "ResourceNotFoundException")


async def test_on_invocation_listener_sees_every_invocation(tmp_path: Path, runner_factory: Any) -> None:
    seen: list[tuple[str, str, str, dict[str, Any]]] = []

    def listen(invocation: Invocation, function_id: str, source: str, event: dict[str, Any]) -> None:
        seen.append((invocation.request_id, function_id, source, event))

    runner = await runner_factory([make_function(tmp_path, "Counter", COUNTER_HANDLER)], on_invocation=listen)
    invocation = await runner.invoke("Counter", {"x": 1}, source="$connect")
    assert seen == [(invocation.request_id, "Counter", "$connect", {"x": 1})]


async def test_editing_a_handler_reloads_it(tmp_path: Path, runner_factory: Any) -> None:
    function = make_function(tmp_path, "Editable", "def handler(event, context):\n    return 'v1'\n")
    runner = await runner_factory([function], watch=True)
    await asyncio.sleep(0.3)  # let the watcher start watching before the edit
    assert (await runner.invoke("Editable", {})).result == "v1"
    (function.code_dir / "app.py").write_text("def handler(event, context):\n    return 'v2'\n")
    result: Invocation | None = None
    for _ in range(200):  # the watcher debounces; poll until the reload lands (bounded)
        result = await runner.invoke("Editable", {})
        if result.result == "v2":
            break
        await asyncio.sleep(0.1)
    assert result is not None and result.result == "v2"
    assert result.cold
    assert runner.reloads >= 1


CORE_LAYER = Path(__file__).resolve().parents[3] / "src" / "tidings_core"
# the template adds this layer when `Tracing: opentelemetry` (its requirements.txt: the OTel SDK)
OTEL_LAYER = Path(__file__).resolve().parents[3] / "layers" / "opentelemetry"
TRACED_HANDLER = """
from tidings_core import tracing
tracer = tracing.tracer()
@tracer.capture_lambda_handler
def handler(event, context):
    tracer.put_annotation(key="job_id", value="job-7")
    return {"ok": True}
"""


async def test_opentelemetry_spans_land_in_the_invocation_log(tmp_path: Path, runner_factory: Any) -> None:
    """`Tracing: opentelemetry` locally: no X-Ray endpoint, each span is a JSON line in the log."""
    environment = {"TRACING": "opentelemetry", "POWERTOOLS_SERVICE_NAME": "tidings"}
    function = make_function(
        tmp_path, "Traced", TRACED_HANDLER, layer_dirs=(CORE_LAYER, OTEL_LAYER), environment=environment
    )
    runner = await runner_factory([function])
    first, second = [await runner.invoke("Traced", {}) for _ in range(2)]
    for invocation in (first, second):
        assert invocation.ok, invocation
        spans = [json.loads(line) for line in invocation.logs.splitlines() if line.startswith('{"name"')]
        [span] = spans  # this invocation's span only, flushed before it returned
        assert span["name"] == "## handler"
        assert span["attributes"]["job_id"] == "job-7"
        assert "job_id" in span["attributes"]["aws.xray.annotations"]
    assert first.logs.count('"ColdStart": true') == 1 and '"ColdStart": true' not in second.logs


NICENESS_HANDLER = """
import os, subprocess, sys
def handler(event, context):
    code = "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"worker": os.getpriority(os.PRIO_PROCESS, 0), "child": int(child.stdout)}
"""


async def test_function_workers_and_what_they_start_run_nicer_than_the_stack(
    tmp_path: Path, runner_factory: Any
) -> None:
    """On AWS no function code shares a CPU with the gateway, the bus or DynamoDB: here workers
    (and an ffmpeg they start) give way to the stack's own processes."""
    runner = await runner_factory([make_function(tmp_path, "Nice", NICENESS_HANDLER)])
    invocation = await runner.invoke("Nice", {})
    assert invocation.ok, invocation.error_message
    own = os.getpriority(os.PRIO_PROCESS, 0)
    expected = min(own + functions.WORKER_NICENESS, 19)
    assert functions.WORKER_NICENESS > 0
    assert invocation.result == {"worker": expected, "child": expected}
