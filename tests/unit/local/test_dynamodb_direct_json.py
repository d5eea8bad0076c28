"""aws.serialize_dynamodb_items_directly: DynamoDB's item reads and single-item writes answered
with `json.dumps` of moto's result say exactly what moto's own serializer says (every attribute
type, pages, every ReturnValues, failed conditions, errors)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tidings.local.aws import cache_dynamodb_update_expressions, serialize_dynamodb_items_directly

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
            for table in ("w1", "w2"):  # the writes' two runs, one per serializer
                client.create_table(
                    TableName=table,
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
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
    undo = serialize_dynamodb_items_directly()
    try:
        assert reads(dynamodb) == expected
    finally:
        undo()
    assert expected[0]["Count"] == 2 and "LastEvaluatedKey" in expected[0]  # the cases are real
    assert expected[4]["Item"]["b"]["B"] == b"\x00\xffbytes" and expected[-1] == "ResourceNotFoundException"


def writes(client: Any, table: str) -> list[Any]:
    """Each single-item write's parsed answer (response metadata aside, the table's name
    replaced), or its error code and the item a failed condition returns."""
    item = {key: value for key, value in ITEM.items() if key != "sk"}
    update = {
        "TableName": table,
        "Key": {"pk": {"S": "p"}},
        "UpdateExpression": "SET n = :n, m.extra = :s, fresh = if_not_exists(fresh, :one) ADD c :one",
        "ExpressionAttributeValues": {":n": {"N": "7"}, ":s": {"S": "x"}, ":one": {"N": "1"}},
    }
    calls: list[Callable[[], Any]] = [
        lambda: client.put_item(TableName=table, Item=item),
        lambda: client.put_item(TableName=table, Item=item, ReturnValues="ALL_OLD"),
        lambda: client.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)"),
        lambda: client.update_item(**update),
        lambda: client.update_item(**update, ReturnValues="ALL_NEW", ReturnConsumedCapacity="TOTAL"),
        lambda: client.update_item(**update, ReturnValues="ALL_OLD"),
        lambda: client.update_item(**update, ReturnValues="UPDATED_OLD"),
        lambda: client.update_item(**update, ReturnValues="UPDATED_NEW"),
        lambda: client.update_item(
            **update,
            ConditionExpression="c < :one",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        ),
        lambda: client.update_item(
            TableName=table,
            Key={"pk": {"S": "new"}},
            UpdateExpression="SET v = :v REMOVE gone",
            ExpressionAttributeValues={":v": {"B": b"\x00"}},
            ReturnValues="ALL_NEW",
        ),
        lambda: client.delete_item(TableName=table, Key={"pk": {"S": "new"}}, ReturnValues="ALL_OLD"),
        lambda: client.delete_item(TableName=table, Key={"pk": {"S": "p"}}),
        lambda: client.update_item(
            TableName=table,
            Key={"pk": {"S": "p"}},
            UpdateExpression="SET = :v",
            ExpressionAttributeValues={":v": {"N": "1"}},
        ),
        lambda: client.update_item(
            TableName="absent",
            Key={"pk": {"S": "p"}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": "1"}},
        ),
    ]
    answers: list[Any] = []
    for call in calls:
        try:
            answer = call()
            answer.pop("ResponseMetadata")
            if "ConsumedCapacity" in answer:
                assert answer["ConsumedCapacity"]["TableName"] == table
                answer["ConsumedCapacity"]["TableName"] = "table"
            answers.append(answer)
        except client.exceptions.ClientError as error:
            answers.append((error.response["Error"]["Code"], error.response.get("Item")))
    return answers


def test_direct_json_writes_say_what_moto_serializer_says(dynamodb: Any) -> None:
    expected = writes(dynamodb, "w1")
    undo = serialize_dynamodb_items_directly()
    try:
        assert writes(dynamodb, "w2") == expected
    finally:
        undo()
    # the cases are real: items come back, a failed condition returns the item as it was
    assert (
        expected[4]["Attributes"]["c"] == {"N": "2"}
        and expected[4]["Attributes"]["b"]["B"] == b"\x00\xffbytes"
    )
    assert expected[8][0] == "ConditionalCheckFailedException" and expected[8][1]["c"] == {"N": "5"}
    assert expected[9]["Attributes"] == {"pk": {"S": "new"}, "v": {"B": b"\x00"}}
    assert expected[-2][0] == "ValidationException" and expected[-1][0] == "ResourceNotFoundException"


def test_update_expressions_parsed_once_say_what_moto_says(dynamodb: Any) -> None:
    """The same writes, twice over with the parse cache (so the second time every expression
    comes from it), answer as moto does without it."""
    expected = writes(dynamodb, "w1")
    undo = cache_dynamodb_update_expressions()
    try:
        writes(dynamodb, "w2")
        dynamodb.delete_table(TableName="w2")
        dynamodb.create_table(
            TableName="w2",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        assert writes(dynamodb, "w2") == expected
    finally:
        undo()


def test_dynamo_to_dict_inline_says_what_moto_says() -> None:
    """The faster `dynamo_to_dict` it installs gives what moto's gives, for every attribute type
    (B as bytes or base64 text), items, keys, pages, nested lists and maps, datetimes, scalars."""
    import datetime

    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.models.utilities import dynamo_to_dict

    from tidings.local.aws import _dynamo_to_dict

    convert = _dynamo_to_dict(dynamo_to_dict)
    values = [DynamoType(value) for value in ITEM.values()] + [
        DynamoType({"B": "AAE="}),
        DynamoType({"BS": ["AAE=", b"\x02"]}),
        DynamoType({"NULL": True}),
        DynamoType({"S": ""}),
        DynamoType({"L": []}),
        DynamoType({"M": {}}),
    ]
    item = Item(DynamoType({"S": "p"}), DynamoType({"S": "a"}), ITEM)
    result = {
        "Count": 2,
        "ScannedCount": 3,
        "Items": [item.attrs, dict(item.attrs), {}],
        "LastEvaluatedKey": {"pk": item.hash_key, "sk": item.range_key},
        "Attributes": item,  # an object with to_json
        "When": datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC),
        "Nested": [[values], {"x": values}, None, 1.5, True, "text"],
    }
    assert convert(result) == dynamo_to_dict(result)
    for value in values:
        assert convert(value) == dynamo_to_dict(value) and type(convert(value)) is dict
    from tidings.local.aws import serialize_dynamodb_items_directly

    undo = serialize_dynamodb_items_directly()
    try:
        from moto.dynamodb import responses

        installed: Any = responses
        assert installed.dynamo_to_dict is not dynamo_to_dict  # what DynamoResult calls
    finally:
        undo()
    assert installed.dynamo_to_dict is dynamo_to_dict
