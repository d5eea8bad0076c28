"""iam_requests.py on requests serialized by botocore itself (its serializers and endpoint
preparation), so the shapes are the ones the SDK sends, not hand-written."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.session
import pytest
from botocore.awsrequest import prepare_request_dict
from botocore.serialize import create_serializer

from tidings.local.iam_requests import AwsRequest, Check, Names, checks

REGION = "us-east-1"
ACCOUNT = "123456789012"
ENDPOINT = "http://127.0.0.1:4566"
SESSION = botocore.session.get_session()


def serialized(service: str, operation: str, params: dict[str, Any]) -> AwsRequest:
    model = SESSION.get_service_model(service)
    operation_model = model.operation_model(operation)
    serializer = create_serializer(model.metadata["protocol"] if service != "sqs" else "json")
    request = serializer.serialize_to_request(params, operation_model)
    if model.metadata["protocol"] == "json" or service == "sqs":
        request["headers"]["X-Amz-Target"] = f"{model.metadata['targetPrefix']}.{operation}"
    prepare_request_dict(request, ENDPOINT)
    url = urlsplit(request["url"])
    body = request["body"]
    if isinstance(body, dict):  # the query protocol leaves a form for the HTTP layer to encode
        from urllib.parse import urlencode

        body = urlencode(body).encode()
        request["headers"]["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    return AwsRequest(
        service=model.signing_name or model.endpoint_prefix,
        method=request["method"],
        path=url.path,
        query=parse_qs(url.query, keep_blank_values=True),
        headers={name.lower(): str(value) for name, value in request["headers"].items()}
        | {"host": url.netloc},
        body=body if isinstance(body, bytes) else str(body or "").encode(),
        region=REGION,
        account=ACCOUNT,
    )


TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"


def test_dynamodb_item_calls_name_their_table_and_a_query_its_index() -> None:
    assert checks(serialized("dynamodb", "GetItem", {"TableName": "Jobs", "Key": {"id": {"S": "1"}}})) == [
        Check("dynamodb:GetItem", TABLE + "Jobs")
    ]
    query = serialized(
        "dynamodb",
        "Query",
        {
            "TableName": "Jobs",
            "IndexName": "ByUser",
            "KeyConditionExpression": "u = :u",
            "ExpressionAttributeValues": {":u": {"S": "a"}},
        },
    )
    assert checks(query) == [Check("dynamodb:Query", TABLE + "Jobs/index/ByUser")]


def test_batch_and_transact_calls_are_checked_per_table_and_per_item() -> None:
    batch = serialized(
        "dynamodb",
        "BatchGetItem",
        {"RequestItems": {"Jobs": {"Keys": [{"id": {"S": "1"}}]}, "Users": {"Keys": [{"id": {"S": "2"}}]}}},
    )
    assert checks(batch) == [
        Check("dynamodb:BatchGetItem", TABLE + "Jobs"),
        Check("dynamodb:BatchGetItem", TABLE + "Users"),
    ]
    write = serialized(
        "dynamodb",
        "BatchWriteItem",
        {"RequestItems": {"Jobs": [{"DeleteRequest": {"Key": {"id": {"S": "1"}}}}]}},
    )
    assert checks(write) == [Check("dynamodb:BatchWriteItem", TABLE + "Jobs")]
    transact = serialized(
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "Jobs", "Item": {"id": {"S": "1"}}}},
                {
                    "ConditionCheck": {
                        "TableName": "Users",
                        "Key": {"id": {"S": "u"}},
                        "ConditionExpression": "attribute_exists(id)",
                    }
                },
                {"Delete": {"TableName": "Subs", "Key": {"id": {"S": "s"}}}},
            ]
        },
    )
    assert checks(transact) == [
        Check("dynamodb:PutItem", TABLE + "Jobs"),
        Check("dynamodb:ConditionCheckItem", TABLE + "Users"),
        Check("dynamodb:DeleteItem", TABLE + "Subs"),
    ]


def test_s3_objects_buckets_listing_prefix_and_copy_source() -> None:
    get = serialized("s3", "GetObject", {"Bucket": "out", "Key": "outputs/a b.mp4"})
    assert checks(get) == [Check("s3:GetObject", "arn:aws:s3:::out/outputs/a b.mp4")]
    listing = serialized("s3", "ListObjectsV2", {"Bucket": "work", "Prefix": "work/job-1/"})
    [check] = checks(listing)
    assert (check.action, check.resource) == ("s3:ListBucket", "arn:aws:s3:::work")
    assert check.context["s3:prefix"] == ("work/job-1/",)
    copy = serialized("s3", "CopyObject", {"Bucket": "out", "Key": "outputs/x", "CopySource": "work/work/x"})
    assert checks(copy) == [
        Check("s3:PutObject", "arn:aws:s3:::out/outputs/x"),
        Check("s3:GetObject", "arn:aws:s3:::work/work/x"),
    ]
    multipart = serialized("s3", "CreateMultipartUpload", {"Bucket": "in", "Key": "uploads/big"})
    assert checks(multipart) == [Check("s3:PutObject", "arn:aws:s3:::in/uploads/big")]
    delete = serialized(
        "s3", "DeleteObjects", {"Bucket": "w", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b/c"}]}}
    )
    assert checks(delete) == [
        Check("s3:DeleteObject", "arn:aws:s3:::w/a"),
        Check("s3:DeleteObject", "arn:aws:s3:::w/b/c"),
    ]


def test_secrets_by_arn_or_by_name_through_the_stack_s_names() -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:token-abc123"
    assert checks(serialized("secretsmanager", "GetSecretValue", {"SecretId": arn})) == [
        Check("secretsmanager:GetSecretValue", arn)
    ]
    by_name = serialized("secretsmanager", "GetSecretValue", {"SecretId": "token"})
    assert checks(by_name, Names(secret_arns={"token": arn})) == [Check("secretsmanager:GetSecretValue", arn)]


def test_put_events_names_each_bus_once() -> None:
    request = serialized(
        "events",
        "PutEvents",
        {
            "Entries": [
                {"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "jobs"},
                {"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "jobs"},
                {"Source": "s", "DetailType": "d", "Detail": "{}"},
            ]
        },
    )
    assert checks(request) == [
        Check("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/jobs"),
        Check("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"),
    ]


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        (
            "sqs",
            "SendMessage",
            {"QueueUrl": f"{ENDPOINT}/{ACCOUNT}/dlq", "MessageBody": "x"},
            Check("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq"),
        ),
        (
            "sns",
            "Publish",
            {"TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:t", "Message": "x"},
            Check("sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:t"),
        ),
        (
            "stepfunctions",
            "StartExecution",
            {"stateMachineArn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:m"},
            Check("states:StartExecution", f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:m"),
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": "fn", "Payload": b"{}"},
            Check("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"),
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": "fn", "Qualifier": "live"},
            Check("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn:live"),
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": "210987654321:function:fn"},  # a partial ARN names its own account
            Check("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:210987654321:function:fn"),
        ),
        (
            "ssm",
            "GetParameter",
            {"Name": "/app/flag"},
            Check("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/flag"),
        ),
        (
            "kms",
            "Decrypt",
            {"CiphertextBlob": b"x", "KeyId": "1234abcd"},
            Check("kms:Decrypt", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd"),
        ),
        ("dynamodb", "ListTables", {}, Check("dynamodb:ListTables", "*")),
    ],
)
def test_each_service_s_resource(
    service: str, operation: str, params: dict[str, Any], expected: Check
) -> None:
    assert checks(serialized(service, operation, params)) == [expected]


def test_get_caller_identity_needs_no_permission() -> None:
    assert checks(serialized("sts", "GetCallerIdentity", {})) == []
