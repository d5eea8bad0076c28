"""lambda_async.py: Lambda's retries, event age, destinations and dead-letter queue, with fakes."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tidings.local.lambda_async import LambdaAsync, dead_letter_attributes, destination_record
from tidings.local.model import AsyncInvokeConfig, Function, Invocation, LocalApp

ARN = "arn:aws:lambda:us-east-1:123456789012:function:app-Worker"
NOW = datetime.datetime(2026, 11, 27, 4, 30, 5, 123456, tzinfo=datetime.UTC)


def app_with(config: AsyncInvokeConfig) -> LocalApp:
    worker = Function("Worker", "app-Worker", ARN, Path("."), "app.handler", "python3.12", 3, 128, {})
    return LocalApp(
        Path("template.yaml"), "us-east-1", {}, functions={"Worker": replace(worker, async_config=config)}
    )


def failure(request_id: str = "req-1") -> Invocation:
    return Invocation(
        request_id,
        "Worker",
        ok=False,
        error_type="Boom",
        error_message="down",
        traceback="Traceback\n  line\n",
    )


class ScriptedInvoker:
    """Answers each invoke with the next scripted invocation (or raises it, if it is an exception);
    records the sources and request ids it was given."""

    def __init__(self, *answers: Invocation | Exception) -> None:
        self.answers = list(answers)
        self.sources: list[str] = []
        self.request_ids: list[str | None] = []

    async def invoke(
        self, function_id: str, event: dict[str, Any], *, source: str = "", request_id: str | None = None
    ) -> Invocation:
        self.sources.append(source)
        self.request_ids.append(request_id)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return replace(answer, request_id=request_id or answer.request_id)


class RecordingDestinations:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, dict[str, str] | None, bool]] = []
        self.callers: list[str | None] = []

    async def send(
        self,
        arn: str,
        body: Any,
        attributes: dict[str, str] | None = None,
        *,
        success: bool,
        caller: str | None = None,
    ) -> None:
        self.sent.append((arn, body, attributes, success))
        self.callers.append(caller)


def runner(config: AsyncInvokeConfig, invoker: ScriptedInvoker) -> tuple[LambdaAsync, RecordingDestinations]:
    lambda_async = LambdaAsync(
        app_with(config), invoker, "http://127.0.0.1:1", delay_scale=0.0, clock=lambda: NOW
    )
    destinations = RecordingDestinations()
    lambda_async.destinations = destinations  # type: ignore[assignment]
    return lambda_async, destinations


async def test_retries_twice_by_default_then_drops_with_no_destination(
    caplog: pytest.LogCaptureFixture,
) -> None:
    invoker = ScriptedInvoker(failure("a"), failure("b"), failure("c"))
    lambda_async, destinations = runner(AsyncInvokeConfig(), invoker)
    await lambda_async.invoke("Worker", {"id": "e1"}, source="EventBridge rule R")
    assert invoker.sources == [
        "EventBridge rule R",
        "EventBridge rule R (retry 1)",
        "EventBridge rule R (retry 2)",
    ]
    assert len(set(invoker.request_ids)) == 1 and invoker.request_ids[0]  # one request id for all tries
    assert destinations.sent == [] and (lambda_async.failed, lambda_async.parked) == (1, 0)
    assert "dropped after 3 attempts (RetriesExhausted)" in caplog.text


async def test_a_success_on_retry_goes_to_on_success_only() -> None:
    ok = Invocation("req-2", "Worker", ok=True, result={"done": 1})
    config = AsyncInvokeConfig(
        on_success_arn="arn:aws:sqs:us-east-1:1:ok", on_failure_arn="arn:aws:sqs:us-east-1:1:no"
    )
    lambda_async, destinations = runner(config, ScriptedInvoker(failure(), ok))
    await lambda_async.invoke("Worker", {"id": "e2"}, source="s")
    ((arn, record, attributes, success),) = destinations.sent
    assert (arn, attributes, success) == ("arn:aws:sqs:us-east-1:1:ok", None, True)
    assert (
        record["requestContext"]["condition"] == "Success"
        and record["requestContext"]["approximateInvokeCount"] == 2
    )
    assert record["responsePayload"] == {"done": 1} and "functionError" not in record["responseContext"]
    assert lambda_async.failed == 0


async def test_a_failure_goes_to_the_on_failure_destination_and_the_dead_letter_queue_both() -> None:
    config = AsyncInvokeConfig(
        max_retry_attempts=0,
        on_failure_arn="arn:aws:sns:us-east-1:1:records",
        dead_letter_arn="arn:aws:sqs:us-east-1:1:dlq",
    )
    lambda_async, destinations = runner(config, ScriptedInvoker(failure()))
    await lambda_async.invoke("Worker", {"id": "e3"}, source="s")
    [(record_arn, record, _, success), (dlq_arn, event, attributes, _)] = destinations.sent
    # AWS checks the function's execution role for both sends
    assert destinations.callers == ["Worker", "Worker"]
    assert (record_arn, success) == ("arn:aws:sns:us-east-1:1:records", False)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert (dlq_arn, event) == ("arn:aws:sqs:us-east-1:1:dlq", {"id": "e3"})
    assert attributes is not None and attributes["RequestID"] == record["requestContext"]["requestId"]
    assert (lambda_async.failed, lambda_async.parked) == (1, 2)


async def test_a_runner_that_cannot_run_the_function_counts_as_a_failed_try() -> None:
    ok = Invocation("req-5", "Worker", ok=True, result=None)
    invoker = ScriptedInvoker(OSError("no worker could start"), ok)
    lambda_async, destinations = runner(AsyncInvokeConfig(), invoker)
    await lambda_async.invoke("Worker", {"id": "e7"}, source="s")  # does not raise
    assert len(invoker.sources) == 2 and lambda_async.failed == 0 and destinations.sent == []


async def test_dead_letter_queue_gets_the_event_itself_with_lambdas_attributes() -> None:
    config = AsyncInvokeConfig(max_retry_attempts=1, dead_letter_arn="arn:aws:sqs:us-east-1:1:dlq")
    invoker = ScriptedInvoker(failure("x"), failure("y"))
    lambda_async, destinations = runner(config, invoker)
    await lambda_async.invoke("Worker", {"id": "e4"}, source="s")
    ((arn, body, attributes, _),) = destinations.sent
    assert (arn, body) == ("arn:aws:sqs:us-east-1:1:dlq", {"id": "e4"})
    assert attributes == {"RequestID": invoker.request_ids[0], "ErrorCode": "200", "ErrorMessage": "down"}


async def test_an_event_too_old_for_the_next_wait_ends_as_event_age_exceeded() -> None:
    # 60 s before the first retry fits in 100 s; the 120 s before the second does not
    config = AsyncInvokeConfig(max_event_age_s=100, on_failure_arn="arn:aws:sqs:us-east-1:1:records")
    invoker = ScriptedInvoker(failure(), failure())
    lambda_async, destinations = runner(config, invoker)
    await lambda_async.invoke("Worker", {"id": "e5"}, source="s")
    assert len(invoker.sources) == 2
    record = destinations.sent[0][1]
    assert (record["requestContext"]["condition"], record["requestContext"]["approximateInvokeCount"]) == (
        "EventAgeExceeded",
        2,
    )


def test_destination_record_has_lambdas_shape() -> None:
    worker = app_with(AsyncInvokeConfig()).functions["Worker"]
    record = destination_record(
        worker, {"id": "e6"}, failure("req-9"), attempts=3, condition="RetriesExhausted", now=NOW
    )
    assert record == {
        "version": "1.0",
        "timestamp": "2026-11-27T04:30:05.123Z",
        "requestContext": {
            "requestId": "req-9",
            "functionArn": f"{ARN}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"id": "e6"},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorMessage": "down",
            "errorType": "Boom",
            "stackTrace": ["Traceback", "  line"],
        },
    }


def test_dead_letter_message_is_cut_at_one_kilobyte() -> None:
    long = replace(failure(), error_message="x" * 5000)
    assert len(dead_letter_attributes(long)["ErrorMessage"]) == 1024
