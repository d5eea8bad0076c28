"""State machine Tasks beyond Lambda under `tidings dev`, driven by websockets.

The app is written here, in the shape of public SAM patterns: a WebSocket route starts a state
machine (an `IntegrationType: AWS` StartExecution); the machine writes DynamoDB with the optimized
`dynamodb:putItem` (once allowed, once refused by its role's IAM policy, once refused by a
condition) and posts the outcome back to the caller through `apigateway:invoke` on
`@connections`, signed with its role. A second machine's role lacks `execute-api:ManageConnections`:
its post is refused with `ApiGateway.403` and the terminal says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from .conftest import RunningStack, start_stack, stop_stack

TEMPLATE = r"""
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  StageName: {Type: String, Default: api}
Resources:
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]

  Elsewhere:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]

  Socket:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: machines
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action

  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Socket
      StageName: !Ref StageName

  StartRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: apigateway.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: start
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: states:StartExecution
                Resource: [!Ref Reply, !Ref Mute]

  ReplyRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: states.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: reply
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: dynamodb:PutItem
                Resource: !GetAtt Items.Arn
              - Effect: Allow
                Action: execute-api:ManageConnections
                # API Gateway authorizes @connections on the route's template, braces included
                Resource: !Sub >-
                  arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${Socket}/${StageName}/POST/@connections/{connectionId}

  MuteRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: states.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: nothing-to-say
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: dynamodb:GetItem
                Resource: !GetAtt Items.Arn

  Reply:
    Type: AWS::Serverless::StateMachine
    Properties:
      Role: !GetAtt ReplyRole.Arn
      Definition:
        StartAt: Put
        States:
          Put:
            Type: Task
            Resource: arn:aws:states:::dynamodb:putItem
            Parameters:
              TableName: !Ref Items
              Item: {id: {S.$: $.ConnectionID}, note: {S.$: $.data.note}}
            ResultPath: null
            Next: PutAgain
          PutAgain:
            Type: Task
            Resource: arn:aws:states:::dynamodb:putItem
            Parameters:
              TableName: !Ref Items
              Item: {id: {S.$: $.ConnectionID}}
              ConditionExpression: attribute_not_exists(id)
            Catch:
              - ErrorEquals: [DynamoDB.ConditionalCheckFailedException]
                ResultPath: $.again
                Next: PutElsewhere
            ResultPath: null
            Next: PutElsewhere
          PutElsewhere:
            Type: Task
            Resource: arn:aws:states:::dynamodb:putItem
            Parameters:
              TableName: !Ref Elsewhere
              Item: {id: {S.$: $.ConnectionID}}
            Catch: [{ErrorEquals: [States.ALL], ResultPath: $.elsewhere, Next: Tell}]
            ResultPath: null
            Next: Tell
          Tell:
            Type: Task
            Resource: arn:aws:states:::apigateway:invoke
            Parameters:
              ApiEndpoint: !Sub "${Socket}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
              Method: POST
              Stage: !Ref StageName
              Path.$: "States.Format('/@connections/{}', $.ConnectionID)"
              RequestBody:
                again.$: $.again.Error
                elsewhere.$: $.elsewhere.Error
                why.$: $.elsewhere.Cause
              AuthType: IAM_ROLE
            End: true

  Mute:
    Type: AWS::Serverless::StateMachine
    Properties:
      Role: !GetAtt MuteRole.Arn
      Definition:
        StartAt: Tell
        States:
          Tell:
            Type: Task
            Resource: arn:aws:states:::apigateway:invoke
            Parameters:
              ApiEndpoint: !Sub "${Socket}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
              Method: POST
              Stage: !Ref StageName
              Path.$: "States.Format('/@connections/{}', $.ConnectionID)"
              RequestBody: {Message: never delivered}
              AuthType: IAM_ROLE
            End: true

  ReplyIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:states:action/StartExecution
      CredentialsArn: !GetAtt StartRole.Arn
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: !Sub |
          #set($data = $util.escapeJavaScript($input.json('$')))
          {"stateMachineArn": "${Reply}",
           "input": "{\"ConnectionID\": \"$context.connectionId\", \"data\": $data}"}

  ReplyRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: reply
      Target: !Join [/, [integrations, !Ref ReplyIntegration]]

  MuteIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:states:action/StartExecution
      CredentialsArn: !GetAtt StartRole.Arn
      TemplateSelectionExpression: \$default
      RequestTemplates:
        $default: !Sub >-
          {"stateMachineArn": "${Mute}", "input": "{\"ConnectionID\": \"$context.connectionId\"}"}

  MuteRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: mute
      Target: !Join [/, [integrations, !Ref MuteIntegration]]
"""


@pytest.fixture(scope="module")
def machine_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    folder = tmp_path_factory.mktemp("machines")
    (folder / "template.yaml").write_text(TEMPLATE)
    stack = start_stack(folder / "template.yaml", folder)
    yield stack
    stop_stack(stack)


def _ids(stack: RunningStack, table_prefix: str) -> set[str]:
    dynamodb = stack.boto3_client("dynamodb")
    [table] = [name for name in dynamodb.list_tables()["TableNames"] if table_prefix in name]
    return {item["id"]["S"] for item in dynamodb.scan(TableName=table)["Items"]}  # inspecting the emulator


async def test_a_machine_writes_dynamodb_under_its_role_and_posts_back_to_the_caller(
    machine_stack: RunningStack,
) -> None:
    async with websockets.connect(machine_stack.websocket_url) as ws:
        await ws.send(json.dumps({"action": "reply", "note": "hello"}))
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 60))
    assert message["again"] == "DynamoDB.ConditionalCheckFailedException"
    # the role may not write the other table: the service's AccessDenied, as Step Functions names it
    assert message["elsewhere"] == "DynamoDB.AmazonDynamoDBException"
    assert "dynamodb:PutItem" in message["why"] and "Error Code: AccessDeniedException" in message["why"]
    [connection_id] = _ids(machine_stack, "Items")
    assert connection_id.endswith("=") and _ids(machine_stack, "Elsewhere") == set()


async def test_a_machine_whose_role_lacks_manage_connections_fails_with_apigateway_403_on_the_terminal(
    machine_stack: RunningStack,
) -> None:
    async with websockets.connect(machine_stack.websocket_url) as ws:
        await ws.send(json.dumps({"action": "mute"}))
        line = machine_stack.wait_for_log(
            r"Mute\s+Step Functions \S+\s+execution FAILED ApiGateway\.403: ", 60
        )
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)  # nothing was delivered
    assert "execute-api:ManageConnections" in line and "@connections/{connectionId}" in line
