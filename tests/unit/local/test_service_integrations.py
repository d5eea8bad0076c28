"""service_integrations.py: integration URIs and rendered bodies become boto3 calls."""

from __future__ import annotations

import pytest

from tidings.local.service_integrations import (
    IntegrationUriError,
    ServiceCall,
    ServiceRequestError,
    ServiceUri,
    build_call,
    is_service_uri,
    member_types,
    parse_service_uri,
    service_operations,
)

OPS = service_operations()
SQS_TYPES = member_types("sqs")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "arn:aws:apigateway:us-east-1:dynamodb:action/PutItem",
            ServiceUri("us-east-1", "dynamodb", "PutItem"),
        ),
        (
            "arn:aws:apigateway:eu-west-1:sqs:action/SendMessage",
            ServiceUri("eu-west-1", "sqs", "SendMessage"),
        ),
        ("arn:aws:apigateway:us-east-1:sns:action/Publish", ServiceUri("us-east-1", "sns", "Publish")),
        (
            "arn:aws:apigateway:us-east-1:states:action/StartSyncExecution",
            ServiceUri("us-east-1", "stepfunctions", "StartSyncExecution"),
        ),
        (
            "arn:aws:apigateway:us-east-1:sqs:path/123456789012/jobs",
            ServiceUri("us-east-1", "sqs", None, "123456789012/jobs"),
        ),
    ],
)
def test_supported_uris(uri: str, expected: ServiceUri) -> None:
    assert is_service_uri(uri)
    assert parse_service_uri(uri, OPS) == expected


def test_lambda_invocation_uri_is_not_a_service_uri() -> None:
    function = "arn:aws:lambda:us-east-1:123456789012:function:f"
    uri = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{function}/invocations"
    assert not is_service_uri(uri)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("arn:aws:apigateway:us-east-1:kinesis:action/PutRecord", "'kinesis' is not supported locally"),
        ("arn:aws:apigateway:us-east-1:dynamodb:action/PutThing", "dynamodb has no action 'PutThing'"),
        ("arn:aws:apigateway:us-east-1:dynamodb:path/tables", "only action/ACTION URIs"),
        ("https://example.com/x", "is not an API Gateway integration URI"),
    ],
)
def test_unsupported_uris_are_named(uri: str, message: str) -> None:
    with pytest.raises(IntegrationUriError, match=message):
        parse_service_uri(uri, OPS)


def test_json_body_becomes_the_operation_params() -> None:
    uri = ServiceUri("us-east-1", "dynamodb", "PutItem")
    body = '{"TableName": "t", "Item": {"id": {"S": "abc="}}}'
    call = build_call(uri, body, member_types=member_types("dynamodb"), queue_url_base="http://x")
    assert call == ServiceCall("dynamodb", "PutItem", {"TableName": "t", "Item": {"id": {"S": "abc="}}})


def test_form_body_is_typed_by_the_operation_model() -> None:
    uri = ServiceUri("us-east-1", "sqs", "SendMessage")
    body = (
        "Action=SendMessage&QueueUrl=http%3A%2F%2Fq&MessageBody=hello+there&DelaySeconds=2&Version=2012-11-05"
    )
    call = build_call(uri, body, member_types=SQS_TYPES, queue_url_base="http://x")
    assert call.params == {"QueueUrl": "http://q", "MessageBody": "hello there", "DelaySeconds": 2}


def test_sqs_path_form_takes_the_action_from_the_body_and_the_queue_from_the_uri() -> None:
    uri = ServiceUri("us-east-1", "sqs", None, "123456789012/jobs")
    call = build_call(
        uri,
        "Action=SendMessage&MessageBody=m",
        member_types=SQS_TYPES,
        queue_url_base="http://127.0.0.1:4566/",
    )
    assert call == ServiceCall(
        "sqs", "SendMessage", {"MessageBody": "m", "QueueUrl": "http://127.0.0.1:4566/123456789012/jobs"}
    )


def test_sns_publish_from_a_form_body() -> None:
    uri = ServiceUri("us-east-1", "sns", "Publish")
    topic = "arn:aws:sns:us-east-1:123456789012:news"
    body = f"Action=Publish&TopicArn={topic}&Message=%7B%22a%22%3A1%7D"
    call = build_call(uri, body, member_types=member_types("sns"), queue_url_base="http://x")
    assert call == ServiceCall("sns", "Publish", {"TopicArn": topic, "Message": '{"a":1}'})


@pytest.mark.parametrize(
    ("uri", "body", "message"),
    [
        (ServiceUri("us-east-1", "sqs", None, "1/q"), "MessageBody=m", "names no Action"),
        (
            ServiceUri("us-east-1", "sqs", "SendMessage"),
            "MessageAttribute.1.Name=a",
            "MessageAttribute.1.Name",
        ),
        (ServiceUri("us-east-1", "dynamodb", "PutItem"), "{not json", "not valid JSON"),
    ],
)
def test_bodies_that_cannot_become_a_call(uri: ServiceUri, body: str, message: str) -> None:
    with pytest.raises(ServiceRequestError, match=message):
        build_call(uri, body, member_types=SQS_TYPES, queue_url_base="http://x")
