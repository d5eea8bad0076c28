"""stepfunctions_tasks.py: which Task resources run locally, the call each makes, how they fail."""

from __future__ import annotations

import json

import pytest

from tidings.local.model import StateMachine
from tidings.local.service_integrations import ServiceCall, ServiceResult, error_result
from tidings.local.stepfunctions import Execution, execution_arn
from tidings.local.stepfunctions_api import describe, sync_execution
from tidings.local.stepfunctions_tasks import (
    ApiResponse,
    TaskError,
    api_outcome,
    api_request,
    classify,
    sdk_error_prefix,
    service_call,
    service_outcome,
    unsupported_tasks,
)

API = "abcdef1234"
APIS = {API: True, "0123456789": False}


@pytest.mark.parametrize(
    ("resource", "kind", "service", "operation", "prefix"),
    [
        ("arn:aws:states:::dynamodb:putItem", "service", "dynamodb", "PutItem", "DynamoDB"),
        ("arn:aws:states:::sqs:sendMessage", "service", "sqs", "SendMessage", "SQS"),
        ("arn:aws:states:::events:putEvents", "service", "events", "PutEvents", "EventBridge"),
        ("arn:aws:states:::aws-sdk:dynamodb:putItem", "service", "dynamodb", "PutItem", "DynamoDb"),
        ("arn:aws:states:::aws-sdk:sfn:startExecution", "service", "stepfunctions", "StartExecution", "Sfn"),
        ("arn:aws:states:::aws-sdk:s3:listObjectsV2", "service", "s3", "ListObjectsV2", "S3"),
        (
            "arn:aws:states:::aws-sdk:acmpca:deleteCertificateAuthority",
            "service",
            "acm-pca",
            "DeleteCertificateAuthority",
            "AcmPca",
        ),
        ("arn:aws:states:::apigateway:invoke", "apigateway", "", "", ""),
        ("arn:aws:states:::lambda:invoke", "lambda-invoke", "", "", ""),
        ("arn:aws:lambda:us-east-1:123456789012:function:f", "lambda", "", "", ""),
    ],
)
def test_supported_resources_name_their_call(
    resource: str, kind: str, service: str, operation: str, prefix: str
) -> None:
    found = classify(resource)
    assert (found.kind, found.service, found.operation, found.error_prefix) == (
        kind,
        service,
        operation,
        prefix,
    )


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        ("arn:aws:states:us-east-1:123456789012:activity:review", "an activity"),
        ("arn:aws:states:::states:startExecution.sync:2", "the .sync integration pattern"),
        ("arn:aws:states:::lambda:invoke.waitForTaskToken", "the .waitForTaskToken integration pattern"),
        ("arn:aws:states:::ecs:runTask", "an optimized integration"),
        ("arn:aws:states:::dynamodb:scan", "an optimized integration"),
        ("arn:aws:states:::aws-sdk:dynamodb:putThing", "dynamodb has no API action 'putThing'"),
        ("arn:aws:states:::aws-sdk:nosuchservice:doIt", "botocore knows no service 'nosuchservice'"),
    ],
)
def test_other_resources_are_unsupported_with_a_reason(resource: str, reason: str) -> None:
    found = classify(resource)
    assert found.kind == "unsupported" and found.reason.startswith(reason)


def test_unsupported_tasks_are_found_in_map_and_parallel_branches_too() -> None:
    task = {"Type": "Task", "End": True}
    definition = {
        "StartAt": "A",
        "States": {
            "A": {**task, "Resource": "arn:aws:states:::dynamodb:putItem", "End": False, "Next": "B"},
            "B": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "C",
                        "States": {"C": {**task, "Resource": "arn:aws:states:::glue:startJobRun.sync"}},
                    }
                ],
                "Next": "D",
            },
            "D": {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "E",
                    "States": {"E": {**task, "Resource": "arn:aws:states:us-east-1:1:activity:x"}},
                },
                "End": True,
            },
        },
    }
    found = unsupported_tasks(definition)
    assert [(item.state, item.resource) for item in found] == [
        ("C", "arn:aws:states:::glue:startJobRun.sync"),
        ("E", "arn:aws:states:us-east-1:1:activity:x"),
    ]
    assert found[0].line("Machine") == (
        "state machine Machine, state 'C': Task resource arn:aws:states:::glue:startJobRun.sync "
        "is not supported locally (the .sync integration pattern); an execution that reaches it fails"
    )


