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


async def test_failing_target_is_retried_then_dead_lettered(runtime: Runtime) -> None:
    event_id = await put_event(runtime, "breaking", "Boom", {"n": 1})
    await runtime.delivery.drain()
    attempts = records(runtime)[f"attempts#{event_id}"]["attempts"]["N"]
    assert attempts == "3"  # the first try and MaximumRetryAttempts=2 retries
    sqs = runtime.aws.client("sqs")
    queue_url = sqs.get_queue_url(QueueName="rt-DeadLetters")["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"], MaxNumberOfMessages=10)
    (message,) = messages["Messages"]
    assert json.loads(message["Body"])["id"] == event_id
    attributes = {key: value["StringValue"] for key, value in message["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "DownstreamUnavailable"
    assert attributes["TARGET_ARN"] == runtime.app.functions["Failing"].arn
    assert runtime.delivery.dead_lettered == 1
