"""stepfunctions.py: the ASL language pieces, with an in-process invoker that records calls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tidings.local.model import Function, Invocation, LocalApp, StateMachine
from tidings.local.stepfunctions import (
    StatesError,
    StepFunctions,
    apply_template,
    evaluate_intrinsic,
    read_path,
    write_path,
)

ARN = "arn:aws:lambda:us-east-1:123456789012:function:work"


class RecordingInvoker:
    """Answers like a function that echoes, fails on `fail`, answers `grow` characters on `grow`,
    and tracks concurrent calls."""

    def __init__(self) -> None:
        self.running = 0
        self.most_running = 0
        self.release = asyncio.Event()
        self.two_running = asyncio.Event()
        self.calls: list[Any] = []

    async def invoke(self, function_id: str, event: Any, *, source: str = "") -> Invocation:
        self.calls.append(event)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        if self.running >= 2:
            self.two_running.set()
        try:
            if isinstance(event, dict) and event.get("hold"):
                await self.release.wait()
            if isinstance(event, dict) and event.get("fail"):
                return Invocation(
                    "r", function_id, ok=False, error_type="ItemFailed", error_message="bad item"
                )
            if isinstance(event, dict) and event.get("grow"):
                return Invocation("r", function_id, ok=True, result={"blob": "x" * event["grow"]})
            return Invocation("r", function_id, ok=True, result=event)
        finally:
            self.running -= 1


def service(definition: dict[str, Any], invoker: RecordingInvoker) -> StepFunctions:
    app = LocalApp(template_path=Path("t.yaml"), region="us-east-1", parameters={})
    app.functions["Work"] = Function("Work", "work", ARN, Path("."), "app.handler", "python3.12", 3, 128, {})
    app.state_machines["M"] = StateMachine(
        "M", "m", "arn:aws:states:us-east-1:123456789012:stateMachine:m", definition
    )
    return StepFunctions(app, invoker, retry_delay_scale=0.0, wait_scale=0.0)


async def run(definition: dict[str, Any], data: Any, invoker: RecordingInvoker | None = None) -> Any:
    machines = service(definition, invoker or RecordingInvoker())
    execution = await machines.wait_for(await machines.start_execution("M", data))
    return execution


def test_paths_read_and_write() -> None:
    data = {"a": {"b": [1, {"c": "x"}]}, "detail-type": "T"}
    assert read_path("$.a.b[1].c", data, {}) == "x"
    assert read_path("$['detail-type']", data, {}) == "T"
    assert read_path("$.a.b[*]", data, {}) == [1, {"c": "x"}]
    assert read_path("$$.Map.Item.Index", data, {"Map": {"Item": {"Index": 3}}}) == 3
    with pytest.raises(StatesError):
        read_path("$.missing", data, {})
    assert write_path("$.a.new", data, 5)["a"] == {"b": [1, {"c": "x"}], "new": 5}
    assert write_path(None, data, 5) == data
    assert write_path("$", data, 5) == 5
    assert "new" not in data["a"]  # the input is not changed in place


def test_intrinsic_functions() -> None:
    data = {"name": "clip", "n": 3, "items": [1, 2, 2, 3]}
    assert (
        evaluate_intrinsic("States.Format('job {} has {} parts', $.name, $.n)", data, {})
        == "job clip has 3 parts"
    )
    assert evaluate_intrinsic("States.StringToJson('{\"a\": 1}')", data, {}) == {"a": 1}
    assert evaluate_intrinsic("States.JsonToString($.items)", data, {}) == "[1,2,2,3]"
    assert evaluate_intrinsic("States.ArrayLength(States.ArrayUnique($.items))", data, {}) == 3
    assert evaluate_intrinsic("States.ArrayPartition($.items, 3)", data, {}) == [[1, 2, 2], [3]]
    assert evaluate_intrinsic("States.MathAdd($.n, -1)", data, {}) == 2
    assert evaluate_intrinsic("States.ArrayRange(1, 5, 2)", data, {}) == [1, 3, 5]
    with pytest.raises(StatesError) as failure:
        evaluate_intrinsic("States.Nope(1)", data, {})
    assert failure.value.error == "States.IntrinsicFailure"
    template = {"label.$": "States.Format('#{}', $.n)", "keep": {"x.$": "$.name"}, "list": [{"y.$": "$.n"}]}
    assert apply_template(template, data, {}) == {"label": "#3", "keep": {"x": "clip"}, "list": [{"y": 3}]}


CHOICE = {
    "StartAt": "Pick",
    "States": {
        "Pick": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        {"Variable": "$.n", "NumericGreaterThanEquals": 10},
                        {"Variable": "$.s", "StringMatches": "big*"},
                    ],
                    "Next": "Big",
                },
                {"Variable": "$.n", "NumericLessThanPath": "$.limit", "Next": "Small"},
                {"Not": {"Variable": "$.flag", "IsPresent": True}, "Next": "NoFlag"},
                {"Variable": "$.when", "TimestampGreaterThan": "2024-01-01T00:00:00Z", "Next": "Late"},
            ],
            "Default": "Other",
        },
        "Big": {"Type": "Pass", "Result": "big", "End": True},
        "Small": {"Type": "Pass", "Result": "small", "End": True},
        "NoFlag": {"Type": "Pass", "Result": "no-flag", "End": True},
        "Late": {"Type": "Pass", "Result": "late", "End": True},
        "Other": {"Type": "Fail", "Error": "NoMatch", "Cause": "nothing"},
    },
}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"n": 12, "s": "big-one", "limit": 0, "flag": 1}, "big"),
        ({"n": 12, "s": "small", "limit": 20, "flag": 1}, "small"),
        ({"n": 12, "s": "small", "limit": 0}, "no-flag"),
        ({"n": 12, "s": "x", "limit": 0, "flag": 1, "when": "2025-05-01T00:00:00Z"}, "late"),
    ],
)
async def test_choice_rules(data: dict[str, Any], expected: str) -> None:
    execution = await run(CHOICE, data)
    assert (execution.status, execution.output) == ("SUCCEEDED", expected)


async def test_fail_state_when_no_choice_matches() -> None:
    execution = await run(CHOICE, {"n": 1, "s": "x", "limit": 0, "flag": 1, "when": "2020-01-01T00:00:00Z"})
    assert (execution.status, execution.error, execution.cause) == ("FAILED", "NoMatch", "nothing")


def map_definition(**extra: Any) -> dict[str, Any]:
    return {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "StartAt": "Do",
                    "States": {"Do": {"Type": "Task", "Resource": ARN, "End": True}},
                },
                "End": True,
                **extra,
            }
        },
    }


async def test_map_respects_max_concurrency() -> None:
    invoker = RecordingInvoker()
    machines = service(map_definition(MaxConcurrency=2), invoker)
    arn = await machines.start_execution("M", {"items": [{"hold": True, "i": index} for index in range(5)]})
    await invoker.two_running.wait()  # the first two items are in flight and held
    for _ in range(5):
        await asyncio.sleep(0)  # a third item would start here if the limit were not kept
    assert invoker.running == 2
    invoker.release.set()
    execution = await machines.wait_for(arn)
    assert execution.status == "SUCCEEDED"
    assert [item["i"] for item in execution.output] == [0, 1, 2, 3, 4]
    assert invoker.most_running == 2


async def test_map_failure_and_tolerated_failures() -> None:
    items = {"items": [{"i": 0}, {"i": 1, "fail": True}, {"i": 2}]}
    failed = await run(map_definition(), items)
    assert (failed.status, failed.error) == ("FAILED", "ItemFailed")
    tolerant = await run(map_definition(ToleratedFailureCount=1), items)
    assert tolerant.status == "SUCCEEDED"
    assert tolerant.output == [{"i": 0}, None, {"i": 2}]
    strict = await run(map_definition(ToleratedFailurePercentage=0), items)
    assert (strict.status, strict.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")


async def test_task_timeout_is_states_timeout_and_task_failed_does_not_catch_it() -> None:
    definition = {
        "StartAt": "Slow",
        "States": {
            "Slow": {
                "Type": "Task",
                "Resource": ARN,
                "TimeoutSeconds": 0.05,
                "Catch": [
                    {"ErrorEquals": ["States.TaskFailed"], "Next": "Wrong"},
                    {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.why", "Next": "Right"},
                ],
                "End": True,
            },
            "Wrong": {"Type": "Succeed"},
            "Right": {"Type": "Pass", "OutputPath": "$.why.Error", "End": True},
        },
    }
    execution = await run(definition, {"hold": True})
    assert (execution.status, execution.output) == ("SUCCEEDED", "States.Timeout")


async def test_lambda_invoke_integration_wraps_the_payload() -> None:
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "work", "Payload": {"job.$": "$.job"}},
                "OutputPath": "$.Payload",
                "End": True,
            }
        },
    }
    execution = await run(definition, {"job": "j", "other": 1})
    assert (execution.status, execution.output) == ("SUCCEEDED", {"job": "j"})


def catch_all(state: dict[str, Any]) -> dict[str, Any]:
    """`state` retried and caught by States.ALL (AWS: neither may take States.Runtime or
    States.DataLimitExceeded)."""
    return {
        "StartAt": "Work",
        "States": {
            "Work": {
                **state,
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }


async def test_states_all_does_not_catch_or_retry_a_runtime_error() -> None:
    invoker = RecordingInvoker()
    definition = catch_all({"Type": "Task", "Resource": ARN, "Parameters": {"x.$": "$.missing"}})
    execution = await run(definition, {"present": 1}, invoker)
    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")
    assert "$.missing" in (execution.cause or "")
    assert invoker.calls == []  # neither retried nor caught: the path fails before any call


async def test_states_all_does_not_catch_or_retry_a_result_over_the_data_limit() -> None:
    invoker = RecordingInvoker()
    under = await run(catch_all({"Type": "Task", "Resource": ARN}), {"grow": 262_000}, invoker)
    assert (under.status, len(under.output["blob"])) == ("SUCCEEDED", 262_000)
    invoker.calls.clear()
    # 256 KiB of characters plus the JSON around them: over Step Functions' payload quota
    over = await run(catch_all({"Type": "Task", "Resource": ARN}), {"grow": 262_144}, invoker)
    assert (over.status, over.error) == ("FAILED", "States.DataLimitExceeded")
    assert len(invoker.calls) == 1  # not retried either


async def test_an_input_over_the_data_limit_after_parameters_is_never_sent() -> None:
    invoker = RecordingInvoker()
    definition = catch_all(
        {"Type": "Task", "Resource": ARN, "Parameters": {"a.$": "$.text", "b.$": "$.text"}}
    )
    execution = await run(definition, {"text": "y" * 140_000}, invoker)
    assert (execution.status, execution.error) == ("FAILED", "States.DataLimitExceeded")
    assert invoker.calls == []
