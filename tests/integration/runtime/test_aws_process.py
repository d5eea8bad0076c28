"""aws_process.py: the embedded AWS services run in their own process (issue 15, item 3), and what
the stack keeps (keys, interceptors, refusals, rule matches) still reaches them, in order."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tidings.local.aws import AwsServices, InterceptMatch
from tidings.local.aws_guard import Denial
from tidings.local.iam import Principal, Statement


@pytest.fixture
def aws() -> Iterator[AwsServices]:
    services = AwsServices(port=0)
    services.start_server()
    yield services
    services.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not serving either
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_moto_runs_in_another_process_and_stop_leaves_none(aws: AwsServices) -> None:
    from moto.dynamodb.models import dynamodb_backends

    pid = aws.pid
    assert pid is not None and pid != os.getpid()
    aws.client("dynamodb").create_table(
        TableName="elsewhere",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert aws.client("dynamodb").list_tables()["TableNames"] == ["elsewhere"]
    # this interpreter's moto never saw it: the table lives in the AWS process
    assert "elsewhere" not in dynamodb_backends["123456789012"]["us-east-1"].tables
    aws.stop()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_a_key_works_once_issued_and_not_once_revoked(aws: AwsServices) -> None:
    statement = Statement(effect="Allow", actions=("dynamodb:ListTables",), resources=("*",))
    principal = Principal("arn:aws:iam::123456789012:role/r", "Fn", (statement,))
    key = aws.credentials.issue_role("Fn", principal)
    client = boto3.client("dynamodb", endpoint_url=aws.endpoint, region_name="us-east-1", **key.boto())
    assert client.list_tables()["TableNames"] == []  # at once: issue returns once the process has it
    aws.credentials.revoke([key])
    with pytest.raises(ClientError) as refused:
        client.list_tables()
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_a_refusal_is_reported_before_the_caller_hears_of_it() -> None:
    denials: list[Denial] = []
    aws = AwsServices(port=0, on_denied=denials.append)
    aws.start_server()
    try:
        principal = Principal("arn:aws:iam::123456789012:role/r", "Fn", ())
        key = aws.credentials.issue_role("Fn", principal)
        client = boto3.client("dynamodb", endpoint_url=aws.endpoint, region_name="us-east-1", **key.boto())
        with pytest.raises(ClientError):
            client.list_tables()
        assert [(d.caller, d.action) for d in denials] == [("Fn", "dynamodb:ListTables")]
    finally:
        aws.stop()


def test_only_the_requests_a_match_takes_reach_the_stacks_interceptor(aws: AwsServices) -> None:
    seen: list[str] = []

    def teapot(environ: dict[str, Any]) -> Callable[..., Iterable[bytes]] | None:
        seen.append(str(environ.get("HTTP_X_AMZ_TARGET")))
        body = environ["wsgi.input"].read()
        if json.loads(body).get("TableName") != "intercepted":
            return None  # moto answers it

        def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
            return [json.dumps({"Table": {"TableName": "intercepted", "TableStatus": "ACTIVE"}}).encode()]

        return answer

    aws.add_interceptor(teapot, InterceptMatch(target_prefix="DynamoDB_20120810.DescribeTable"))
    dynamodb = aws.client("dynamodb")
    assert dynamodb.describe_table(TableName="intercepted")["Table"]["TableStatus"] == "ACTIVE"
    with pytest.raises(ClientError) as missing:  # not ours: moto's own answer, body intact
        dynamodb.describe_table(TableName="absent")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert dynamodb.list_tables()["TableNames"] == []  # no match: never sent to the stack
    assert seen == ["DynamoDB_20120810.DescribeTable"] * 2
