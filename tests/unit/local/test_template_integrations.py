"""template.py: integration types, request/response templates and refusals, read from raw templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.local.service_integrations import ServiceUri
from tidings.local.template import LocalEndpoints, TemplateError, load_app
from tidings.local.vtl import RenderInput

ENDPOINTS = LocalEndpoints("ws://127.0.0.1:3101", "http://127.0.0.1:3100", "http://127.0.0.1:4599")

WEBSOCKET = r"""
Resources:
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: items
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
  Role:
    Type: AWS::IAM::Role
    Properties:
      RoleName: gateway
      AssumeRolePolicyDocument: {}
  Socket:
    Type: AWS::ApiGatewayV2::Api
    Properties: {Name: s, ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  Put:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS
      IntegrationUri: arn:aws:apigateway:us-east-1:dynamodb:action/PutItem
      CredentialsArn: !GetAtt Role.Arn
      PassthroughBehavior: WHEN_NO_TEMPLATES
      TemplateSelectionExpression: ${request.body.kind}
      RequestTemplates:
        note: '{"TableName": "items", "Item": {"id": {"S": "$context.connectionId"}}}'
  PutResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref Put
      IntegrationResponseKey: /4\d\d/
      ResponseTemplates: {$default: 'failed $input.path(''$.__type'')'}
  PutRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: put
      Target: !Join ["/", [integrations, !Ref Put]]
"""


def _load(tmp_path: Path, text: str) -> None:
    (tmp_path / "template.yaml").write_text(text)
    load_app(tmp_path / "template.yaml", ENDPOINTS)


def test_a_service_integration_is_read_with_its_templates_role_and_responses(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(WEBSOCKET)
    app = load_app(tmp_path / "template.yaml", ENDPOINTS)
    route = app.websocket_apis[0].routes["put"]
    assert route.function_id is None
    mapped = route.non_proxy
    assert mapped is not None
    assert mapped.service == ServiceUri("us-east-1", "dynamodb", "PutItem")
    assert mapped.credentials_arn == "arn:aws:iam::123456789012:role/gateway"
    assert (mapped.passthrough_behavior, mapped.template_selection_expression) == (
        "WHEN_NO_TEMPLATES",
        "${request.body.kind}",
    )
    rendered = mapped.request_templates["note"].render(RenderInput("{}", {"connectionId": "c1="}))
    assert rendered == '{"TableName": "items", "Item": {"id": {"S": "c1="}}}'
    [response] = mapped.responses
    assert response.key == "/4\\d\\d/"
    assert response.templates["$default"].render(RenderInput('{"__type": "X"}', {})) == "failed X"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "IntegrationType: AWS\n",
            "IntegrationType: HTTP\n",
            r"^Put\.Properties\.IntegrationType: HTTP is not",
        ),
        (
            "      CredentialsArn",
            "      RequestParameters: {integration.request.querystring.x: route.request.body.x}\n"
            "      CredentialsArn",
            r"^Put\.Properties\.RequestParameters: integration\.request\.querystring\.x is not supported",
        ),
        (
            "PassthroughBehavior: WHEN_NO_TEMPLATES",
            "PassthroughBehavior: SOMETIMES",
            r"PassthroughBehavior: 'SOMETIMES'",
        ),
        (
            "note: '{",
            "note: '#foreach($x in $y){",
            r"^Put\.Properties\.RequestTemplates\.note: mapping template does not parse",
        ),
        (
            "${request.body.kind}",
            "${request.header.kind}",
            r"^Put\.Properties\.TemplateSelectionExpression: ",
        ),
    ],
)
def test_unsupported_websocket_integration_forms_are_named(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in WEBSOCKET
    with pytest.raises(TemplateError, match=message):
        _load(tmp_path, WEBSOCKET.replace(old, new, 1))


def test_http_api_proxy_to_a_url_is_refused_by_name(tmp_path: Path) -> None:
    template = """
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {Name: h, ProtocolType: HTTP}
  Forward:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: HTTP_PROXY
      IntegrationMethod: GET
      IntegrationUri: https://example.com/
      PayloadFormatVersion: "1.0"
  Get:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: GET /x
      Target: !Join ["/", [integrations, !Ref Forward]]
"""
    with pytest.raises(
        TemplateError, match=r"^Forward\.Properties\.IntegrationType: HTTP_PROXY is not supported"
    ):
        _load(tmp_path, template)


MOCKED = r"""
Resources:
  Socket:
    Type: AWS::ApiGatewayV2::Api
    Properties: {Name: s, ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  Mock:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: MOCK
      TemplateSelectionExpression: '200'
      RequestTemplates: {"200": '{"statusCode": 200}'}
  MockOk:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Socket
      IntegrationId: !Ref Mock
      IntegrationResponseKey: /2\d\d/
      ResponseTemplates: {$default: '{"ok": true}'}
  Order:
    Type: AWS::ApiGatewayV2::Model
    Properties:
      ApiId: !Ref Socket
      ContentType: application/json
      Name: orderModel
      Schema: {type: object, required: [item]}
  OrderRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: order
      ModelSelectionExpression: $request.body.action
      RequestModels: {order: orderModel}
      Target: !Join ["/", [integrations, !Ref Mock]]
  PlainRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Socket
      RouteKey: plain
      RequestModels: {plain: orderModel}
      Target: !Join ["/", [integrations, !Ref Mock]]
"""


def test_a_mock_integration_and_a_route_model_are_read(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(MOCKED)
    routes = load_app(tmp_path / "template.yaml", ENDPOINTS).websocket_apis[0].routes
    order = routes["order"]
    assert order.function_id is None
    assert order.non_proxy is not None and order.non_proxy.mock and order.non_proxy.service is None
    assert [response.key for response in order.non_proxy.responses] == ["/2\\d\\d/"]
    assert order.request_models is not None
    assert order.request_models.selection_expression == "$request.body.action"
    assert order.request_models.models["order"].schema == {"type": "object", "required": ["item"]}
    # RequestModels without a ModelSelectionExpression validate nothing, as on AWS
    assert routes["plain"].request_models is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "{order: orderModel}",
            "{order: missingModel}",
            r"^OrderRoute\.Properties\.RequestModels\.order: no model",
        ),
        (
            "{type: object, required: [item]}",
            "{type: objekt}",
            r"^Order\.Properties\.Schema: not a valid draft-4",
        ),
    ],
)
def test_a_route_model_that_cannot_be_used_is_refused_by_name(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in MOCKED
    with pytest.raises(TemplateError, match=message):
        _load(tmp_path, MOCKED.replace(old, new, 1))
