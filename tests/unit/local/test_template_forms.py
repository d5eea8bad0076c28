"""Template forms found in real SAM templates: YAML dates, short intrinsics, typed parameters,
dynamic references, intrinsic route targets, inline code and layers (issue 13, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.local.model import ACCOUNT_ID
from tidings.local.template import LocalEndpoints, TemplateError, load_app

ENDPOINTS = LocalEndpoints("ws://127.0.0.1:3101", "http://127.0.0.1:3100", "http://127.0.0.1:4599")
HEADER = "AWSTemplateFormatVersion: 2010-09-09\nTransform: AWS::Serverless-2016-10-31\n"


class Embedded:
    """What the embedded SSM and Secrets Manager hold before the stack starts."""

    def __init__(self, parameters: dict[str, str] | None = None, secrets: dict[str, str] | None = None):
        self.parameters = parameters or {}
        self.secrets = secrets or {}

    def ssm_parameter(self, name: str, version: str | None) -> str | None:
        return self.parameters.get(name)

    def secret_string(self, secret_id: str, version_stage: str | None, version_id: str | None) -> str | None:
        return self.secrets.get(secret_id)


def write(
    tmp_path: Path, body: str, *, code: str = "def handler(event, context):\n    return event\n"
) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text(code)
    template = tmp_path / "template.yaml"
    template.write_text(HEADER + body)
    return template


FUNCTION = """
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
"""


def test_unquoted_date_and_number_parameters_reach_properties_as_numbers(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        """
Parameters:
  Capacity: {Type: Number, Default: 3}
  Seconds: {Type: Number, Default: "9", MinValue: 1, MaxValue: 900}
  Ports: {Type: "List<Number>", Default: "80, 443"}
  Stages: {Type: CommaDelimitedList, Default: "dev , prod"}
  Released: {Type: String, Default: 2020-01-31}
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      ProvisionedThroughput: {ReadCapacityUnits: !Ref Capacity, WriteCapacityUnits: !Ref Capacity}
      Tags: [{Key: version, Value: 2}]
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: !Ref Seconds
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Timeout: !Ref Seconds
      Environment:
        Variables:
          CAPACITY: !Ref Capacity
          FIRST_PORT: !Select [0, !Ref Ports]
          STAGES: !Join ["|", !Ref Stages]
          RELEASED: !Ref Released
""",
    )
    app = load_app(template, ENDPOINTS)
    (table,) = app.tables
    assert table.properties["ProvisionedThroughput"] == {"ReadCapacityUnits": 3, "WriteCapacityUnits": 3}
    assert table.properties["Tags"] == [{"Key": "version", "Value": "2"}]
    (queue,) = [resource for resource in app.resources if resource.kind == "queue"]
    assert queue.properties["VisibilityTimeout"] == 9
    function = app.functions["Fn"]
    assert function.timeout_s == 9.0
    assert function.environment == {
        "CAPACITY": "3",
        "FIRST_PORT": "80",
        "STAGES": "dev|prod",
        "RELEASED": "2020-01-31",
    }
    assert app.parameters["Ports"] == "80,443"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('{Type: Number, Default: "ten"}', r"parameter P='ten' must be a number"),
        ('{Type: "List<Number>", Default: "1,x"}', r"parameter P='x' must be a number"),
        ("{Type: Number, Default: 2, MaxValue: 1}", r"more than MaxValue 1"),
        ('{Type: String, Default: "a b", AllowedPattern: "[a-z]+"}', r"does not match AllowedPattern"),
    ],
)
def test_parameter_values_are_checked_as_cloudformation_checks_them(
    tmp_path: Path, spec: str, message: str
) -> None:
    template = write(tmp_path, f"Parameters:\n  P: {spec}\nResources:{FUNCTION}")
    with pytest.raises(TemplateError, match=message):
        load_app(template, ENDPOINTS)


def test_short_intrinsic_forms(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        """
Parameters:
  Env: {Type: String, Default: prod, AllowedValues: [dev, prod]}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [!Condition IsProd, !Or [!Condition NotProd, !Equals [a, a]]]
