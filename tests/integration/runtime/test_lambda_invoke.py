"""lambda:Invoke of a template's own functions through the embedded AWS endpoint (issue 13, item 4),
and the terminal's invocation lines telling the truth about them (item 6).

The app is written here: a caller function that invokes the others with boto3, run by the real
`tidings dev` (a subprocess on free ports), and driven from the test with boto3 as well.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from stack_harness import RunningStack, start_stack, stop_stack  # tests/stack_harness.py

TEMPLATE = """AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Parameters:
  Capacity:
    Type: Number
    Default: 2
Globals:
  Function:
    CodeUri: src/
    Runtime: python3.12
    Timeout: 20
Resources:
  Records:
    Type: AWS::SQS::Queue
  Counters:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      ProvisionedThroughput: {ReadCapacityUnits: !Ref Capacity, WriteCapacityUnits: !Ref Capacity}
  Remote:
    Type: AWS::Serverless::Function
    Properties:
      Handler: targets.double
      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:elsewhere:4]
  Caller:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: invoke-caller
      Handler: caller.handler
      Policies:
        - Statement:
            - Effect: Allow
              Action: lambda:InvokeFunction
              Resource: !Sub arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:invoke-*
  Doubler:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: invoke-doubler
      Handler: targets.double
  Failer:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: invoke-failer
      Handler: targets.fail
  Recorder:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: invoke-recorder
      Handler: targets.record
      Policies:
        - SQSSendMessagePolicy: {QueueName: !GetAtt Records.QueueName}
      Environment:
        Variables:
          QUEUE_URL: !Ref Records
  Caught:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: invoke-caught
      Handler: targets.caught
"""

CALLER = """
import base64
import json

import boto3
from botocore.exceptions import ClientError

lambda_client = boto3.client("lambda")


def handler(event, context):
    request = {"FunctionName": event["function"], "Payload": json.dumps(event.get("payload", {}))}
    if event.get("type"):
        request["InvocationType"] = event["type"]
    if event.get("tail"):
        request["LogType"] = "Tail"
    try:
        answer = lambda_client.invoke(**request)
    except ClientError as error:
        return {"error": error.response["Error"]["Code"]}
    body = answer["Payload"].read()
    return {
        "status": answer["StatusCode"],
        "version": answer.get("ExecutedVersion"),
        "functionError": answer.get("FunctionError"),
        "payload": json.loads(body) if body else None,
        "log": base64.b64decode(answer["LogResult"]).decode() if "LogResult" in answer else None,
    }
"""

TARGETS = """
import json
import os

import boto3


def double(event, context):
    print(f"doubling {event['n']}")
    return {"double": event["n"] * 2, "by": context.function_name}


def fail(event, context):
    raise ValueError("no good")


def record(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["QUEUE_URL"], MessageBody=json.dumps(event))
    return None


def caught(event, context):
    try:
        raise RuntimeError("downstream refused")
    except RuntimeError as error:
        print(f"caught: {error}")
        print("answering 500")
        print("third line")
        return {"statusCode": 500, "body": "internal error"}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    folder = tmp_path_factory.mktemp("invoke-app")
    (folder / "src").mkdir()
    (folder / "src" / "caller.py").write_text(CALLER)
    (folder / "src" / "targets.py").write_text(TARGETS)
    (folder / "template.yaml").write_text(TEMPLATE)
    running = start_stack(folder / "template.yaml", folder)
    yield running
    stop_stack(running)


def call(stack: RunningStack, function: str, **event: Any) -> dict[str, Any]:
    """Invoke the caller (itself through lambda:Invoke) and return what its own Invoke saw."""
    request = json.dumps({"function": function, **event})
    answer = stack.boto3_client("lambda").invoke(FunctionName="invoke-caller", Payload=request)
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer, answer["Payload"].read()
    result: dict[str, Any] = json.loads(answer["Payload"].read())
    return result


ARN = "arn:aws:lambda:us-east-1:123456789012:function:invoke-doubler"


@pytest.mark.parametrize(
    "name", ["invoke-doubler", ARN, "123456789012:function:invoke-doubler", f"{ARN}:$LATEST"]
)
def test_a_function_invokes_another_by_name_or_arn(stack: RunningStack, name: str) -> None:
    result = call(stack, name, payload={"n": 21})
    assert result["status"] == 200
    assert result["version"] == "$LATEST"
    assert result["functionError"] is None
    assert result["payload"] == {"double": 42, "by": "invoke-doubler"}


def test_log_tail_carries_the_printed_output(stack: RunningStack) -> None:
    result = call(stack, "invoke-doubler", payload={"n": 4}, tail=True)
    assert "doubling 4" in result["log"]


def test_a_handler_error_is_unhandled_with_lambdas_error_payload(stack: RunningStack) -> None:
    result = call(stack, "invoke-failer")
    assert (result["status"], result["functionError"]) == (200, "Unhandled")
    assert result["payload"]["errorType"] == "ValueError"
    assert result["payload"]["errorMessage"] == "no good"
    assert result["payload"]["stackTrace"]


def test_an_unknown_function_is_resource_not_found(stack: RunningStack) -> None:
    assert call(stack, "invoke-nobody") == {"error": "ResourceNotFoundException"}
    with pytest.raises(ClientError) as raised:
        stack.boto3_client("lambda").invoke(
            FunctionName="arn:aws:lambda:eu-west-1:123456789012:function:invoke-doubler"
        )
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_event_invocation_is_accepted_at_once_and_runs_the_function(stack: RunningStack) -> None:
    result = call(stack, "invoke-recorder", type="Event", payload={"job": "j-1"})
    assert (result["status"], result["payload"]) == (202, None)
    sqs = stack.boto3_client("sqs")
    url = next(url for url in sqs.list_queues()["QueueUrls"] if "Records" in url)
    deadline = time.monotonic() + 30
    bodies: list[Any] = []
    while not bodies and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
        bodies = [json.loads(message["Body"]) for message in messages]
    assert bodies == [{"job": "j-1"}]
    stack.wait_for_log(r"invoke-recorder|Recorder .*lambda:Invoke \(Event\)")


def test_dry_run_checks_the_function_without_running_it(stack: RunningStack) -> None:
    assert call(stack, "invoke-doubler", type="DryRun")["status"] == 204


def test_terminal_marks_a_caught_error_that_answers_500(stack: RunningStack) -> None:
    result = call(stack, "invoke-caught")
    assert result["payload"]["statusCode"] == 500
    line = stack.wait_for_log(r"^\S+\s+Caught\s")
    assert " ok" not in line
    assert "error status 500" in line
    assert "caught: downstream refused (+2 lines)" in line
    failer = stack.wait_for_log(r"^\S+\s+Failer\s")
    assert "error ValueError: no good" in failer


def test_the_stack_starts_without_a_function_on_a_remote_layer_and_says_so(stack: RunningStack) -> None:
    line = stack.wait_for_log(r"starting without function Remote")
    assert "layer:elsewhere:4" in line
    with pytest.raises(ClientError) as raised:
        stack.boto3_client("lambda").invoke(FunctionName="rt-Remote")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_number_parameter_reaches_dynamodb_as_a_number(stack: RunningStack) -> None:
    dynamodb = stack.boto3_client("dynamodb")
    (name,) = [name for name in dynamodb.list_tables()["TableNames"] if "Counters" in name]
    throughput = dynamodb.describe_table(TableName=name)["Table"]["ProvisionedThroughput"]
    assert (throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]) == (2, 2)