def test_optimized_integrations_send_objects_given_for_string_members_as_json_text() -> None:
    sqs = service_call(
        classify("arn:aws:states:::sqs:sendMessage"),
        {"QueueUrl": "q", "MessageBody": {"a": 1}, "DelaySeconds": 2},
    )
    assert sqs == ServiceCall(
        "sqs", "SendMessage", {"QueueUrl": "q", "MessageBody": '{"a":1}', "DelaySeconds": 2}
    )
    events = service_call(
        classify("arn:aws:states:::events:putEvents"),
        {"Entries": [{"Source": "s", "DetailType": "t", "Detail": {"jobId": "j"}}]},
    )
    assert events.params["Entries"][0]["Detail"] == '{"jobId":"j"}'
    # the aws-sdk form sends what it is given
    sdk = service_call(
        classify("arn:aws:states:::aws-sdk:sqs:sendMessage"), {"QueueUrl": "q", "MessageBody": "x"}
    )
    assert sdk == ServiceCall("sqs", "SendMessage", {"QueueUrl": "q", "MessageBody": "x"})
    with pytest.raises(TaskError, match=r"^States\.Runtime"):
        service_call(classify("arn:aws:states:::dynamodb:putItem"), "not an object")


@pytest.mark.parametrize(
    ("resource", "code", "error"),
    [
        (
            "arn:aws:states:::dynamodb:putItem",
            "ConditionalCheckFailedException",
            "DynamoDB.ConditionalCheckFailedException",
        ),
        ("arn:aws:states:::dynamodb:putItem", "AccessDeniedException", "DynamoDB.AmazonDynamoDBException"),
        (
            "arn:aws:states:::sqs:sendMessage",
            "AWS.SimpleQueueService.NonExistentQueue",
            "SQS.AmazonSQSException",
        ),
        (
            "arn:aws:states:::aws-sdk:dynamodb:putItem",
            "ConditionalCheckFailedException",
            "DynamoDb.ConditionalCheckFailedException",
        ),
        ("arn:aws:states:::aws-sdk:dynamodb:getItem", "AccessDeniedException", "DynamoDb.DynamoDbException"),
        ("arn:aws:states:::aws-sdk:s3:getObject", "NoSuchKey", "S3.NoSuchKeyException"),
    ],
)
def test_a_refused_call_fails_with_step_functions_error_name(resource: str, code: str, error: str) -> None:
    with pytest.raises(TaskError) as failed:
        service_outcome(classify(resource), error_result(400, code, "it said no"))
    assert failed.value.error == error
    assert failed.value.cause.startswith("it said no (Service: ")
    assert f"Error Code: {code})" in failed.value.cause


def test_a_successful_call_answers_the_service_body() -> None:
    result = ServiceResult(200, '{"Item": {"id": {"S": "1"}}}')
    assert service_outcome(classify("arn:aws:states:::dynamodb:getItem"), result) == {
        "Item": {"id": {"S": "1"}}
    }


def test_sdk_error_prefixes_follow_the_sdk_pascal_case() -> None:
    assert [sdk_error_prefix(name) for name in ("dynamodb", "stepfunctions", "events", "sqs", "acm-pca")] == [
        "DynamoDb",
        "Sfn",
        "EventBridge",
        "Sqs",
        "AcmPca",
    ]


def test_apigateway_invoke_maps_to_a_call_on_the_local_port() -> None:
    request = api_request(
        {
            "ApiEndpoint": f"{API}.execute-api.eu-west-1.amazonaws.com",
            "Method": "POST",
            "Stage": "api",
            "Path": "/@connections/Ab+c/d==",
            "QueryParameters": {"x": ["1", "2"]},
            "Headers": {"X-Trace": ["t"]},
            "RequestBody": {"Message": "hi"},
            "AuthType": "IAM_ROLE",
        },
        APIS,
    )
    assert (request.api_id, request.region, request.method) == (API, "eu-west-1", "POST")
    assert request.path == "/api/@connections/Ab%2Bc/d%3D%3D"
    assert request.query == (("x", "1"), ("x", "2")) and request.headers == (("X-Trace", "t"),)
    assert json.loads(request.body) == {"Message": "hi"} and request.signed
    # an HTTP API's routes sit at the root of the port; NO_AUTH is not signed; a text body is sent as is
    plain = api_request(
        {
            "ApiEndpoint": "0123456789.execute-api.us-east-1.amazonaws.com",
            "Method": "get",
            "Stage": "$default",
            "Path": "jobs",
            "RequestBody": "raw",
        },
        APIS,
    )
    assert (plain.path, plain.method, plain.body, plain.signed) == ("/jobs", "GET", b"raw", False)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"ApiEndpoint": "example.com", "Method": "GET"}, "is not {apiId}.execute-api"),
        (
            {"ApiEndpoint": "ffffffffff.execute-api.us-east-1.amazonaws.com", "Method": "GET"},
            "not an API of this template",
        ),
        ({"ApiEndpoint": f"{API}.execute-api.us-east-1.amazonaws.com", "Method": "FETCH"}, "Method 'FETCH'"),
        (
            {
                "ApiEndpoint": f"{API}.execute-api.us-east-1.amazonaws.com",
                "Method": "GET",
                "AuthType": "COGNITO",
            },
            "AuthType 'COGNITO'",
        ),
    ],
)
def test_apigateway_invoke_parameters_it_cannot_call_fail_the_task(
    parameters: dict[str, str], message: str
) -> None:
    with pytest.raises(TaskError) as failed:
        api_request(parameters, APIS)
    assert failed.value.error == "States.Runtime" and message in failed.value.cause


