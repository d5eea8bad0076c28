"""stepfunctions.py: ASL executions whose Tasks run through the FunctionInvoker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tidings.local.functions import FunctionRunner
from tidings.local.stepfunctions import StatesError, StepFunctions
from tidings.local.stepfunctions_api import describe
from tidings.local.template import LocalEndpoints, load_app

from .runtime_stack import running

TEMPLATE = Path(__file__).parent / "apps" / "pipeline" / "template.yaml"


@pytest.fixture
async def machines() -> AsyncIterator[StepFunctions]:
    # no AWS calls in these handlers: no embedded services needed
    app = load_app(TEMPLATE, LocalEndpoints("ws://127.0.0.1:1", "http://127.0.0.1:1", "http://127.0.0.1:1"))
    async with FunctionRunner(app, "http://127.0.0.1:1", watch=False) as runner:
        service = StepFunctions(app, runner, retry_delay_scale=0.01)
        yield service
        await service.stop()


async def test_map_parallel_retry_and_choice(machines: StepFunctions) -> None:
    arn = await machines.start_execution("Pipeline", {"jobId": "j1", "items": [1, 2, 3, 4, 5], "fail": False})
    assert machines.describe_execution(arn).status in ("RUNNING", "SUCCEEDED")
    execution = await machines.wait_for(arn)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    output = execution.output
    assert output["results"] == [
        {"value": value * 2, "index": index, "label": "job j1"} for index, value in enumerate([1, 2, 3, 4, 5])
    ]
    assert output["limit"] == 2
    assert output["parallel"] == [{"attempts": 3}, "side"]
    failures = [e for e in execution.events if e["type"] == "LambdaFunctionFailed"]
    assert [e["lambdaFunctionFailedEventDetails"]["error"] for e in failures] == ["FlakyError", "FlakyError"]
    types = [e["type"] for e in execution.events]
    assert types.count("MapIterationSucceeded") == 5 and types.count("TaskSucceeded") == 5
    assert types[types.index("MapStateStarted") + 1] == "MapRunStarted" and "MapRunSucceeded" in types
    assert types[-1] == "ExecutionSucceeded"
    assert "outcome" not in output
    assert json.loads(describe(execution)["output"]) == output


async def test_catch_routes_the_error_to_the_next_state(machines: StepFunctions) -> None:
    arn = await machines.start_execution("Pipeline", {"jobId": "j2", "items": [], "fail": True})
    execution = await machines.wait_for(arn)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert execution.output["results"] == []
    assert execution.output["error"]["Error"] == "CustomError"
    assert json.loads(execution.output["error"]["Cause"])["errorMessage"] == "it broke"
    assert execution.output["outcome"] == {"recovered": "CustomError"}


async def test_uncaught_error_fails_the_execution_after_retries(machines: StepFunctions) -> None:
    arn = await machines.start_execution("Strict", {})
    execution = await machines.wait_for(arn)
    assert execution.status == "FAILED"
    assert execution.error == "CustomError"
    assert json.loads(execution.cause or "{}")["errorType"] == "CustomError"
    assert [e["type"] for e in execution.events] == [
        "ExecutionStarted",
        "TaskStateEntered",
        *["LambdaFunctionScheduled", "LambdaFunctionStarted", "LambdaFunctionFailed"] * 2,  # one retry
        "ExecutionFailed",
    ]
    assert execution.events[-1]["executionFailedEventDetails"]["error"] == "CustomError"
    assert describe(execution)["error"] == "CustomError"


async def test_unknown_state_machine_and_duplicate_name(machines: StepFunctions) -> None:
    with pytest.raises(StatesError) as missing:
        await machines.start_execution("Nope", {})
    assert missing.value.error == "StateMachineDoesNotExist"
    await machines.start_execution("Strict", {}, name="once")
    with pytest.raises(StatesError) as duplicate:
        await machines.start_execution("Strict", {}, name="once")
    assert duplicate.value.error == "ExecutionAlreadyExists"


async def test_rule_with_state_machine_target_starts_an_execution() -> None:
    async with running(TEMPLATE) as runtime:
        events = runtime.aws.client("events")
        detail = {"jobId": "from-bus", "items": [7], "fail": False}
        await asyncio.to_thread(
            events.put_events,
            Entries=[{"Source": "pipeline.test", "DetailType": "Start", "Detail": json.dumps(detail)}],
        )
        await runtime.delivery.drain()
        (execution,) = runtime.machines.executions.values()
        assert execution.state_machine_id == "Pipeline"
        assert execution.input == detail  # the rule's InputPath: $.detail
        finished = await runtime.machines.wait_for(execution.arn)
        assert finished.status == "SUCCEEDED", (finished.error, finished.cause)
        assert finished.output["results"] == [{"value": 14, "index": 0, "label": "job from-bus"}]
