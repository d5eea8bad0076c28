"""invoke_permissions.py: Lambda's resource-based policy decided from values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.local.invoke_permissions import (
    APIGATEWAY,
    EVENTBRIDGE,
    arn_like,
    authorizer_caller,
    decide,
    http_route_caller,
    rule_caller,
    websocket_route_caller,
)
from tidings.local.model import Caller, Function, InvokePermission

REGION, ACCOUNT = "eu-west-1", "123456789012"
FUNCTION = Function(
    logical_id="Echo",
    name="stack-Echo",
    arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stack-Echo",
    code_dir=Path("."),
    handler="app.handler",
    runtime="python3.12",
    timeout_s=3,
    memory_mb=128,
    environment={},
)


def permission(source_arn: str | None, principal: str = APIGATEWAY, **extra: str) -> InvokePermission:
    return InvokePermission(
        logical_id="EchoPermission",
        function_id=extra.pop("function_id", "Echo"),
        action=extra.pop("action", "lambda:InvokeFunction"),
        principal=principal,
        source_arn=source_arn,
        **extra,
    )


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("arn:aws:execute-api:eu-west-1:1:abc/*", "arn:aws:execute-api:eu-west-1:1:abc/dev/$connect", True),
        ("arn:aws:execute-api:*:*:abc/dev/ping", "arn:aws:execute-api:eu-west-1:1:abc/dev/ping", True),
        (
            "arn:aws:execute-api:eu-west-1:1:abc/dev/ping",
            "arn:aws:execute-api:eu-west-1:1:abc/dev/pong",
            False,
        ),
        (
            "arn:aws:execute-api:eu-west-1:1:abc/*/GET/jobs/*",
            "arn:aws:execute-api:eu-west-1:1:abc/$default/GET/jobs/{jobId}",
            True,
        ),
        (
            "arn:aws:execute-api:eu-west-1:1:abc/*/GET/jobs/*",
            "arn:aws:execute-api:eu-west-1:1:abc/$default/POST/jobs/x",
            False,
        ),
        ("arn:aws:execute-api:eu-west-1:1:ab?/dev/x", "arn:aws:execute-api:eu-west-1:1:abc/dev/x", True),
        # a wildcard does not cross the colon-separated parts of an ARN
        ("arn:aws:execute-api:*", "arn:aws:execute-api:eu-west-1:1:abc/dev/x", False),
        ("arn:aws:events:eu-west-1:1:rule/bus/Rule", "arn:aws:events:eu-west-1:1:rule/bus/rule", False),
    ],
)
def test_arn_like(pattern: str, value: str, expected: bool) -> None:
    assert arn_like(pattern, value) is expected


def test_caller_arns_have_api_gateway_and_eventbridge_shapes() -> None:
    assert websocket_route_caller(REGION, ACCOUNT, "abc", "dev", "$connect").source_arn == (
        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc/dev/$connect"
    )
    assert authorizer_caller(REGION, ACCOUNT, "abc", "au1").source_arn == (
        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc/authorizers/au1"
    )
    http = http_route_caller(REGION, ACCOUNT, "abc", "$default", "get", "/jobs/{jobId}")
    assert http.source_arn == f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc/$default/GET/jobs/{{jobId}}"
    assert http_route_caller(REGION, ACCOUNT, "abc", "$default", "$default", "$default").source_arn.endswith(
        "abc/$default/$default"
    )
    rule = rule_caller(f"arn:aws:events:{REGION}:{ACCOUNT}:rule/bus/Rule")
    assert (rule.principal, rule.source_account) == (EVENTBRIDGE, ACCOUNT)


def test_no_statement_refuses_and_names_the_permission_that_would_allow_it() -> None:
    caller = websocket_route_caller(REGION, ACCOUNT, "abc", "dev", "echo")
    refusal = decide([], FUNCTION, caller)
    assert refusal is not None
    text = str(refusal)
    assert "apigateway.amazonaws.com may not invoke Echo" in text
    assert "AWS::Lambda::Permission" in text and caller.source_arn in text


def test_matching_statement_allows() -> None:
    caller = websocket_route_caller(REGION, ACCOUNT, "abc", "dev", "echo")
    assert decide([permission(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc/*")], FUNCTION, caller) is None
    assert decide([permission(None)], FUNCTION, caller) is None  # no SourceArn: any API of the principal


@pytest.mark.parametrize(
    "statement",
    [
        permission(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:abc/dev/other"),  # another route
        permission(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:xyz/*"),  # another API
        permission(None, principal=EVENTBRIDGE),  # another service
        permission(None, function_id="Other"),  # another function
        permission(None, action="lambda:GetFunction"),  # another action
        permission(None, source_account="999999999999"),  # another account
    ],
)
def test_statement_for_something_else_refuses(statement: InvokePermission) -> None:
    caller = websocket_route_caller(REGION, ACCOUNT, "abc", "dev", "echo")
    assert decide([statement], FUNCTION, caller) is not None


def test_authorizer_refusal_points_at_sam_http_api_setting() -> None:
    refusal = decide([], FUNCTION, authorizer_caller(REGION, ACCOUNT, "abc", "au1"))
    assert refusal is not None and "EnableFunctionDefaultPermissions: true" in refusal.fix


def test_eventbridge_rule_permission() -> None:
    rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/bus/Rule"
    allowed = permission(rule_arn, principal=EVENTBRIDGE)
    assert decide([allowed], FUNCTION, rule_caller(rule_arn)) is None
    other = rule_caller(f"arn:aws:events:{REGION}:{ACCOUNT}:rule/bus/Other")
    assert decide([allowed], FUNCTION, other) is not None
    assert decide([allowed], FUNCTION, Caller(APIGATEWAY, rule_arn)) is not None
