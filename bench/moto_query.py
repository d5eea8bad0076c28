"""The embedded DynamoDB's Query, three ways side by side: moto's own; with
`aws.query_dynamodb_tables_by_hash_key(narrow_only=True)` narrowing moto's path to the hash key's
items (the previous step), both with moto's own `dynamo_to_dict`; and "direct", the AWS
process's: the Query answered by `query_dynamodb_tables_by_hash_key()` and the result converted
by `serialize_dynamodb_items_directly`'s faster `dynamo_to_dict`. CPU (time.process_time) of one
Query of 1,000 subscriptions (Tidings' first page: Limit 1,000, connectionId projected; a BETWEEN
page of all 1,000 and one of 500, as a deliver shard reads its range) in tables of 1,000 items per
topic, rounds alternating the order of the variants, medians. Each Query's CPU is given whole
(boto3's client and moto, in process) and moto's part alone (inside DynamoHandler.call_action:
the AWS process's work but for HTTP). Also an index Query by its hash key (a connection's topics),
and the single-item writes (PutItem, UpdateItem, DeleteItem) at each table size, to show they do
not grow with the table. In process (moto's mock, with the AWS process's direct JSON answers).

    .venv/bin/python -m bench.moto_query
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import boto3
from moto import mock_aws

from tidings.local.aws import query_dynamodb_tables_by_hash_key, serialize_dynamodb_items_directly

VARIANTS: dict[str, dict[str, bool] | None] = {
    "moto": None,
    "by hash key": {"narrow_only": True},
    "direct": {},
}

ROUNDS = 7
QUERIES = 3  # per round and variant
WRITES = 50  # per round and kind
PER_TOPIC = 1000
TOPIC_COUNTS = (5, 20)


def _table(client: Any, name: str, topics: int) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "topic", "KeyType": "HASH"},
            {"AttributeName": "connectionId", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "topic", "AttributeType": "S"},
            {"AttributeName": "connectionId", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byConnection",
                "KeySchema": [
                    {"AttributeName": "connectionId", "KeyType": "HASH"},
                    {"AttributeName": "topic", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    rows = [(f"job:{t}", f"c{n:06d}") for t in range(topics) for n in range(PER_TOPIC)]
    for start in range(0, len(rows), 25):
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "topic": {"S": topic},
                        "connectionId": {"S": connection},
                        "userId": {"S": "u" + connection},
                        "createdAt": {"N": "1764680000000"},
                        "ttl": {"N": "1764766400"},
                    }
                }
            }
            for topic, connection in rows[start : start + 25]
        ]
        client.batch_write_item(RequestItems={name: items})


class _HandlerCpu:
    """CPU spent inside moto's DynamoHandler.call_action (the AWS process's part of a call)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def install(self) -> None:
        from moto.dynamodb.responses import DynamoHandler

        original = DynamoHandler.call_action

        def call_action(handler: Any) -> Any:
            started = time.process_time()
            try:
                return original(handler)
            finally:
                self.seconds += time.process_time() - started

        DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def _cpu_ms(call: Callable[[], Any], times: int, handler: _HandlerCpu | None = None) -> tuple[float, float]:
    """CPU ms per call: whole, and inside moto's handler."""
    gc.collect()  # every batch starts from the same collector state (its collections still count)
    inside = handler.seconds if handler else 0.0
    started = time.process_time()
    for _ in range(times):
        call()
    whole = (time.process_time() - started) / times * 1000
    return whole, ((handler.seconds - inside) / times * 1000 if handler else 0.0)


