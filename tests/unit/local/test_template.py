"""template.py: SAM templates read as-is and resolved to local values."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tidings.local.model import ACCOUNT_ID
from tidings.local.template import LocalEndpoints, TemplateError, load_app

TEMPLATES = Path(__file__).parent / "templates"
ENDPOINTS = LocalEndpoints("ws://127.0.0.1:3101", "http://127.0.0.1:3100", "http://127.0.0.1:4599")


def test_sam_websocket_api_with_custom_auth() -> None:
    app = load_app(TEMPLATES / "sam_websocket.yaml", ENDPOINTS, stack_name="demo")
    (api,) = app.websocket_apis
    assert api.stage == "dev"
    assert api.route_selection_expression == "$request.body.action"
    connect = api.routes["$connect"]
    assert connect.function_id == "EchoFunction"
    assert connect.authorization_type == "CUSTOM"
    assert connect.authorizer is not None
    assert connect.authorizer.function_id == "AuthFunction"
    assert connect.authorizer.identity_sources == ("route.request.querystring.token",)
    assert api.routes["send"].function_id == "OtherFunction"
    assert api.routes["send"].authorizer is None


def test_execute_api_urls_become_local_urls() -> None:
    app = load_app(TEMPLATES / "sam_websocket.yaml", ENDPOINTS, parameter_overrides={"Stage": "beta"})
    assert app.functions["EchoFunction"].environment["CALLBACK_URL"] == "http://127.0.0.1:3100/beta"
    assert app.outputs["WebSocketUrl"] == "ws://127.0.0.1:3101/beta"
    assert app.outputs["Endpoint"] == "ws://127.0.0.1:3101"
    assert app.websocket_apis[0].stage == "beta"


def test_function_environment_globals_layers_and_names() -> None:
    app = load_app(TEMPLATES / "sam_websocket.yaml", ENDPOINTS, stack_name="demo")
    echo = app.functions["EchoFunction"]
    assert echo.environment["SHARED"] == "overridden"
    assert echo.environment["NUMBER"] == "5"
    assert app.functions["AuthFunction"].environment["SHARED"] == "from-globals"
    assert echo.timeout_s == 7.0
    assert echo.memory_mb == 256
    assert echo.code_dir == (TEMPLATES / "src" / "echo").resolve()
    assert echo.layer_dirs == ((TEMPLATES / "layers" / "shared" / "python").resolve(),)
    assert echo.arn == f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:demo-EchoFunction"
    assert app.functions["OtherFunction"].name == "demo-other"


def test_raw_api_gateway_v2_with_route_response() -> None:
    app = load_app(TEMPLATES / "raw_apigw.yaml", ENDPOINTS)
    (api,) = app.websocket_apis
    assert (api.name, api.stage, api.route_selection_expression) == (
        "raw-socket",
        "live",
        "$request.body.type",
    )
    assert api.routes["echo"].function_id == "EchoFunction"
    assert api.routes["echo"].has_route_response is True
    assert api.routes["$connect"].function_id is None
    assert api.routes["$connect"].has_route_response is False


def test_http_api_events_become_routes_with_authorizer() -> None:
    app = load_app(TEMPLATES / "http_api.yaml", ENDPOINTS)
    routes = {(route.method, route.path): route for route in app.http_routes}
    assert set(routes) == {("POST", "/jobs"), ("GET", "/jobs/{jobId}"), ("GET", "/health")}
    assert {route.function_id for route in routes.values()} == {"EchoFunction"}
    create = routes[("POST", "/jobs")]
    assert create.authorizer_function_id == "AuthFunction"
    assert create.identity_sources == ("$request.header.Authorization",)
    assert routes[("GET", "/health")].authorizer_function_id is None


def test_tables_keep_resolved_properties() -> None:
    app = load_app(TEMPLATES / "data.yaml", ENDPOINTS, stack_name="st")
    tables = {table.logical_id: table for table in app.tables}
    assert set(tables) == {"Items", "Simple"}  # ProdOnlyTable's condition is false
    items = tables["Items"]
    assert items.name == "st-items-dev"
    assert items.properties["GlobalSecondaryIndexes"][0]["IndexName"] == "ByOwner"
    assert items.properties["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    assert tables["Simple"].properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]


def test_rules_with_retry_policy_and_dead_letter_queue() -> None:
    app = load_app(TEMPLATES / "data.yaml", ENDPOINTS, stack_name="st")
    rules = {rule.logical_id: rule for rule in app.rules}
    progress = rules["WorkerProgress"]
    assert progress.bus_name == "st-bus"
    assert progress.pattern == {"source": ["app.jobs"], "detail": {"percent": [{"numeric": [">", 50]}]}}
    (target,) = progress.targets
    assert (target.kind, target.resource_id) == ("lambda", "Worker")
    assert (target.retry_attempts, target.max_event_age_s) == (3, 600)
    assert target.dead_letter_arn == f"arn:aws:sqs:us-east-1:{ACCOUNT_ID}:st-DeadLetters"
    (machine_target,) = rules["PipelineStart"].targets
    assert (machine_target.kind, machine_target.resource_id) == ("states", "Pipeline")
    assert rules["ManualRule"].bus_name == "st-bus"  # given as the bus ARN
    assert rules["ManualRule"].targets[0].kind == "sqs"


def test_state_machine_definition_substitutions() -> None:
    app = load_app(TEMPLATES / "data.yaml", ENDPOINTS, stack_name="st")
    machine = app.state_machines["Pipeline"]
    assert machine.definition["States"]["Work"]["Resource"] == app.functions["Worker"].arn


def test_asynchronous_invocation_settings_of_functions() -> None:
    app = load_app(TEMPLATES / "data.yaml", ENDPOINTS, stack_name="st")
    worker = app.functions["Worker"].async_config
    queue = f"arn:aws:sqs:us-east-1:{ACCOUNT_ID}:st-DeadLetters"
    memory = app.functions["Worker"].memory_mb  # the same FindInMap, resolved
    assert (worker.max_retry_attempts, worker.max_event_age_s) == (1, memory)
    assert worker.on_success_arn == f"arn:aws:events:us-east-1:{ACCOUNT_ID}:event-bus/st-bus"
    assert (worker.on_failure_arn, worker.dead_letter_arn) == (queue, queue)
    other = load_app(TEMPLATES / "sam_websocket.yaml", ENDPOINTS).functions["EchoFunction"].async_config
    assert (other.max_retry_attempts, other.max_event_age_s, other.on_failure_arn) == (2, 21600, None)


def test_simple_resources() -> None:
    app = load_app(TEMPLATES / "data.yaml", ENDPOINTS, stack_name="st")
    resources = {resource.logical_id: resource for resource in app.resources}
    assert resources["Uploads"].kind == "bucket"
    assert resources["Uploads"].properties["NotificationConfiguration"]["EventBridgeConfiguration"]
    assert resources["Setting"].properties["Value"] == "b"
    assert resources["Key"].name == "st-Key"  # Name: AWS::NoValue → generated
    assert resources["Key"].arn.startswith(f"arn:aws:secretsmanager:us-east-1:{ACCOUNT_ID}:secret:st-Key-")
    assert resources["Bus"].name == "st-bus"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, {"MODE": "development", "BOTH": "no"}),
        ({"Env": "prod"}, {"MODE": "production", "BOTH": "no", "GONE": "x"}),
        ({"Env": "prod", "SecretName": "named"}, {"MODE": "production", "BOTH": "yes", "GONE": "x"}),
    ],
)
def test_conditions_and_parameters(overrides: dict[str, str], expected: dict[str, str]) -> None:
    app = load_app(TEMPLATES / "data.yaml", ENDPOINTS, parameter_overrides=overrides, stack_name="st")
    environment = app.functions["Worker"].environment
    assert {key: environment[key] for key in expected} == expected
    assert ("GONE" in environment) == ("GONE" in expected)
    assert environment["QUEUE_URL"] == f"http://127.0.0.1:4599/{ACCOUNT_ID}/st-DeadLetters"
    assert app.functions["Worker"].memory_mb == (1024 if overrides.get("Env") == "prod" else 128)
    assert ("ProdTable" in app.outputs) == (overrides.get("Env") == "prod")


def test_parameter_outside_allowed_values_is_rejected() -> None:
    with pytest.raises(TemplateError, match="Env"):
        load_app(TEMPLATES / "data.yaml", ENDPOINTS, parameter_overrides={"Env": "qa"})


def test_unknown_parameter_override_is_rejected() -> None:
    with pytest.raises(TemplateError, match="Nope"):
        load_app(TEMPLATES / "data.yaml", ENDPOINTS, parameter_overrides={"Nope": "x"})


def test_unsupported_attribute_names_resource_and_property(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "template.yaml").write_text(
        """
