"""MOCK integrations and request models under `tidings dev`, driven by websockets.

The app is written here, in the shape of public SAM WebSocket patterns: a MOCK `$connect` whose
request template picks the status from the query string, a MOCK `$disconnect`, a two-way MOCK
route whose integration response template answers, and a route validated by a JSON Schema model
in front of an SNS Publish service integration.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from .conftest import RunningStack, start_stack, stop_stack

TEMPLATE = r"""
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Orders:
    Type: AWS::SNS::Topic

  PublishRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: apigateway.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: publish
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: sns:Publish
                Resource: !Ref Orders

  Socket:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: mocked
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action

  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Socket
      StageName: live

  Gate:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: MOCK
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: >-
          {"statusCode": #if($input.params('pass') == 'yes')200#{else}403#end}

  GateResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref Gate
      IntegrationResponseKey: /200/

  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: $connect
      Target: !Join [/, [integrations, !Ref Gate]]

  Quiet:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: MOCK
      TemplateSelectionExpression: '200'
      RequestTemplates: {"200": '{"statusCode": 200}'}

  DisconnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: $disconnect
      Target: !Join [/, [integrations, !Ref Quiet]]

  Echo:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: MOCK
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: '{"statusCode": $input.json(''$.code'')}'

  EchoOk:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref Echo
      IntegrationResponseKey: /2\d\d/
      TemplateSelectionExpression: \$default
      ResponseTemplates:
        $default: '{"echo": "ok", "who": "$context.connectionId", "route": "$context.routeKey"}'

  EchoOther:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref Echo
      IntegrationResponseKey: $default
      TemplateSelectionExpression: \$default
      ResponseTemplates:
        $default: '{"echo": "other"}'

  EchoRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: echo
      Target: !Join [/, [integrations, !Ref Echo]]

  EchoRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Socket
      RouteId: !Ref EchoRoute
      RouteResponseKey: $default

  OrderModel:
    Type: AWS::ApiGatewayV2::Model
    Properties:
      ApiId: !Ref Socket
      ContentType: application/json
      Name: order
      Schema:
        $schema: http://json-schema.org/draft-04/schema#
        type: object
        properties:
          item: {type: string}
          count: {type: integer, minimum: 1}
        required: [item, count]

  Publish:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:sns:action/Publish
      CredentialsArn: !GetAtt PublishRole.Arn
      RequestParameters:
        integration.request.header.Content-Type: "'application/x-www-form-urlencoded'"
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: !Sub >-
          Action=Publish&TopicArn=$util.urlEncode('${Orders}')&Message=$util.urlEncode($input.body)

  PublishResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref Publish
      IntegrationResponseKey: $default
      ResponseTemplates:
        $default: '{"published": "$input.path(''$.PublishResponse.PublishResult.MessageId'')"}'

  OrderRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: order
      ModelSelectionExpression: $request.body.action
      RequestModels: {order: order}
      Target: !Join [/, [integrations, !Ref Publish]]

  OrderRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Socket
      RouteId: !Ref OrderRoute
      RouteResponseKey: $default
"""


@pytest.fixture(scope="module")
def mocked_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    folder = tmp_path_factory.mktemp("mocked")
    (folder / "template.yaml").write_text(TEMPLATE)
    stack = start_stack(folder / "template.yaml", folder)
    yield stack
    stop_stack(stack)


async def _reply(ws: Any, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return reply


async def test_a_mock_connect_accepts_or_refuses_by_the_status_its_template_renders(
    mocked_stack: RunningStack,
) -> None:
    async with websockets.connect(mocked_stack.websocket_url + "?pass=yes") as ws:
        await ws.send(json.dumps({"action": "echo", "code": 200}))  # the connection is usable
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["echo"] == "ok"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(mocked_stack.websocket_url + "?pass=no"):
            pass
    assert refused.value.response.status_code == 403


async def test_a_mock_route_answers_with_the_integration_response_its_status_selects(
    mocked_stack: RunningStack,
) -> None:
    async with websockets.connect(mocked_stack.websocket_url + "?pass=yes") as ws:
        ok = await _reply(ws, {"action": "echo", "code": 201})
        assert ok["echo"] == "ok" and ok["route"] == "echo" and len(ok["who"]) == 16
        assert await _reply(ws, {"action": "echo", "code": 404}) == {"echo": "other"}
        # no statusCode in the rendered template: API Gateway's internal error
        broken = await _reply(ws, {"action": "echo"})
        assert broken["message"] == "Internal server error"


async def test_a_body_the_model_accepts_is_published_and_one_it_refuses_gets_forbidden(
    mocked_stack: RunningStack,
) -> None:
    async with websockets.connect(mocked_stack.websocket_url + "?pass=yes") as ws:
        published = await _reply(ws, {"action": "order", "item": "tea", "count": 2})
        assert len(published["published"]) >= 32  # SNS took it: a MessageId
        refused = await _reply(ws, {"action": "order", "item": "tea"})
        assert refused["message"] == "Forbidden"
        assert set(refused) == {"message", "connectionId", "requestId"}
    mocked_stack.wait_for_log(
        r"route order: message refused by request validation \(model order\): "
        r"'count' is a required property"
    )
