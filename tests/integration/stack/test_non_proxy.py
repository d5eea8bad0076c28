"""Non-proxy WebSocket integrations (`IntegrationType: AWS`) under `tidings dev`, driven by websockets.

The app is written here: DynamoDB PutItem on `$connect` with a mapping template, SQS SendMessage
(path form, form-encoded body) on a custom route with a response template, and a Lambda function
behind a non-proxy integration whose request and response templates shape what it sees and what
the client gets back, errors included.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from .conftest import ROOT, RunningStack, start_stack, stop_stack

TEMPLATE = r"""
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Connections:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: connectionId, AttributeType: S}]
      KeySchema: [{AttributeName: connectionId, KeyType: HASH}]

  Inbox:
    Type: AWS::SQS::Queue

  Shaper:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      CodeUri: shaper/
      Handler: app.handler

  ShaperPermission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref Shaper
      Principal: apigateway.amazonaws.com

  GatewayRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: apigateway.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: integrations
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: dynamodb:PutItem
                Resource: !GetAtt Connections.Arn
              - Effect: Allow
                Action: sqs:SendMessage
                Resource: !GetAtt Inbox.Arn
              - Effect: Allow
                Action: sns:Publish
                Resource: !Ref News
              - Effect: Allow
                Action: states:StartSyncExecution
                Resource: !Ref Machine

  Socket:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: mapped
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action

  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Socket
      StageName: dev

  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:dynamodb:action/PutItem
      CredentialsArn: !GetAtt GatewayRole.Arn
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: !Sub |
          {
            "TableName": "${Connections}",
            "Item": {
              "connectionId": {"S": "$context.connectionId"},
              "room": {"S": "$input.params('room')"},
              "connectedAt": {"N": "$context.connectedAt"}
            }
          }

  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: $connect
      Target: !Join ["/", [integrations, !Ref ConnectIntegration]]

  QueueIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:sqs:path/${AWS::AccountId}/${Inbox.QueueName}
      CredentialsArn: !GetAtt GatewayRole.Arn
      RequestParameters:
        integration.request.header.Content-Type: "'application/x-www-form-urlencoded'"
      PassthroughBehavior: NEVER
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: Action=SendMessage&MessageBody=$util.urlEncode($input.json('$.note'))

  QueueIntegrationResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref QueueIntegration
      IntegrationResponseKey: $default
      TemplateSelectionExpression: \$default
      ResponseTemplates:
        $default: >-
          {"queued": "$input.path('$.SendMessageResponse.SendMessageResult.MessageId')",
          "by": "$context.connectionId"}

  QueueRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: enqueue
      RouteResponseSelectionExpression: $default
      Target: !Join ["/", [integrations, !Ref QueueIntegration]]

  QueueRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Socket
      RouteId: !Ref QueueRoute
      RouteResponseKey: $default

  News:
    Type: AWS::SNS::Topic

  NewsIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:sns:action/Publish
      CredentialsArn: !GetAtt GatewayRole.Arn
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: !Sub "TopicArn=${News}&Message=$util.urlEncode($input.json('$.news'))"

  NewsIntegrationResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref NewsIntegration
      IntegrationResponseKey: $default
      ResponseTemplates:
        $default: >-
          {"published": "$input.path('$.PublishResponse.PublishResult.MessageId')",
          "request": "$input.path('$.PublishResponse.ResponseMetadata.RequestId')"}

  NewsRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: publish
      RouteResponseSelectionExpression: $default
      Target: !Join ["/", [integrations, !Ref NewsIntegration]]

  NewsRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Socket
      RouteId: !Ref NewsRoute
      RouteResponseKey: $default

  Machine:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      StateMachineType: EXPRESS  # StartSyncExecution runs Express machines only
      RoleArn: !GetAtt GatewayRole.Arn
      Definition:
        StartAt: Double
        States:
          Double:
            Type: Pass
            Parameters:
              got.$: $.n
              by: machine
            End: true

  RunIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:states:action/StartSyncExecution
      CredentialsArn: !GetAtt GatewayRole.Arn
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: !Sub |
          {"stateMachineArn": "${Machine}", "input": "$util.escapeJavaScript($input.json('$.payload'))"}

  RunIntegrationResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref RunIntegration
      IntegrationResponseKey: $default
      TemplateSelectionExpression: \$default
      ResponseTemplates:
        $default: '{"status": "$input.path(''$.status'')", "output": $input.path(''$.output'')}'

  RunRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: run
      RouteResponseSelectionExpression: $default
      Target: !Join ["/", [integrations, !Ref RunIntegration]]

  RunRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Socket
      RouteId: !Ref RunRoute
      RouteResponseKey: $default

  ShapeIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub >-
        arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Shaper.Arn}/invocations
      TemplateSelectionExpression: ${request.body.version}
      RequestTemplates:
        v1: |
          {
            "text": "$util.escapeJavaScript($input.path('$.text'))",
            "who": "$context.connectionId",
            "route": "$context.routeKey"
          }
        $default: |
          {"text": "default template", "who": "$context.connectionId", "route": "$context.routeKey"}

  ShapeOk:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref ShapeIntegration
      IntegrationResponseKey: $default
      TemplateSelectionExpression: \$default
      ResponseTemplates:
        $default: |
          #set($r = $input.path('$'))
          {
            "reply": "$util.escapeJavaScript($r.upper)",
            "length": $r.length,
            "saw": $input.json('$.saw'),
            "who": "$r.who"
          }

  ShapeBad:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref ShapeIntegration
      IntegrationResponseKey: /Bad.*/
      TemplateSelectionExpression: \$default
      ResponseTemplates:
        $default: '{"refused": "$input.path(''$.errorMessage'')"}'

  ShapeRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: shape
      RouteResponseSelectionExpression: $default
      Target: !Join ["/", [integrations, !Ref ShapeIntegration]]

  ShapeRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Socket
      RouteId: !Ref ShapeRoute
      RouteResponseKey: $default

  # may read the table but not write it, nor run the machine: its routes fail as on AWS
  NarrowRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: apigateway.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: read-only
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: dynamodb:GetItem
                Resource: !GetAtt Connections.Arn

  NarrowPutIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:dynamodb:action/PutItem
      CredentialsArn: !GetAtt NarrowRole.Arn
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: !Sub '{"TableName": "${Connections}", "Item": {"connectionId": {"S": "intruder"}}}'

  NarrowPutResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref NarrowPutIntegration
      IntegrationResponseKey: $default
      TemplateSelectionExpression: \$default
      ResponseTemplates:
        $default: >-
          {"error": "$input.path('$.__type')",
          "why": "$util.escapeJavaScript($input.path('$.message'))"}

  NarrowPutRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: narrowput
      RouteResponseSelectionExpression: $default
      Target: !Join ["/", [integrations, !Ref NarrowPutIntegration]]

  NarrowPutRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Socket
      RouteId: !Ref NarrowPutRoute
      RouteResponseKey: $default

  NarrowPutQuietRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: narrowquiet
      Target: !Join ["/", [integrations, !Ref NarrowPutIntegration]]

  NarrowRunIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:states:action/StartSyncExecution
      CredentialsArn: !GetAtt NarrowRole.Arn
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: !Sub '{"stateMachineArn": "${Machine}", "input": "{}"}'

  NarrowRunResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref NarrowRunIntegration
      IntegrationResponseKey: $default
      TemplateSelectionExpression: \$default
      ResponseTemplates:
        $default: >-
          {"error": "$input.path('$.__type')",
          "why": "$util.escapeJavaScript($input.path('$.message'))"}

  NarrowRunRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: narrowrun
      RouteResponseSelectionExpression: $default
      Target: !Join ["/", [integrations, !Ref NarrowRunIntegration]]

  NarrowRunRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Socket
      RouteId: !Ref NarrowRunRoute
      RouteResponseKey: $default
