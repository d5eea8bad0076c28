"""integration_calls.py against the embedded AWS endpoint: a service integration signs with the
session issued for its `CredentialsArn` role, and with the reissued one after a template reload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tidings.local.aws import AwsServices
from tidings.local.aws_guard import INTEGRATION_SESSION, Credentials
from tidings.local.functions import FunctionRunner
from tidings.local.iam import Principal, Statement
from tidings.local.integration_calls import EmbeddedServiceBackend
from tidings.local.model import LocalApp
from tidings.local.service_integrations import ServiceCall, ServiceUri, build_call, member_types
from tidings.local.stepfunctions import StepFunctions
from tidings.local.template import LocalEndpoints, load_app

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  News:
    Type: AWS::SNS::Topic

  MachineRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: states.amazonaws.com}
            Action: sts:AssumeRole

  Shape:  # makes a new value: its output is Step Functions' compact JSON
    Type: AWS::StepFunctions::StateMachine
    Properties:
      StateMachineType: EXPRESS
      RoleArn: !GetAtt MachineRole.Arn
      Definition:
        StartAt: Shape
        States:
          Shape:
            Type: Pass
            Parameters:
              got.$: $.n
              text: "é, ok"
            End: true

  Hold:  # passes its input through unchanged: its output is the input's text
    Type: AWS::StepFunctions::StateMachine
    Properties:
      StateMachineType: EXPRESS
      RoleArn: !GetAtt MachineRole.Arn
      Definition:
        StartAt: Hold
        States:
          Hold:
            Type: Wait
            Seconds: 0
            Next: Same
          Same:
            Type: Pass
            End: true
"""
ROLE = "arn:aws:iam::123456789012:role/gateway"
LABEL = f"apigateway.amazonaws.com {ROLE}"


@pytest.fixture
def aws_app(tmp_path: Path) -> Iterator[tuple[AwsServices, LocalApp]]:
    aws = AwsServices(port=0)
    endpoint = aws.start_server()
    try:
        template = tmp_path / "template.yaml"
        template.write_text(TEMPLATE)
        app = load_app(
            template, LocalEndpoints("ws://127.0.0.1:1", "http://127.0.0.1:1", endpoint), stack_name="ic"
        )
        aws.create_resources(app)
        yield aws, app
    finally:
        aws.stop()


def _backend(aws: AwsServices, app: LocalApp, roles: dict[str, Credentials]) -> EmbeddedServiceBackend:
    machines = StepFunctions(app, FunctionRunner(app, aws.endpoint, watch=False))
    return EmbeddedServiceBackend(aws, machines, roles)


async def test_after_a_reload_the_integration_signs_with_the_new_session_and_its_policies(
    aws_app: tuple[AwsServices, LocalApp],
) -> None:
    aws, app = aws_app
    list_topics = ServiceCall("sns", "ListTopics", {})
    allowed = Principal(
        ROLE, INTEGRATION_SESSION, (Statement(effect="Allow", actions=("sns:ListTopics",), resources=("*",)),)
    )
    before = aws.credentials.issue_role(LABEL, allowed)
    backend = _backend(aws, app, {ROLE: before})
    assert (await backend.call(list_topics, ROLE)).status == 200

    # the edited template's role allows nothing: the stack issues a new session, revokes the old one
    after = aws.credentials.issue_role(LABEL, Principal(ROLE, INTEGRATION_SESSION, ()))
    backend.use_roles({ROLE: after})
    aws.credentials.revoke([before])
    refused = await backend.call(list_topics, ROLE)
    # the new role's policies refuse it (not the revoked key's UnrecognizedClientException)
    assert refused.status == 403, refused
    assert "AuthorizationError" in refused.body and "sns:ListTopics" in refused.body, refused


async def test_start_sync_execution_answers_the_output_text_as_step_functions_makes_it(
    aws_app: tuple[AwsServices, LocalApp],
) -> None:
    """AWS answers `output` as the JSON text of the final state's output: compact (no spaces, no
    escaped non-ASCII) for a value a state made, the caller's own text for an input that no state
    changed (the serverless-patterns apigw-websocket-api-sfn-sync sample shows `{"a" : 1}` back)."""
    aws, app = aws_app
    may_start = Statement(effect="Allow", actions=("states:StartSyncExecution",), resources=("*",))
    keys = aws.credentials.issue_role(LABEL, Principal(ROLE, INTEGRATION_SESSION, (may_start,)))
    backend = _backend(aws, app, {ROLE: keys})
    text = '{"n" : 21,  "by": "caller"}'

    async def output(machine: str) -> str:
        arn = app.state_machines[machine].arn
        call = ServiceCall("stepfunctions", "StartSyncExecution", {"stateMachineArn": arn, "input": text})
        result = await backend.call(call, ROLE)
        assert result.status == 200, result
        answer = json.loads(result.body)
        assert answer["status"] == "SUCCEEDED" and answer["input"] == text, answer
        return str(answer["output"])

    assert await output("Shape") == '{"got":21,"text":"é, ok"}'
    assert await output("Hold") == text


async def test_sns_answers_an_integration_in_the_query_protocols_json_form(
    aws_app: tuple[AwsServices, LocalApp],
) -> None:
    """API Gateway sends `Accept: application/json`: SNS (a Query-protocol service) answers its
    Query answer as JSON, errors included, which is what the integration response templates read."""
    aws, app = aws_app
    [topic] = [resource.arn for resource in app.resources if resource.logical_id == "News"]
    may_publish = Statement(effect="Allow", actions=("sns:Publish",), resources=(topic,))
    keys = aws.credentials.issue_role(LABEL, Principal(ROLE, INTEGRATION_SESSION, (may_publish,)))
    backend = _backend(aws, app, {ROLE: keys})
    uri = ServiceUri("us-east-1", "sns", "Publish")

    def publish(target: str) -> ServiceCall:
        body = f"Action=Publish&TopicArn={quote(target, safe='')}&Message=hello"
        return build_call(uri, body, member_types=member_types("sns"), queue_url_base=aws.endpoint)

    published = await backend.call(publish(topic), ROLE)
    assert published.status == 200, published
    answer = json.loads(published.body)
    result = answer["PublishResponse"]["PublishResult"]
    assert set(result) == {"MessageId", "SequenceNumber"} and result["SequenceNumber"] is None
    assert len(result["MessageId"]) >= 32
    assert answer["PublishResponse"]["ResponseMetadata"]["RequestId"]

    elsewhere = topic.rsplit(":", 1)[0] + ":other"
    refused = await backend.call(publish(elsewhere), ROLE)
    assert refused.status == 403, refused
    error = json.loads(refused.body)
    assert error["Error"]["Code"] == "AuthorizationError" and error["Error"]["Type"] == "Sender", error
    assert "sns:Publish" in error["Error"]["Message"] and error["RequestId"], error
