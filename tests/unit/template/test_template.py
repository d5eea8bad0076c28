"""template.yaml: transforms offline, lints clean, and grants least privilege."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tidings.local.template import parse_template, transform_template

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
STAGE_CONNECTIONS = re.compile(
    r"^arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
    r"\$\{TidingsWebSocketApi\}/\$\{StageName\}/POST/@connections/\*$"
)


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return parse_template(TEMPLATE)


@pytest.fixture(scope="module")
def cfn(source: dict[str, Any]) -> dict[str, Any]:
    cloudformation, _ = transform_template(source, ROOT, {}, "us-east-1")
    return cloudformation


def _policies(cfn: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Role logical id -> every statement of its inline policies."""
    out: dict[str, list[dict[str, Any]]] = {}
    for logical_id, res in cfn["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        statements: list[dict[str, Any]] = []
        for policy in res["Properties"].get("Policies", []):
            statements.extend(policy["PolicyDocument"]["Statement"])
        out[logical_id] = statements
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_transform_produces_the_websocket_api_with_every_route(cfn: dict[str, Any]) -> None:
    routes = {
        res["Properties"]["RouteKey"]: res["Properties"]
        for res in cfn["Resources"].values()
        if res["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert set(routes) == {"$connect", "$disconnect", "$default", "subscribe", "unsubscribe", "ping"}
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    api = cfn["Resources"]["TidingsWebSocketApi"]["Properties"]
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"
    authorizers = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Authorizer"]
    assert [a["Properties"]["AuthorizerType"] for a in authorizers] == ["REQUEST"]


def test_cfn_lint_reports_no_errors(tmp_path: Path, cfn: dict[str, Any]) -> None:
    # The command line, not cfnlint.api.lint_all: the API call takes minutes on the JSON form.
    transformed = tmp_path / "transformed.json"
    transformed.write_text(json.dumps(cfn, default=str))
    for path in (TEMPLATE, transformed):
        run = subprocess.run(
            [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        errors = [line for line in run.stdout.splitlines() if ":E" in line]
        assert not errors, f"{path.name}: " + "\n".join(errors)
        assert run.returncode in (0, 4, 8, 12), run.stderr  # 2 = errors, anything else = crash
        assert run.returncode & 2 == 0, run.stdout


def test_globals_use_a_supported_runtime_arm64_and_the_shared_layer(cfn: dict[str, Any]) -> None:
    functions = {k: r for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}
    assert functions
    for logical_id, res in functions.items():
        props = res["Properties"]
        runtime = props["Runtime"]
        assert re.fullmatch(r"python3\.(1[2-9]|[2-9]\d)", runtime), (logical_id, runtime)
        assert props["Architectures"] == ["arm64"], logical_id
        assert any("TidingsCoreLayer" in json.dumps(layer) for layer in props["Layers"]), logical_id
        env = props["Environment"]["Variables"]
        assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL", "JOBS_TABLE"} <= set(env)


def test_no_iam_statement_allows_a_wildcard_action(cfn: dict[str, Any]) -> None:
    for role, statements in _policies(cfn).items():
        for statement in statements:
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"{role} allows {action}"
            for resource in _as_list(statement["Resource"]):
                assert resource != "*", f"{role} grants {statement['Action']} on every resource"


def test_manage_connections_only_on_this_stage_and_only_for_functions_that_post(
    cfn: dict[str, Any],
) -> None:
    posting_roles = set()
    for role, statements in _policies(cfn).items():
        for statement in statements:
            if "execute-api:ManageConnections" not in _as_list(statement["Action"]):
                continue
            posting_roles.add(role)
            for resource in _as_list(statement["Resource"]):
                assert isinstance(resource, dict) and "Fn::Sub" in resource, resource
                assert STAGE_CONNECTIONS.match(resource["Fn::Sub"]), resource
    assert posting_roles == {"NotifyFunctionRole", "SubscribeFunctionRole", "DeliverFunctionRole"}


def test_table_permissions_name_one_table_or_its_index(cfn: dict[str, Any]) -> None:
    tables = {k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}
    for role, statements in _policies(cfn).items():
        for statement in statements:
            actions = _as_list(statement["Action"])
            if not any(a.startswith("dynamodb:") for a in actions):
                continue
            assert "dynamodb:Scan" not in actions, f"{role} may Scan"
            for resource in _as_list(statement["Resource"]):
                text = json.dumps(resource)
                named = [t for t in tables if f'"{t}"' in text or "${" + t + "." in text]
                assert len(named) == 1, f"{role}: {text} is not scoped to one table"
                if "Fn::Sub" in resource:
                    assert re.fullmatch(r"\$\{\w+\.Arn\}/index/\w+", resource["Fn::Sub"]), text


def test_no_secret_literal_in_the_template(source: dict[str, Any]) -> None:
    secret = source["Resources"]["TokenSecret"]["Properties"]
    assert "SecretString" not in secret
    assert "GenerateSecretString" in secret
    text = TEMPLATE.read_text().lower()
    assert not re.search(r"(secret|password|key)\s*:\s*['\"]?[a-z0-9+/]{24,}", text)


def test_tables_pay_per_request_with_ttl(source: dict[str, Any]) -> None:
    tables = {k: r for k, r in source["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert set(tables) == {"ConnectionsTable", "SubscriptionsTable", "JobsTable", "FanoutTable"}
    for logical_id, res in tables.items():
        props = res["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", logical_id
        assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}, logical_id


def test_job_events_reach_notify_with_retries_and_a_dead_letter_queue(cfn: dict[str, Any]) -> None:
    rule = cfn["Resources"]["NotifyFunctionJobEvents"]["Properties"]
    assert rule["EventPattern"] == {"source": ["tidings.transcode"], "detail-type": ["JobProgress"]}
    [target] = rule["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["NotifyDeadLetterQueue", "Arn"]}
    alarms = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watched = {json.dumps(a["Properties"]["Dimensions"]) for a in alarms}
    assert any("NotifyDeadLetterQueue" in w for w in watched)
    assert any("NotifyFunction" in w for w in watched)


def test_every_function_has_a_log_group_with_retention(cfn: dict[str, Any]) -> None:
    functions = {k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}
    groups = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"]
    covered = {fn for fn in functions for g in groups if "${" + fn + "}" in json.dumps(g["LogGroupName"])}
    assert covered == functions
    assert all("RetentionInDays" in g for g in groups)


def test_outputs_name_the_urls_bus_and_tables(source: dict[str, Any]) -> None:
    outputs = source["Outputs"]
    assert outputs["WebSocketUrl"]["Value"]["Fn::Sub"].startswith("wss://")
    assert outputs["CallbackUrl"]["Value"]["Fn::Sub"].startswith("https://")
    assert outputs["CallbackUrl"]["Value"]["Fn::Sub"].endswith("/${StageName}")
    assert {"EventBusName", "ConnectionsTableName", "SubscriptionsTableName", "JobsTableName"} <= set(outputs)


def test_samconfig_has_every_environment() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert {"default", "dev", "staging", "prod"} <= set(config)
    for env in ("dev", "staging", "prod"):
        assert "parameter_overrides" in config[env]["deploy"]["parameters"]


def test_no_scan_in_any_deployed_code() -> None:
    offenders = []
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text()
        if re.search(r"\.scan\(|[\"']Scan[\"']", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def _authorizer_functions(cfn: dict[str, Any]) -> set[str]:
    """Functions named by every Lambda authorizer: WebSocket ones are resources, HTTP API ones
    live in the API's OpenAPI body (securitySchemes)."""
    uris = [
        res["Properties"]["AuthorizerUri"]
        for res in cfn["Resources"].values()
        if res["Type"] == "AWS::ApiGatewayV2::Authorizer"
    ]
    for res in cfn["Resources"].values():
        if res["Type"] != "AWS::ApiGatewayV2::Api":
            continue
        schemes = res["Properties"].get("Body", {}).get("components", {}).get("securitySchemes", {})
        for scheme in schemes.values():
            authorizer = scheme.get("x-amazon-apigateway-authorizer", {})
            if "authorizerUri" in authorizer:
                uris.append(authorizer["authorizerUri"])
    names = set()
    for uri in uris:
        found = re.search(r"\$\{(\w+)\.Arn\}|\"Fn::GetAtt\": \[\"(\w+)\", \"Arn\"\]", json.dumps(uri))
        assert found, uri
        names.add(found.group(1) or found.group(2))
    return names


def test_api_gateway_may_invoke_every_authorizer(cfn: dict[str, Any]) -> None:
    """Without a permission for apigateway.amazonaws.com an HTTP API answers 500 to every call."""
    functions = _authorizer_functions(cfn)
    assert {"AuthorizerFunction", "HttpAuthorizerFunction"} <= functions
    permitted = {
        json.dumps(res["Properties"]["FunctionName"])
        for res in cfn["Resources"].values()
        if res["Type"] == "AWS::Lambda::Permission"
        and res["Properties"]["Principal"] == "apigateway.amazonaws.com"
        and res["Properties"]["Action"] == "lambda:InvokeFunction"
    }
    for function in functions:
        assert any(f'"{function}"' in name for name in permitted), f"{function}: no permission"


def test_subscribe_may_batch_get_jobs_it_lists_by_user(cfn: dict[str, Any]) -> None:
    """registry.recent_jobs reads the ByUser page with BatchGetItem on the jobs table."""
    granted = [
        statement
        for statement in _policies(cfn)["SubscribeFunctionRole"]
        if "dynamodb:BatchGetItem" in _as_list(statement["Action"]) and statement["Effect"] == "Allow"
    ]
    assert granted, "SubscribeFunction cannot BatchGetItem"
    resources = [json.dumps(r) for statement in granted for r in _as_list(statement["Resource"])]
    assert resources == [json.dumps({"Fn::GetAtt": ["JobsTable", "Arn"]})]


def test_uploads_may_create_jobs_in_slots_and_take_slots_back_and_nothing_more(cfn: dict[str, Any]) -> None:
    """registry.create_job with a limit: PutItem + UpdateItem in one transaction; making room
    reads the held jobs (BatchGetItem) and checks each in a transaction (ConditionCheckItem);
    GET /jobs/{jobId} is a GetItem. No Query: the unfinished jobs are no longer counted."""
    dynamodb = {
        (action, json.dumps(resource))
        for statement in _policies(cfn)["UploadsFunctionRole"]
        if statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"])
        if action.startswith("dynamodb:")
        for resource in _as_list(statement["Resource"])
    }
    jobs = json.dumps({"Fn::GetAtt": ["JobsTable", "Arn"]})
    wanted = {"PutItem", "GetItem", "UpdateItem", "BatchGetItem", "ConditionCheckItem"}
    assert dynamodb == {(f"dynamodb:{action}", jobs) for action in wanted}


def test_layers_claim_only_the_runtimes_their_makefile_builds(source: dict[str, Any]) -> None:
    """A layer built with cp3.12 wheels (pydantic-core is compiled) fails to import on another runtime."""
    layers = {k: r for k, r in source["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion"}
    assert layers
    for logical_id, layer in layers.items():
        if layer.get("Metadata", {}).get("BuildMethod") != "makefile":
            continue
        makefile = (ROOT / layer["Properties"]["ContentUri"] / "Makefile").read_text()
        built = set(re.findall(r"LAMBDA_PYTHON \?= (3\.\d+)", makefile))
        built |= set(re.findall(r"--python-version (3\.\d+)", makefile))
        assert built, f"{logical_id}: its Makefile names no Python version"
        claimed = set(layer["Properties"]["CompatibleRuntimes"])
        assert claimed == {f"python{version}" for version in built}, (logical_id, claimed, built)


def test_opentelemetry_is_a_parameter_with_its_layer_and_export_permission_only_when_chosen(
    source: dict[str, Any], cfn: dict[str, Any]
) -> None:
    parameter = source["Parameters"]["Tracing"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("xray-sdk", ["xray-sdk", "opentelemetry"])
    assert source["Globals"]["Function"]["Environment"]["Variables"]["TRACING"] == {"Ref": "Tracing"}
    for name in ("OpenTelemetryLayer", "OpenTelemetryExportPolicy"):
        assert source["Resources"][name]["Condition"] == "UseOpenTelemetry"
    policy = cfn["Resources"]["OpenTelemetryExportPolicy"]["Properties"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == ["xray:PutSpans", "xray:PutSpansForIndexing"]
    # every traced function's role may export: one added without its role here would lose its spans
    traced_roles = {
        f"{logical_id}Role"
        for logical_id, res in source["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function"
        and "tracing.tracer(" in (ROOT / res["Properties"]["CodeUri"] / "app.py").read_text()
    }
    assert len(traced_roles) >= 10
    assert {role["Ref"] for role in policy["Roles"]} == traced_roles