"""

HANDLER = """
def handler(event, context):
    if not event.get("text"):
        raise ValueError("Bad text: empty")
    text = event["text"]
    return {"upper": text.upper(), "length": len(text), "saw": sorted(event), "who": event["who"]}
"""


def write_app(folder: Path, template: str = TEMPLATE) -> Path:
    (folder / "shaper").mkdir(parents=True, exist_ok=True)
    (folder / "shaper" / "app.py").write_text(HANDLER)
    path = folder / "template.yaml"
    path.write_text(template)
    return path


@pytest.fixture(scope="module")
def mapped_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    folder = tmp_path_factory.mktemp("mapped")
    stack = start_stack(write_app(folder), folder)
    yield stack
    stop_stack(stack)


def _connections(stack: RunningStack) -> list[dict[str, Any]]:
    dynamodb = stack.boto3_client("dynamodb")
    [table] = dynamodb.list_tables()["TableNames"]
    items: list[dict[str, Any]] = dynamodb.scan(TableName=table)["Items"]  # inspecting the emulator
    return items


async def _reply(ws: Any, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return reply


async def test_connect_puts_the_mapped_item_with_the_connection_id(mapped_stack: RunningStack) -> None:
    before = {item["connectionId"]["S"] for item in _connections(mapped_stack)}
    async with websockets.connect(mapped_stack.websocket_url + "?room=lobby"):
        new = [item for item in _connections(mapped_stack) if item["connectionId"]["S"] not in before]
    [item] = new
    connection_id = item["connectionId"]["S"]
    assert len(connection_id) == 16 and connection_id.endswith("=")
    assert item["room"] == {"S": "lobby"}
    assert int(item["connectedAt"]["N"]) > 1_700_000_000_000


async def test_sqs_integration_sends_the_mapped_body_and_the_response_template_answers(
    mapped_stack: RunningStack,
) -> None:
    async with websockets.connect(mapped_stack.websocket_url + "?room=q") as ws:
        reply = await _reply(ws, {"action": "enqueue", "note": {"text": "a&b=c", "n": 2}})
    sqs = mapped_stack.boto3_client("sqs")
    [queue_url] = sqs.list_queues()["QueueUrls"]
    [message] = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]
    assert json.loads(message["Body"]) == {"text": "a&b=c", "n": 2}
    assert reply["queued"] == message["MessageId"]
    assert len(reply["by"]) == 16


async def test_lambda_sees_only_the_mapped_fields_and_the_response_template_shapes_the_reply(
    mapped_stack: RunningStack,
) -> None:
    before = {item["connectionId"]["S"] for item in _connections(mapped_stack)}
    async with websockets.connect(mapped_stack.websocket_url) as ws:
        [connection_id] = [
            item["connectionId"]["S"]
            for item in _connections(mapped_stack)
            if item["connectionId"]["S"] not in before
        ]
        reply = await _reply(ws, {"action": "shape", "version": "v1", "text": 'say "hi"'})
        assert reply == {
            "reply": 'SAY "HI"',
            "length": 8,
            "saw": ["route", "text", "who"],  # the template's fields, not a proxy event
            "who": connection_id,
        }
        # no template for "v9": the $default request template is selected
        fallback = await _reply(ws, {"action": "shape", "version": "v9", "text": "ignored"})
        assert fallback["reply"] == "DEFAULT TEMPLATE"
        # a Lambda error's errorMessage selects the /Bad.*/ integration response
        refused = await _reply(ws, {"action": "shape", "version": "v1", "text": ""})
        assert refused == {"refused": "Bad text: empty"}


async def test_step_functions_sync_execution_answers_with_the_machine_output(
    mapped_stack: RunningStack,
) -> None:
    async with websockets.connect(mapped_stack.websocket_url) as ws:
        reply = await _reply(ws, {"action": "run", "payload": {"n": 21}})
    assert reply == {"status": "SUCCEEDED", "output": {"got": 21, "by": "machine"}}


async def test_sns_publish_to_the_template_topic(mapped_stack: RunningStack) -> None:
    async with websockets.connect(mapped_stack.websocket_url) as ws:
        reply = await _reply(ws, {"action": "publish", "news": {"headline": "x"}})
    # SNS answers API Gateway in its Query protocol's JSON form, as on AWS
    assert len(reply["published"]) >= 32  # a MessageId: the template's topic exists and took it
    assert reply["request"]


async def test_a_credentials_role_that_does_not_allow_the_action_fails_the_route_as_on_aws(
    mapped_stack: RunningStack,
) -> None:
    """API Gateway calls the service as the integration's role: the service's AccessDenied answer
    goes through the integration response, and a route without one answers Internal server error."""
    role = "NarrowRole"
    async with websockets.connect(mapped_stack.websocket_url) as ws:
        put = await _reply(ws, {"action": "narrowput"})
        assert put["error"] == "AccessDeniedException"
        assert role in put["why"] and "dynamodb:PutItem" in put["why"], put
        run = await _reply(ws, {"action": "narrowrun"})
        assert run["error"] == "AccessDeniedException"
        assert role in run["why"] and "states:StartSyncExecution" in run["why"], run
        quiet = await _reply(ws, {"action": "narrowquiet"})
        assert quiet["message"] == "Internal server error"
    assert "intruder" not in {item["connectionId"]["S"] for item in _connections(mapped_stack)}


UNSUPPORTED = [
    (
        "IntegrationType: AWS\n      IntegrationMethod: POST",
        "IntegrationType: HTTP\n      IntegrationMethod: POST",
        "ConnectIntegration.Properties.IntegrationType: HTTP is not supported locally",
    ),
    (
        "dynamodb:action/PutItem",
        "dynamodb:action/PutThing",
        "ConnectIntegration.Properties.IntegrationUri: dynamodb has no action 'PutThing'",
    ),
    (
        "dynamodb:action/PutItem",
        "kinesis:action/PutRecord",
        "ConnectIntegration.Properties.IntegrationUri: AWS service integration with 'kinesis'",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), UNSUPPORTED)
def test_unsupported_forms_are_refused_at_start_in_one_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in TEMPLATE
    template = write_app(tmp_path, TEMPLATE.replace(old, new, 1))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidings.local",
            "--template",
            str(template),
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--aws-port",
            "0",
            "--no-demo",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