def test_apigateway_answers_become_the_result_and_an_error_status_fails_as_apigateway_status() -> None:
    ok = api_outcome(ApiResponse(200, "OK", {"Content-Type": ["application/json"]}, b'{"a": 1}'))
    assert ok == {
        "Headers": {"Content-Type": ["application/json"]},
        "ResponseBody": {"a": 1},
        "StatusCode": 200,
        "StatusText": "OK",
    }
    assert api_outcome(ApiResponse(200, "OK", {}, b""))["ResponseBody"] == {}
    with pytest.raises(TaskError) as failed:
        api_outcome(ApiResponse(403, "Forbidden", {}, b'{"message": "Forbidden"}'))
    assert failed.value.error == "ApiGateway.403"
    assert json.loads(failed.value.cause)["ResponseBody"] == {"message": "Forbidden"}


def test_express_executions_have_express_arns_and_sync_answers_keep_the_input_text_and_bill() -> None:
    machine = StateMachine(
        "Sync", "sync-machine", "arn:aws:states:us-east-1:123456789012:stateMachine:sync-machine", {}
    )
    express = StateMachine(**{**machine.__dict__, "machine_type": "EXPRESS"})
    assert (
        execution_arn("us-east-1", machine, "n1")
        == "arn:aws:states:us-east-1:123456789012:execution:sync-machine:n1"
    )
    arn = execution_arn("us-east-1", express, "n1")
    prefix = "arn:aws:states:us-east-1:123456789012:express:sync-machine:n1:"
    assert arn.startswith(prefix) and len(arn.removeprefix(prefix)) == 36
    text = '{"first_name" : "Jane"}'
    execution = Execution(
        arn,
        "n1",
        "Sync",
        machine.arn,
        json.loads(text),
        input_text=text,
        status="SUCCEEDED",
        output={"first_name": "Jane"},
        start_date="2026-01-01T00:00:00.000Z",
        stop_date="2026-01-01T00:00:03.012Z",
    )
    answer = sync_execution(execution)
    assert answer["input"] == text == describe(execution)["input"]
    assert answer["billingDetails"] == {"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": 3100}
    assert answer["status"] == "SUCCEEDED" and answer["executionArn"] == arn


async def test_an_unsupported_task_is_named_at_start_and_an_execution_reaching_it_fails_with_a_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pathlib import Path

    from tidings.local.model import LocalApp
    from tidings.local.stepfunctions import StepFunctions

    definition = {
        "StartAt": "Wait for approval",
        "States": {
            "Wait for approval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "f"},
                "End": True,
            }
        },
    }
    machine = StateMachine(
        "Approvals", "approvals", "arn:aws:states:us-east-1:123456789012:stateMachine:approvals", definition
    )
    app = LocalApp(Path("template.yaml"), "us-east-1", {}, state_machines={"Approvals": machine})
    caplog.set_level("WARNING")
    machines = StepFunctions(app, invoker=None)  # type: ignore[arg-type]  # no function is invoked
    assert [record.getMessage() for record in caplog.records] == [
        "tidings dev: state machine Approvals, state 'Wait for approval': Task resource "
        "arn:aws:states:::lambda:invoke.waitForTaskToken is not supported locally "
        "(the .waitForTaskToken integration pattern); an execution that reaches it fails"
    ]
    caplog.clear()
    execution = await machines.wait_for(await machines.start_execution("Approvals", {}, name="run-1"))
    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")
    [line] = [record.getMessage() for record in caplog.records]
    assert "Approvals" in line and "Step Functions run-1" in line
    assert (
        "execution FAILED States.Runtime: Task resource 'arn:aws:states:::lambda:invoke.waitForTaskToken'"
        in line
    )
