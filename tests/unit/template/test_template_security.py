"""Issue 14, items 13-15 in template.yaml: rotation, exact invoke rights, TLS-only buckets,
origins without a wildcard, output expiry and HTTP API throttling."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.local.template import parse_template, transform_template
from tidings_core import registry, tokens

from .test_template import ROOT, TEMPLATE, _as_list, _policies

FUNCTIONS = ["TranscodePlanFunction", "TranscodeSegmentFunction", "TranscodeAudioFunction"]
FUNCTIONS += ["TranscodeMergeFunction", "TranscodeFailFunction"]
BUCKETS = ["InputBucket", "OutputBucket", "WebBucket"]


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return parse_template(TEMPLATE)


@pytest.fixture(scope="module")
def cfn(source: dict[str, Any]) -> dict[str, Any]:
    cloudformation, _ = transform_template(source, ROOT, {}, "us-east-1")
    return cloudformation


def test_the_signing_key_rotates_with_a_least_privilege_function(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    [schedule] = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::SecretsManager::RotationSchedule"
    ]
    assert schedule["SecretId"] == {"Ref": "TokenSecret"}
    assert schedule["RotationLambdaARN"] == {"Fn::GetAtt": ["RotateTokenSecretFunction", "Arn"]}
    assert schedule["RotationRules"]["AutomaticallyAfterDays"] == {"Ref": "TokenRotationDays"}
    permission = resources["RotateTokenSecretPermission"]["Properties"]
    assert permission["Principal"] == "secretsmanager.amazonaws.com"
    assert permission["SourceArn"] == {"Ref": "TokenSecret"}
    statements = _policies(cfn)["RotateTokenSecretFunctionRole"]
    actions = {a for s in statements for a in _as_list(s["Action"]) if a.startswith("secretsmanager:")}
    assert actions == {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    }
    for statement in statements:
        if any(a.startswith("secretsmanager:") for a in _as_list(statement["Action"])):
            assert statement["Resource"] == {"Ref": "TokenSecret"}


def test_token_parameters_cap_the_lifetime_at_24_hours(source: dict[str, Any]) -> None:
    parameters = source["Parameters"]
    assert parameters["TokenMaxLifetimeSeconds"]["MaxValue"] == tokens.MAX_LIFETIME_SECONDS
    assert parameters["TokenMaxLifetimeSeconds"]["Default"] == tokens.MAX_LIFETIME_SECONDS
    env = source["Globals"]["Function"]["Environment"]["Variables"]
    assert env["TOKEN_ISSUER"] == {"Ref": "TokenIssuer"}
    assert env["TOKEN_MAX_LIFETIME_SECONDS"] == {"Ref": "TokenMaxLifetimeSeconds"}


def test_the_state_machine_invokes_exactly_its_five_functions(
    source: dict[str, Any], cfn: dict[str, Any]
) -> None:
    policies = source["Resources"]["TranscodeStateMachine"]["Properties"]["Policies"]
    assert not any("LambdaInvokePolicy" in p for p in policies if isinstance(p, dict))
    invoke = [
        s
        for s in _policies(cfn)["TranscodeStateMachineRole"]
        if "lambda:InvokeFunction" in _as_list(s["Action"]) or "lambda:*" in _as_list(s["Action"])
    ]
    assert [r for s in invoke for r in _as_list(s["Resource"])] == [
        {"Fn::GetAtt": [name, "Arn"]} for name in FUNCTIONS
    ]


@pytest.mark.parametrize("bucket", BUCKETS)
def test_every_bucket_refuses_plain_http(cfn: dict[str, Any], bucket: str) -> None:
    [policy] = [
        r["Properties"]["PolicyDocument"]
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    denies = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert any(
        s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        and s["Principal"] == "*"
        and s["Action"] == "s3:*"
        and {"Fn::GetAtt": [bucket, "Arn"]} in s["Resource"]
        for s in denies
    )


def test_outputs_expire_with_their_job_rows(source: dict[str, Any]) -> None:
    rules = source["Resources"]["OutputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    [outputs] = [r for r in rules if r.get("Prefix") == "outputs/"]
    assert outputs["Status"] == "Enabled"
    assert outputs["ExpirationInDays"] * 86400 == registry.JOB_TTL_SECONDS


def test_origins_have_no_wildcard_and_every_cors_rule_follows_the_parameter(source: dict[str, Any]) -> None:
    allowed = source["Parameters"]["AllowedOrigins"]
    assert "*" not in allowed["Default"]
    follows = {"Fn::Split": [",", {"Ref": "AllowedOrigins"}]}
    resources = source["Resources"]
    assert resources["JobsHttpApi"]["Properties"]["CorsConfiguration"]["AllowOrigins"] == follows
    for bucket in ("InputBucket", "OutputBucket"):
        for rule in resources[bucket]["Properties"]["CorsConfiguration"]["CorsRules"]:
            assert rule["AllowedOrigins"] == follows
            assert "*" not in rule.get("AllowedHeaders", [])
    assert resources["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]["ALLOWED_ORIGINS"] == {
        "Ref": "AllowedOrigins"
    }


def test_the_http_api_stage_is_throttled(cfn: dict[str, Any]) -> None:
    [stage] = [
        r["Properties"]
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Stage" and r["Properties"].get("ApiId") == {"Ref": "JobsHttpApi"}
    ]
    default = stage["DefaultRouteSettings"]
    assert 0 < default["ThrottlingRateLimit"] <= 100 and 0 < default["ThrottlingBurstLimit"] <= 200
    assert stage["RouteSettings"]["POST /jobs"]["ThrottlingRateLimit"] <= default["ThrottlingRateLimit"]
