"""stepfunctions_api.py: the Step Functions API of the embedded endpoint runs the template's machines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .runtime_stack import Runtime, running
from .test_stepfunctions import TEMPLATE


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    async with running(TEMPLATE) as started:
        yield started


def machine_arn(sfn: Any, name_part: str) -> str:
    [arn] = [
        m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"] if name_part in m["name"]
    ]
    return str(arn)


async def stopped(sfn: Any, execution_arn: str, limit_s: float = 60.0) -> dict[str, Any]:
    """DescribeExecution once the execution has left RUNNING (moto's own mock never does)."""
    async with asyncio.timeout(limit_s):
        while True:
            described: dict[str, Any] = await asyncio.to_thread(
                sfn.describe_execution, executionArn=execution_arn
            )
            if described["status"] != "RUNNING":
                return described
            await asyncio.sleep(0.05)


def history(sfn: Any, execution_arn: str, **options: Any) -> list[dict[str, Any]]:
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn, **options)
    return [event for page in pages for event in page["events"]]


async def test_start_execution_on_the_endpoint_runs_the_machine(runtime: Runtime) -> None:
    sfn = runtime.aws.client("stepfunctions")
    arn = machine_arn(sfn, "Pipeline")
    started = await asyncio.to_thread(
        sfn.start_execution,
        stateMachineArn=arn,
        name="from-boto3",
        input=json.dumps({"jobId": "api", "items": [1, 2, 3], "fail": False}),
    )
    assert started["executionArn"].endswith(":from-boto3")
    described = await stopped(sfn, started["executionArn"])
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["results"] == [
        {"value": v * 2, "index": i, "label": "job api"} for i, v in enumerate([1, 2, 3])
    ]
    assert described["stopDate"] >= described["startDate"]

    # the whole run, paginated (pages of 7), as GetExecutionHistory gives it
    events = await asyncio.to_thread(history, sfn, started["executionArn"], PaginationConfig={"PageSize": 7})
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert json.loads(events[0]["executionStartedEventDetails"]["input"])["jobId"] == "api"
    assert json.loads(events[-1]["executionSucceededEventDetails"]["output"]) == output
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    assert entered[:2] == ["Prepare", "Fanout"] and entered.count("Double") == 3
    assert {"MapRunStarted", "MapRunSucceeded", "ParallelStateStarted", "ChoiceStateExited"} <= set(types)
    failed = [e["lambdaFunctionFailedEventDetails"] for e in events if e["type"] == "LambdaFunctionFailed"]
    assert [f["error"] for f in failed] == ["FlakyError", "FlakyError"]  # retried twice, then succeeded
    newest = await asyncio.to_thread(
        sfn.get_execution_history, executionArn=started["executionArn"], reverseOrder=True, maxResults=1
    )
    assert [e["type"] for e in newest["events"]] == ["ExecutionSucceeded"] and "nextToken" in newest

    listed = await asyncio.to_thread(sfn.list_executions, stateMachineArn=arn)
    assert [(e["name"], e["status"]) for e in listed["executions"]] == [("from-boto3", "SUCCEEDED")]


async def test_a_failed_run_says_its_error_and_bad_calls_get_aws_errors(runtime: Runtime) -> None:
    sfn = runtime.aws.client("stepfunctions")
    started = await asyncio.to_thread(sfn.start_execution, stateMachineArn=machine_arn(sfn, "Strict"))
    described = await stopped(sfn, started["executionArn"])
    assert (described["status"], described["error"]) == ("FAILED", "CustomError")
    assert json.loads(described["cause"])["errorMessage"] == "it broke"
    events = await asyncio.to_thread(history, sfn, started["executionArn"], includeExecutionData=False)
    assert events[-1]["executionFailedEventDetails"]["error"] == "CustomError"
    assert "input" not in events[0]["executionStartedEventDetails"]

    with pytest.raises(ClientError) as bad_input:
        await asyncio.to_thread(
            sfn.start_execution, stateMachineArn=machine_arn(sfn, "Strict"), input="{nope"
        )
    assert bad_input.value.response["Error"]["Code"] == "InvalidExecutionInput"
    with pytest.raises(ClientError) as missing:
        await asyncio.to_thread(
            sfn.describe_execution,
            executionArn=started["executionArn"].replace(":execution:", ":execution:x"),
        )
    assert missing.value.response["Error"]["Code"] == "ExecutionDoesNotExist"  # moto's answer: not ours


async def test_stop_execution_aborts_a_running_execution(runtime: Runtime) -> None:
    sfn = runtime.aws.client("stepfunctions")
    started = await asyncio.to_thread(sfn.start_execution, stateMachineArn=machine_arn(sfn, "Sleepy"))
    running_now = await asyncio.to_thread(sfn.describe_execution, executionArn=started["executionArn"])
    assert running_now["status"] == "RUNNING"  # a 600 s Wait state
    await asyncio.to_thread(
        sfn.stop_execution, executionArn=started["executionArn"], error="Enough", cause="the test is done"
    )
    described = await stopped(sfn, started["executionArn"], limit_s=5)
    assert (described["status"], described["error"], described["cause"]) == (
        "ABORTED",
        "Enough",
        "the test is done",
    )
    events = await asyncio.to_thread(history, sfn, started["executionArn"])
    assert [e["type"] for e in events] == ["ExecutionStarted", "WaitStateEntered", "ExecutionAborted"]
    assert events[-1]["executionAbortedEventDetails"] == {"error": "Enough", "cause": "the test is done"}