Transform: AWS::Serverless-2016-10-31
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: app.handler
      Runtime: python3.12
      Environment:
        Variables:
          BAD: !GetAtt Queue.Nonsense
"""
    )
    with pytest.raises(TemplateError, match=r"Fn\.Properties\.Environment\.Variables\.BAD.*Queue\.Nonsense"):
        load_app(tmp_path / "template.yaml", ENDPOINTS)


def test_a_layer_behind_a_condition_is_used_only_when_the_condition_holds() -> None:
    shared = (TEMPLATES / "layers" / "shared" / "python").resolve()
    without = load_app(TEMPLATES / "conditional_layer.yaml", ENDPOINTS)
    assert without.functions["EchoFunction"].layer_dirs == (shared,)
    with_extras = load_app(
        TEMPLATES / "conditional_layer.yaml", ENDPOINTS, parameter_overrides={"Extras": "yes"}
    )
    assert with_extras.functions["EchoFunction"].layer_dirs == (
        shared,
        (TEMPLATES / "src" / "other").resolve(),
    )


def test_local_functions_print_opentelemetry_spans_unless_the_template_says_otherwise() -> None:
    from tidings.local.functions import function_environment

    app = load_app(TEMPLATES / "sam_websocket.yaml", ENDPOINTS)
    echo = app.functions["EchoFunction"]
    assert (
        function_environment(echo, "us-east-1", ENDPOINTS.aws_endpoint)["OTEL_TRACES_EXPORTER"] == "console"
    )
    own = replace(echo, environment={**echo.environment, "OTEL_TRACES_EXPORTER": "none"})
    assert function_environment(own, "us-east-1", ENDPOINTS.aws_endpoint)["OTEL_TRACES_EXPORTER"] == "none"
