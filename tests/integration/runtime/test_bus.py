"""bus.py + aws.py: PutEvents through the embedded services reaches the right functions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .runtime_stack import APPS, Runtime, running

TEMPLATE = APPS / "bus" / "template.yaml"
BUS = "rt-events"


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    async with running(TEMPLATE) as started:
        yield started


async def put_event(runtime: Runtime, source: str, detail_type: str, detail: dict[str, Any]) -> str:
    events = runtime.aws.client("events")
    response = await asyncio.to_thread(
        events.put_events,
        Entries=[
            {
                "EventBusName": BUS,
                "Source": source,
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                "Resources": ["arn:aws:s3:::example"],
            }
        ],
    )
    assert response["FailedEntryCount"] == 0
    return str(response["Entries"][0]["EventId"])


def records(runtime: Runtime) -> dict[str, dict[str, Any]]:
    table = runtime.aws.client("dynamodb")
    items = table.scan(TableName=runtime.app.tables[0].name)["Items"]
    return {item["pk"]["S"]: item for item in items}


def recorders_for(runtime: Runtime, event_id: str) -> set[str]:
    return {key.split("#")[0] for key in records(runtime) if key.endswith(f"#{event_id}")}


@pytest.mark.parametrize(
    ("source", "detail_type", "detail", "expected"),
    [
        ("shop.books", "Sale", {}, {"Prefix"}),
        ("orders", "Paid", {"status": "paid", "amount": 150}, {"AnythingBut", "Numeric"}),
        ("orders", "Paid", {"status": "cancelled", "amount": 5}, set()),
        ("misc", "Note", {"coupon": "ABC"}, {"Exists"}),
        ("misc", "Order 42 Shipped", {}, {"Wildcard"}),
        ("misc", "Note", {"vip": True}, {"Either"}),
        ("misc", "Note", {"priority": "high"}, {"Either"}),
        ("misc", "Note", {"priority": "low", "amount": 1000}, set()),
    ],
)
async def test_patterns_route_events_to_the_right_functions(
    runtime: Runtime, source: str, detail_type: str, detail: dict[str, Any], expected: set[str]
) -> None:
    event_id = await put_event(runtime, source, detail_type, detail)
    await runtime.delivery.drain()
    assert recorders_for(runtime, event_id) == expected


async def test_function_receives_the_eventbridge_event_shape(runtime: Runtime) -> None:
    event_id = await put_event(runtime, "shop.games", "Sale", {"sku": "g-1"})
    await runtime.delivery.drain()
    # the recorder wrote through boto3 with no endpoint in its code: AWS_ENDPOINT_URL reached moto
    event = json.loads(records(runtime)[f"Prefix#{event_id}"]["event"]["S"])
    assert event["id"] == event_id
    assert (event["source"], event["detail-type"], event["detail"]) == ("shop.games", "Sale", {"sku": "g-1"})
    assert (event["account"], event["region"], event["version"]) == ("123456789012", "us-east-1", "0")
    assert event["resources"] == ["arn:aws:s3:::example"]
    assert event["time"].endswith("Z") and "T" in event["time"]


def queue_messages(runtime: Runtime, name: str) -> list[dict[str, Any]]:
    sqs = runtime.aws.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    answer = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], MaxNumberOfMessages=10)
    messages: list[dict[str, Any]] = answer.get("Messages", [])
    return messages


def string_attributes(message: dict[str, Any]) -> dict[str, str]:
    return {key: value["StringValue"] for key, value in message.get("MessageAttributes", {}).items()}


async def test_a_function_error_is_retried_by_lambda_then_sent_to_its_on_failure_destination(
    runtime: Runtime,
) -> None:
    event_id = await put_event(runtime, "breaking", "Boom", {"n": 1})
    await runtime.delivery.drain()
    attempts = records(runtime)[f"attempts#{event_id}"]["attempts"]["N"]
    assert attempts == "2"  # the first try and the function's MaximumRetryAttempts=1, not the rule's 2
    (message,) = queue_messages(runtime, "rt-FailureRecords")
    record = json.loads(message["Body"])
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    context = record["requestContext"]
    assert context["functionArn"] == runtime.app.functions["Failing"].arn + ":$LATEST"
    assert (context["condition"], context["approximateInvokeCount"]) == ("RetriesExhausted", 2)
    assert record["requestPayload"]["id"] == event_id and record["requestPayload"]["detail"] == {"n": 1}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "DownstreamUnavailable"
    assert record["responsePayload"]["errorMessage"] == "always down"
    # EventBridge delivered it (Lambda accepted the event): nothing in the rule's dead-letter queue
    assert queue_messages(runtime, "rt-DeadLetters") == []
    assert (runtime.delivery.dead_lettered, runtime.delivery.lambda_async.parked) == (0, 1)


async def test_a_function_error_goes_to_the_functions_dead_letter_queue_after_lambdas_default_retries(
    runtime: Runtime,
) -> None:
    event_id = await put_event(runtime, "breaking-with-dlq", "Boom", {"n": 2})
    await runtime.delivery.drain()
    assert records(runtime)[f"attempts#{event_id}"]["attempts"]["N"] == "3"  # Lambda's default: 2 retries
    (message,) = queue_messages(runtime, "rt-FunctionDeadLetters")
    assert json.loads(message["Body"])["id"] == event_id  # the event itself, not a record
    attributes = string_attributes(message)
    assert (attributes["ErrorCode"], attributes["ErrorMessage"]) == ("200", "always down")
    assert attributes["RequestID"]


async def test_a_target_eventbridge_cannot_invoke_is_retried_then_sent_to_the_rules_dead_letter_queue(
    runtime: Runtime,
) -> None:
    event_id = await put_event(runtime, "orphaned", "Lost", {"n": 3})
    await runtime.delivery.drain()
    (message,) = queue_messages(runtime, "rt-DeadLetters")
    assert json.loads(message["Body"])["id"] == event_id
    attributes = string_attributes(message)
    assert attributes["ERROR_CODE"] == "ResourceNotFoundException"
    assert attributes["TARGET_ARN"].endswith(":function:not-deployed")
    assert runtime.delivery.dead_lettered == 1
