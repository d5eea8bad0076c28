"""aws.py: the template's resources exist in the embedded services as the template says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from .runtime_stack import APPS, Runtime, running

TEMPLATE = APPS / "resources" / "template.yaml"


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    async with running(TEMPLATE) as started:
        yield started


async def test_table_has_the_template_indexes_and_ttl(runtime: Runtime) -> None:
    dynamodb = runtime.aws.client("dynamodb")
    table = dynamodb.describe_table(TableName="rt-Records")["Table"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["ByOwner"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamodb.describe_time_to_live(TableName="rt-Records")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires")


async def test_parameters_and_secrets(runtime: Runtime) -> None:
    assert (
        runtime.aws.client("ssm").get_parameter(Name="/rt/setting")["Parameter"]["Value"] == "us-east-1-value"
    )
    secrets = runtime.aws.client("secretsmanager")
    by_id = {resource.logical_id: resource for resource in runtime.app.resources}
    # functions hold the ARN the template resolved; the secret answers to it
    generated = secrets.get_secret_value(SecretId=by_id["SigningKey"].arn)["SecretString"]
    assert len(generated) == 48 and generated.isalnum()
    again = secrets.get_secret_value(SecretId="rt-SigningKey")["SecretString"]
    assert again == generated
    document = json.loads(secrets.get_secret_value(SecretId=by_id["JsonSecret"].arn)["SecretString"])
    assert document["user"] == "app" and len(document["password"]) == 20
    literal = secrets.get_secret_value(SecretId=by_id["LiteralSecret"].arn)["SecretString"]
    assert literal == "not-so-secret"


async def test_object_created_in_bucket_reaches_rule_target(runtime: Runtime) -> None:
    s3 = runtime.aws.client("s3")
    bucket = next(resource.name for resource in runtime.app.resources if resource.logical_id == "Uploads")
    await asyncio.to_thread(s3.put_object, Bucket=bucket, Key="videos/in.mp4", Body=b"data")
    await runtime.delivery.drain()
    items = runtime.aws.client("dynamodb").scan(TableName="rt-Records")["Items"]
    events = [json.loads(item["event"]["S"]) for item in items if item["pk"]["S"].startswith("Upload#")]
    assert len(events) == 1
    (event,) = events
    assert (event["source"], event["detail-type"]) == ("aws.s3", "Object Created")
    assert event["detail"]["bucket"]["name"] == bucket
    assert event["detail"]["object"]["key"] == "videos/in.mp4"


async def test_concurrent_updates_of_one_item_are_atomic_as_in_dynamodb(runtime: Runtime) -> None:
    # Parallel workers ADD to one counter over the server's threads; DynamoDB never loses or
    # repeats an ADD, so neither may the embedded DynamoDB (moto alone can, under load).
    dynamodb = runtime.aws.client("dynamodb")
    dynamodb.put_item(TableName="rt-Records", Item={"pk": {"S": "counter"}, "n": {"N": "0"}})

    def add_one(_: int) -> int:
        answer = dynamodb.update_item(
            TableName="rt-Records",
            Key={"pk": {"S": "counter"}},
            UpdateExpression="ADD n :one SET touched = :now",
            ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"S": "x" * 2000}},
            ReturnValues="ALL_NEW",
        )
        return int(answer["Attributes"]["n"]["N"])

    def run_all() -> list[int]:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(add_one, range(200)))

    seen = await asyncio.to_thread(run_all)
    assert sorted(seen) == list(range(1, 201))
    final = dynamodb.get_item(TableName="rt-Records", Key={"pk": {"S": "counter"}})["Item"]["n"]["N"]
    assert final == "200"