def _queries(client: Any, name: str) -> dict[str, Callable[[], Any]]:
    topic = {":t": {"S": "job:1"}}
    return {
        "first page of 1,000": lambda: client.query(
            TableName=name,
            KeyConditionExpression="topic = :t",
            ExpressionAttributeValues=topic,
            ProjectionExpression="connectionId",
            Limit=PER_TOPIC,
        ),
        "BETWEEN page of 1,000": lambda: client.query(
            TableName=name,
            KeyConditionExpression="topic = :t AND connectionId BETWEEN :lo AND :hi",
            ExpressionAttributeValues={**topic, ":lo": {"S": "c000000"}, ":hi": {"S": "c999999"}},
            ProjectionExpression="connectionId",
            Limit=PER_TOPIC,
        ),
        "BETWEEN page of 500": lambda: client.query(
            TableName=name,
            KeyConditionExpression="topic = :t AND connectionId BETWEEN :lo AND :hi",
            ExpressionAttributeValues={**topic, ":lo": {"S": "c000500"}, ":hi": {"S": "c999999"}},
            ProjectionExpression="connectionId",
            Limit=PER_TOPIC,
        ),
        "GSI Query (a connection's topics)": lambda: client.query(
            TableName=name,
            IndexName="byConnection",
            KeyConditionExpression="connectionId = :c",
            ExpressionAttributeValues={":c": {"S": "c000001"}},
        ),
    }


def _others(client: Any, name: str) -> dict[str, Callable[[], Any]]:
    key = {"topic": {"S": "job:1"}, "connectionId": {"S": "bench-row"}}
    return {
        "PutItem": lambda: client.put_item(TableName=name, Item={**key, "userId": {"S": "u"}}),
        "UpdateItem": lambda: client.update_item(
            TableName=name,
            Key=key,
            UpdateExpression="SET seq = if_not_exists(seq, :zero) + :one",
            ConditionExpression="attribute_exists(topic)",
            ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        ),
        "DeleteItem": lambda: client.delete_item(TableName=name, Key=key),
    }


def main() -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}.items():
        os.environ.setdefault(name, value)
    with mock_aws():
        serialize_dynamodb_items_directly()
        from moto.dynamodb import responses
        from moto.dynamodb.models.utilities import dynamo_to_dict as moto_to_dict

        converter: Any = responses
        fast_to_dict = converter.dynamo_to_dict
        handler = _HandlerCpu()
        handler.install()
        client = boto3.client("dynamodb", region_name="us-east-1")
        for topics in TOPIC_COUNTS:
            name = f"subs{topics}"
            _table(client, name, topics)
            queries = _queries(client, name)
            writes = _others(client, name)
            assert len(queries["first page of 1,000"]()["Items"]) == PER_TOPIC
            assert len(queries["BETWEEN page of 500"]()["Items"]) == PER_TOPIC // 2
            measured: dict[str, list[float]] = {}
            order = list(VARIANTS)
            for number in range(ROUNDS):
                for variant in order[number % len(order) :] + order[: number % len(order)]:
                    options = VARIANTS[variant]
                    undo = query_dynamodb_tables_by_hash_key(**options) if options is not None else None
                    # moto's own dynamo_to_dict but in the direct variant (the previous step had it)
                    converter.dynamo_to_dict = fast_to_dict if variant == "direct" else moto_to_dict
                    try:
                        for label, query in queries.items():
                            whole, inside = _cpu_ms(query, QUERIES, handler)
                            measured.setdefault(f"{label} {variant}", []).append(whole)
                            measured.setdefault(f"{label} {variant} moto", []).append(inside)
                    finally:
                        if undo:
                            undo()
                converter.dynamo_to_dict = fast_to_dict
                for label, write in writes.items():  # PutItem first: the row exists for UpdateItem
                    measured.setdefault(label, []).append(_cpu_ms(write, WRITES)[0])
            median = {label: statistics.median(values) for label, values in measured.items()}
            print(f"{topics * PER_TOPIC:,} items in {topics} topics (CPU ms, medians of {ROUNDS} rounds):")
            for label in queries:
                wholes = ", ".join(f"{variant} {median[f'{label} {variant}']:.1f}" for variant in VARIANTS)
                insides = ", ".join(
                    f"{variant} {median[f'{label} {variant} moto']:.1f}" for variant in VARIANTS
                )
                ratio = median[f"{label} by hash key moto"] / median[f"{label} direct moto"]
                print(f"  Query, {label}: whole call {wholes}; in moto's handler {insides}")
                print(f"    in moto's handler, by hash key / direct: {ratio:.1f}x")
            print("  " + ", ".join(f"{label} {median[label]:.2f}" for label in writes))


if __name__ == "__main__":
    main()
