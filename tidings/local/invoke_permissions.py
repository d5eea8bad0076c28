"""Who may invoke a function: Lambda's resource-based policy, decided as AWS decides it.

A service invokes a function only where the function's policy has a statement allowing
`lambda:InvokeFunction` for that service principal whose `SourceArn` (and `SourceAccount`), when
given, match the caller (ArnLike: `*` and `?` wildcards). Each `AWS::Lambda::Permission` of the
transformed template is one statement; SAM writes them for its event sources and WebSocket
routes, but not for a raw `AWS::ApiGatewayV2::Integration`, nor for an HTTP API Lambda
authorizer without `EnableFunctionDefaultPermissions` (see ../shared aws-rules). Pure code:
values in, a decision out.

The caller ARNs API Gateway and EventBridge present (AWS documentation):
- WebSocket route: `arn:aws:execute-api:REGION:ACCOUNT:API_ID/STAGE/ROUTE_KEY`
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-control-access-iam.html)
- HTTP API route: `arn:aws:execute-api:REGION:ACCOUNT:API_ID/STAGE/METHOD/RESOURCE_PATH`, the
  `$default` route as `API_ID/STAGE/$default`
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html)
- Lambda authorizer (HTTP and WebSocket APIs):
  `arn:aws:execute-api:REGION:ACCOUNT:API_ID/authorizers/AUTHORIZER_ID`
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html)
- EventBridge rule: the rule's ARN, `arn:aws:events:REGION:ACCOUNT:rule/[BUS/]RULE`
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-lambda-permissions)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from tidings.local.model import Caller, Function, InvokePermission

APIGATEWAY = "apigateway.amazonaws.com"
EVENTBRIDGE = "events.amazonaws.com"
INVOKE_ACTIONS = ("lambda:invokefunction", "lambda:*", "*")


@lru_cache(maxsize=512)
def _pattern(glob: str, case_sensitive: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(body, 0 if case_sensitive else re.IGNORECASE)


def string_like(pattern: str, value: str) -> bool:
    """IAM's StringLike: `*` any characters, `?` one, case-sensitive."""
    return _pattern(pattern, True).fullmatch(value) is not None


def arn_like(pattern: str, value: str) -> bool:
    """IAM's ArnLike: each of the six colon-separated parts matched on its own, with wildcards."""
    pattern_parts = pattern.split(":", 5)
    value_parts = value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(string_like(p, v) for p, v in zip(pattern_parts, value_parts, strict=True))


def _names_function(permission: InvokePermission, function: Function) -> bool:
    return permission.function_id == function.logical_id


def _principal_matches(permission: InvokePermission, principal: str) -> bool:
    return permission.principal in (principal, "*")


def allows(permission: InvokePermission, function: Function, caller: Caller) -> bool:
    """Whether this one statement lets `caller` invoke `function`."""
    if not _names_function(permission, function):
        return False
    if permission.action.lower() not in INVOKE_ACTIONS:
        return False
    if not _principal_matches(permission, caller.principal):
        return False
    if permission.source_arn is not None and not arn_like(permission.source_arn, caller.source_arn):
        return False
    return permission.source_account is None or string_like(permission.source_account, caller.source_account)


@dataclass(frozen=True)
class Refusal:
    """Why the call was refused and the permission that would allow it."""

    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}"


def decide(permissions: Iterable[InvokePermission], function: Function, caller: Caller) -> Refusal | None:
    """None when some statement allows the call; else the refusal, naming what would allow it."""
    mine = [permission for permission in permissions if _names_function(permission, function)]
    if any(allows(permission, function, caller) for permission in mine):
        return None
    near = [p for p in mine if _principal_matches(p, caller.principal)]
    allowed = ", ".join(sorted({str(p.source_arn) for p in near}))
    seen = f" (its {caller.principal} permissions allow only {allowed})"
    return Refusal(
        message=(
            f"{caller.principal} may not invoke {function.logical_id} for {caller.source_arn}"
            + (seen if near else ": the function's policy has no statement for it")
        ),
        fix=(
            f"add an AWS::Lambda::Permission (Action: lambda:InvokeFunction, FunctionName: "
            f"{function.logical_id}, Principal: {caller.principal}, SourceArn matching {caller.source_arn})"
            + (
                "; for a SAM HttpApi Lambda authorizer, set EnableFunctionDefaultPermissions: true"
                if "/authorizers/" in caller.source_arn
                else ""
            )
        ),
    )


# ---------------------------------------------------------------------------- caller ARNs
def execute_api_arn(region: str, account: str, api_id: str, resource: str) -> str:
    return f"arn:aws:execute-api:{region}:{account}:{api_id}/{resource}"


def websocket_route_caller(region: str, account: str, api_id: str, stage: str, route_key: str) -> Caller:
    return Caller(APIGATEWAY, execute_api_arn(region, account, api_id, f"{stage}/{route_key}"), account)


def authorizer_caller(region: str, account: str, api_id: str, authorizer_id: str) -> Caller:
    return Caller(
        APIGATEWAY, execute_api_arn(region, account, api_id, f"authorizers/{authorizer_id}"), account
    )


def http_route_caller(region: str, account: str, api_id: str, stage: str, method: str, path: str) -> Caller:
    if path == "$default" or method == "$default":
        resource = f"{stage}/$default"
    else:
        resource = f"{stage}/{method.upper()}/{path.lstrip('/')}"
    return Caller(APIGATEWAY, execute_api_arn(region, account, api_id, resource), account)


def rule_caller(rule_arn: str) -> Caller:
    parts = rule_arn.split(":")
    return Caller(EVENTBRIDGE, rule_arn, parts[4] if len(parts) > 4 else "")