Mappings:
  Sizes:
    prod: {Memory: 512}
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      MemorySize: !FindInMap [Sizes, !Ref Env, Memory]
      Environment:
        Variables:
          SUB: !Sub "${AWS::StackName}-${Env}-${Queue.QueueName}"
          SUB_VARS: !Sub ["${X}/${Y}", {X: !Ref Env, Y: !GetAtt Queue.Arn}]
          JOIN: !Join [":", [a, !Ref Env]]
          SPLIT: !Select [1, !Split [",", "x,y,z"]]
          IF: !If [IsProd, big, small]
          BOTH: !If [Both, "yes", "no"]
          B64: !Base64 plain
          CIDR: !Select [1, !Cidr ["10.0.0.0/16", 3, 8]]
          AZ: !Select [0, !GetAZs ""]
          GONE: !If [NotProd, x, !Ref AWS::NoValue]
""",
    )
    app = load_app(template, ENDPOINTS, stack_name="st")
    function = app.functions["Fn"]
    assert function.memory_mb == 512
    assert function.environment == {
        "SUB": "st-prod-st-Queue",
        "SUB_VARS": f"prod/arn:aws:sqs:us-east-1:{ACCOUNT_ID}:st-Queue",
        "JOIN": "a:prod",
        "SPLIT": "y",
        "IF": "big",
        "BOTH": "yes",
        "B64": "plain",
        "CIDR": "10.0.1.0/24",
        "AZ": "us-east-1a",
    }


def test_ssm_parameter_types_come_from_the_embedded_ssm(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        """
Parameters:
  Greeting: {Type: "AWS::SSM::Parameter::Value<String>", Default: /app/greeting}
  Zones: {Type: "AWS::SSM::Parameter::Value<List<String>>", Default: /app/zones}
  Name: {Type: "AWS::SSM::Parameter::Name", Default: /app/greeting}
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Environment:
        Variables:
          GREETING: !Ref Greeting
          ZONE: !Select [1, !Ref Zones]
          NAME: !Ref Name
""",
    )
    embedded = Embedded({"/app/greeting": "hello", "/app/zones": "a, b"})
    app = load_app(template, ENDPOINTS, embedded=embedded)
    assert app.functions["Fn"].environment == {"GREETING": "hello", "ZONE": "b", "NAME": "/app/greeting"}
    with pytest.raises(TemplateError, match=r"parameter Greeting .*'/app/greeting' does not exist"):
        load_app(template, ENDPOINTS, embedded=Embedded())


def test_dynamic_references_from_the_template_and_the_embedded_services(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        """
Parameters:
  Env: {Type: String, Default: dev}
Resources:
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub /${Env}/setting
      Type: String
      Value: declared
  Db:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: db
      SecretString: '{"user": "app", "port": 5432}'
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Environment:
        Variables:
          OWN: !Sub "{{resolve:ssm:/${Env}/setting}}"
          SEEDED: "{{resolve:ssm:/shared/flag:2}}"
          JOINED: !Join ["", ["x-", "{{resolve:ssm:/shared/flag}}"]]
          USER: "{{resolve:secretsmanager:db:SecretString:user}}"
          PORT: "{{resolve:secretsmanager:db:SecretString:port}}"
          API_KEY: "{{resolve:secretsmanager:vendor:SecretString:key}}"
""",
    )
    embedded = Embedded({"/shared/flag": "on"}, {"vendor": '{"key": "k-1"}'})
    environment = load_app(template, ENDPOINTS, embedded=embedded).functions["Fn"].environment
    assert environment == {
        "OWN": "declared",
        "SEEDED": "on",
        "JOINED": "x-on",
        "USER": "app",
        "PORT": "5432",
        "API_KEY": "k-1",
    }
    with pytest.raises(
        TemplateError, match=r"Variables\.SEEDED: \{\{resolve:ssm:/shared/flag\}\}: no such SSM parameter"
    ):
        load_app(template, ENDPOINTS)


WEBSOCKET = """
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: socket
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Join
        - ""
        - - "arn:aws:apigateway:"
          - !Ref AWS::Region
          - ":lambda:path/2015-03-31/functions/"
          - !GetAtt Fn.Arn
          - /invocations
  SendIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub
        arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn2.Arn}/invocations
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $connect
      Target: !Sub "integrations/${ConnectIntegration}"
  SendRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: send
      Target: !Join [/, [integrations, !Ref SendIntegration]]
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: socket-fn
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
  Fn2:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: socket-fn2
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
"""


def test_route_targets_and_integration_uris_in_any_intrinsic_form(tmp_path: Path) -> None:
    app = load_app(write(tmp_path, WEBSOCKET), ENDPOINTS)
    (api,) = app.websocket_apis
    assert api.routes["$connect"].function_id == "Fn"
    # socket-fn is a prefix of socket-fn2: the ARN is matched whole, not as a substring
    assert api.routes["send"].function_id == "Fn2"


def test_a_target_naming_no_integration_is_one_line(tmp_path: Path) -> None:
    body = WEBSOCKET.replace('!Sub "integrations/${ConnectIntegration}"', "integrations/nothing")
    with pytest.raises(
        TemplateError, match=r"ConnectRoute\.Properties\.Target: no integration integrations/nothing"
    ):
        load_app(write(tmp_path, body), ENDPOINTS)


def test_inline_code_is_written_to_a_run_folder(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        """
Resources:
  Inline:
    Type: AWS::Serverless::Function
    Properties:
      Handler: index.handler
      Runtime: python3.12
      InlineCode: !Sub |
        def handler(event, context):
            return "${AWS::Region}"
