"""aws.serialize_dynamodb_reads_directly: DynamoDB's item reads answered with `json.dumps` of
moto's result say exactly what moto's own serializer says (every attribute type, pages, errors)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tidings.local.aws import serialize_dynamodb_reads_directly

ITEM = {
    "pk": {"S": "p"},
    "sk": {"S": "a"},
    "n": {"N": "12.50"},
    "b": {"B": b"\x00\xffbytes"},
    "ss": {"SS": ["x", "y"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "m": {"M": {"inner": {"L": [{"S": "é"}, {"NULL": True}, {"BOOL": False}]}}},
    "t": {"BOOL": True},
}


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    keys = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {name: os.environ.get(name) for name in keys}
    os.environ.update(keys)
    try:
        with mock_aws():
            client = boto3.client("dynamodb")
            client.create_table(
                TableName="t",
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            for sk in ("a", "b", "c"):
                client.put_item(TableName="t", Item={**ITEM, "sk": {"S": sk}})
            yield client
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def reads(client: Any) -> list[Any]:
    """Each read's parsed answer (response metadata aside), or its error code."""
    calls: list[Callable[[], Any]] = [
        lambda: client.query(
            TableName="t",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
            Limit=2,
        ),
        lambda: client.query(
            TableName="t",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
            ProjectionExpression="sk, m.inner",
            ReturnConsumedCapacity="TOTAL",
        ),
        lambda: client.scan(TableName="t", Select="COUNT"),
        lambda: client.scan(TableName="t", ExclusiveStartKey={"pk": {"S": "p"}, "sk": {"S": "a"}}),
        lambda: client.get_item(TableName="t", Key={"pk": {"S": "p"}, "sk": {"S": "b"}}),
        lambda: client.get_item(TableName="t", Key={"pk": {"S": "p"}, "sk": {"S": "zz"}}),
        lambda: client.batch_get_item(
            RequestItems={"t": {"Keys": [{"pk": {"S": "p"}, "sk": {"S": s}} for s in ("a", "c", "zz")]}}
        ),
        lambda: client.query(
            TableName="absent", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
        ),
    ]
    answers = []
    for call in calls:
        try:
            answer = call()
            answer.pop("ResponseMetadata")
            answers.append(answer)
        except client.exceptions.ClientError as error:
            answers.append(error.response["Error"]["Code"])
    return answers


def test_direct_json_reads_say_what_moto_serializer_says(dynamodb: Any) -> None:
    expected = reads(dynamodb)
    undo = serialize_dynamodb_reads_directly()
    try:
        assert reads(dynamodb) == expected
    finally:
        undo()
    assert expected[0]["Count"] == 2 and "LastEvaluatedKey" in expected[0]  # the cases are real
    assert expected[4]["Item"]["b"]["B"] == b"\x00\xffbytes" and expected[-1] == "ResourceNotFoundException"
