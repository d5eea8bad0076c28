"""service_integrations.py: integration URIs and rendered bodies become boto3 calls."""

from __future__ import annotations

import json

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
    query_answer,
    query_error,
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
        "sqs",
        "SendMessage",
        {"MessageBody": "m", "QueueUrl": "http://127.0.0.1:4566/123456789012/jobs"},
        query_protocol=True,  # a form body is SQS's Query protocol
    )


def test_sns_publish_from_a_form_body() -> None:
    uri = ServiceUri("us-east-1", "sns", "Publish")
    topic = "arn:aws:sns:us-east-1:123456789012:news"
    body = f"Action=Publish&TopicArn={topic}&Message=%7B%22a%22%3A1%7D"
    call = build_call(uri, body, member_types=member_types("sns"), queue_url_base="http://x")
    assert call == ServiceCall(
        "sns", "Publish", {"TopicArn": topic, "Message": '{"a":1}'}, query_protocol=True
    )


def test_only_query_calls_are_answered_in_the_query_form() -> None:
    """SQS speaks JSON to a JSON body and its Query protocol to a form body; SNS only Query."""
    sqs = ServiceUri("us-east-1", "sqs", "SendMessage")
    json_call = build_call(
        sqs, '{"QueueUrl": "q", "MessageBody": "m"}', member_types=SQS_TYPES, queue_url_base=""
    )
    form_call = build_call(sqs, "QueueUrl=q&MessageBody=m", member_types=SQS_TYPES, queue_url_base="")
    sns = ServiceUri("us-east-1", "sns", "Publish")
    sns_json = build_call(
        sns, '{"TopicArn": "t", "Message": "m"}', member_types=member_types("sns"), queue_url_base=""
    )
    dynamodb = ServiceUri("us-east-1", "dynamodb", "PutItem")
    put = build_call(dynamodb, '{"TableName": "t", "Item": {}}', member_types={}, queue_url_base="")
    assert (json_call.query_protocol, form_call.query_protocol) == (False, True)
    assert (sns_json.query_protocol, put.query_protocol) == (True, False)


def test_a_query_answer_has_every_output_member_and_the_request_id() -> None:
    publish = ServiceCall("sns", "Publish", {}, query_protocol=True)
    answer = query_answer(publish, {"MessageId": "m-1"}, "r-1")
    assert answer.status == 200
    # the shape (and compact text) the apigw-websocket-api-sns sample shows from AWS
    assert answer.body == (
        '{"PublishResponse":{"PublishResult":{"MessageId":"m-1","SequenceNumber":null},'
        '"ResponseMetadata":{"RequestId":"r-1"}}}'
    )
    listed = query_answer(
        ServiceCall("sns", "ListTopics", {}, query_protocol=True), {"Topics": [{"TopicArn": "a"}]}, "r-2"
    )
    result = json.loads(listed.body)["ListTopicsResponse"]["ListTopicsResult"]
    assert result == {"Topics": [{"TopicArn": "a"}], "NextToken": None}
    nothing = query_answer(ServiceCall("sns", "Unsubscribe", {}, query_protocol=True), {}, "r-3")
    assert json.loads(nothing.body) == {"UnsubscribeResponse": {"ResponseMetadata": {"RequestId": "r-3"}}}


def test_a_query_error_names_who_is_to_blame() -> None:
    denied = query_error(403, "AuthorizationError", "not authorized", "r-1")
    assert (denied.status, json.loads(denied.body)) == (
        403,
        {
            "Error": {"Code": "AuthorizationError", "Message": "not authorized", "Type": "Sender"},
            "RequestId": "r-1",
        },
    )
    assert json.loads(query_error(500, "InternalError", "x", "r").body)["Error"]["Type"] == "Receiver"


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