""",
    )
    function = load_app(template, ENDPOINTS).functions["Inline"]
    assert function.handler == "index.handler"
    assert (
        function.code_dir / "index.py"
    ).read_text() == 'def handler(event, context):\n    return "us-east-1"\n'
    assert not function.code_dir.is_relative_to(tmp_path)  # never written into the user's project


def test_node_functions_are_loaded_with_their_code_folder_or_inline_code(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        """
Resources:
  Node:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: handlers/chat.onMessage
      Runtime: nodejs22.x
  InlineNode:
    Type: AWS::Serverless::Function
    Properties:
      Handler: index.handler
      Runtime: nodejs20.x
      InlineCode: "exports.handler = async () => 1;"
  Legacy:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: nodejs
""",
    )
    app = load_app(template, ENDPOINTS)
    node = app.functions["Node"]
    assert (node.runtime, node.handler, node.code_dir) == (
        "nodejs22.x",
        "handlers/chat.onMessage",
        tmp_path / "src",
    )
    inline = app.functions["InlineNode"]
    assert (inline.code_dir / "index.js").read_text() == "exports.handler = async () => 1;"
    assert app.skipped["Legacy"] == "Legacy.Properties.Runtime: 'nodejs' is not a Python or Node.js runtime"


def test_local_layer_by_content_uri_and_a_remote_layer_leaves_its_function_out(tmp_path: Path) -> None:
    (tmp_path / "layer" / "python").mkdir(parents=True)
    template = write(
        tmp_path,
        """
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
      CompatibleRuntimes: [python3.12]
  Local:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Layers: [!Ref Shared]
  Remote:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Layers: ["arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:7"]
""",
    )
    app = load_app(template, ENDPOINTS)
    assert app.functions["Local"].layer_dirs == ((tmp_path / "layer" / "python").resolve(),)
    assert "Remote" not in app.functions
    assert "only layers of this template" in app.skipped["Remote"]
    assert "AWSLambdaPowertoolsPythonV3" in app.skipped["Remote"]


def test_a_route_that_needs_a_left_out_function_stops_the_start_in_one_line(tmp_path: Path) -> None:
    body = WEBSOCKET.replace(
        "      FunctionName: socket-fn\n",
        "      FunctionName: socket-fn\n      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:x:1]\n",
    )
    with pytest.raises(TemplateError) as raised:
        load_app(write(tmp_path, body), ENDPOINTS)
    message = str(raised.value)
    assert "needs function Fn, which cannot run locally" in message
    assert "\n" not in message


def test_a_function_on_a_runtime_the_stack_does_not_run_is_left_out(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        FUNCTION.join(["Resources:", ""])
        + """
  Java:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: example.Handler::handleRequest
      Runtime: java21
""",
    )
    app = load_app(template, ENDPOINTS)
    assert set(app.functions) == {"Fn"}
    assert app.skipped["Java"] == "Java.Properties.Runtime: 'java21' is not a Python or Node.js runtime"


def test_import_value_is_refused_in_one_line(tmp_path: Path) -> None:
    body = (
        "Resources:" + FUNCTION + "      Environment:\n        Variables:\n          X: !ImportValue shared\n"
    )
    with pytest.raises(TemplateError, match=r"Fn\.Properties\.Environment\.Variables\.X: Fn::ImportValue"):
        load_app(write(tmp_path, body), ENDPOINTS)
