"""API Gateway events, pure: one builder per event type, and readers for what handlers return.

WebSocket events follow captured AWS events (tests/unit/local/events/); HTTP API events follow
payload format 2.0. Nothing here reads a clock or the network: every time and id is passed in.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from tidings.local.model import WebSocketApi

Pairs = Sequence[tuple[str, str]]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Hop-by-hop headers API Gateway keeps in the authorizer event but drops from $connect's
_CONNECT_DROPPED_HEADERS = frozenset({"connection", "upgrade", "content-length"})
# Headers API Gateway's $disconnect event carries (values are empty except Host)
_DISCONNECT_HEADERS = ("x-api-key", "X-Forwarded-For", "x-restapi")
_TEXT_TYPES = re.compile(r"^(text/|application/(json|xml|javascript|x-www-form-urlencoded)|.*\+json|.*\+xml)")


def request_time(epoch_s: float) -> str:
    """`11/Nov/2024:13:45:46 +0000`, independent of the process locale."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:{moment:%H:%M:%S} +0000"


@dataclass(frozen=True)
class WsApiContext:
    """The API-wide part of every WebSocket event."""

    api_id: str
    stage: str
    domain_name: str
    region: str
    account_id: str

    @classmethod
    def of(cls, api: WebSocketApi, domain_name: str | None = None) -> WsApiContext:
        domain = domain_name or f"{api.api_id}.execute-api.{api.region}.amazonaws.com"
        return cls(api.api_id, api.stage, domain, api.region, api.account_id)

    @property
    def connect_method_arn(self) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/{self.stage}/$connect"


@dataclass(frozen=True)
class ConnectionFacts:
    """What every event of one connection repeats."""

    connection_id: str
    connected_at_ms: int
    source_ip: str
    user_agent: str
    authorizer: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RequestFacts:
    request_id: str
    epoch_s: float
    extended_request_id: str | None = None

    @property
    def epoch_ms(self) -> int:
        return round(self.epoch_s * 1000)


def single_and_multi(pairs: Pairs) -> tuple[dict[str, str], dict[str, list[str]]]:
    """API Gateway v1 style: the last value per name, and every value per name."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _request_context(
    api: WsApiContext,
    conn: ConnectionFacts,
    request: RequestFacts,
    route_key: str,
    event_type: str,
    *,
    with_authorizer: bool = True,
) -> dict[str, Any]:
    context: dict[str, Any] = {"routeKey": route_key}
    if with_authorizer and conn.authorizer is not None:
        context["authorizer"] = dict(conn.authorizer)
    context.update(
        {
            "eventType": event_type,
            "extendedRequestId": request.extended_request_id or request.request_id,
            "requestTime": request_time(request.epoch_s),
            "messageDirection": "IN",
            "stage": api.stage,
            "connectedAt": conn.connected_at_ms,
            "requestTimeEpoch": request.epoch_ms,
            "identity": {"userAgent": conn.user_agent, "sourceIp": conn.source_ip},
            "requestId": request.request_id,
            "domainName": api.domain_name,
            "connectionId": conn.connection_id,
            "apiId": api.api_id,
        }
    )
    return context


def build_authorizer_event(
    api: WsApiContext, conn: ConnectionFacts, request: RequestFacts, headers: Pairs, query: Pairs
) -> dict[str, Any]:
    """The REQUEST authorizer event for `$connect` (query maps are present even when empty)."""
    single_headers, multi_headers = single_and_multi(headers)
    single_query, multi_query = single_and_multi(query)
    return {
        "type": "REQUEST",
        "methodArn": api.connect_method_arn,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "stageVariables": {},
        "requestContext": _request_context(api, conn, request, "$connect", "CONNECT", with_authorizer=False),
    }


def build_connect_event(
    api: WsApiContext, conn: ConnectionFacts, request: RequestFacts, headers: Pairs, query: Pairs
) -> dict[str, Any]:
    kept = [(name, value) for name, value in headers if name.lower() not in _CONNECT_DROPPED_HEADERS]
    single_headers, multi_headers = single_and_multi(kept)
    event: dict[str, Any] = {"headers": single_headers, "multiValueHeaders": multi_headers}
    if query:
        single_query, multi_query = single_and_multi(query)
        event["queryStringParameters"] = single_query
        event["multiValueQueryStringParameters"] = multi_query
    event["requestContext"] = _request_context(api, conn, request, "$connect", "CONNECT")
    event["isBase64Encoded"] = False
    return event


def build_message_event(
    api: WsApiContext,
    conn: ConnectionFacts,
    request: RequestFacts,
    route_key: str,
    message_id: str,
    body: str,
) -> dict[str, Any]:
    context = _request_context(api, conn, request, route_key, "MESSAGE")
    # messageId sits right after routeKey/authorizer in captured events
    ordered: dict[str, Any] = {}
    for key, value in context.items():
        if key == "eventType":
            ordered["messageId"] = message_id
        ordered[key] = value
    return {"requestContext": ordered, "body": body, "isBase64Encoded": False}


def build_disconnect_event(
    api: WsApiContext, conn: ConnectionFacts, request: RequestFacts, status_code: int, reason: str
) -> dict[str, Any]:
    headers = [("Host", api.domain_name), *((name, "") for name in _DISCONNECT_HEADERS)]
    single_headers, multi_headers = single_and_multi(headers)
    context = _request_context(api, conn, request, "$disconnect", "DISCONNECT")
    ordered: dict[str, Any] = {}
    for key, value in context.items():
        if key == "eventType":
            ordered["disconnectStatusCode"] = status_code
        ordered[key] = value
        if key == "messageDirection":
            ordered["disconnectReason"] = reason
    return {
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "requestContext": ordered,
        "isBase64Encoded": False,
    }


# --- Authorizer results -------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizerDecision:
    allowed: bool
    principal_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def request_context_authorizer(self, integration_latency_ms: int) -> dict[str, Any]:
        """`requestContext.authorizer` as API Gateway passes it to later integrations."""
        return {
            **self.context,
            "principalId": self.principal_id,
            "integrationLatency": integration_latency_ms,
        }


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _arn_matches(pattern: str, arn: str) -> bool:
    # IAM globbing: `*` any run of characters, `?` one character; nothing else is special
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn) is not None


def evaluate_policy(result: Any, method_arn: str) -> AuthorizerDecision:
    """Allow only when an Allow statement covers `method_arn` for execute-api:Invoke and no Deny does."""
    if not isinstance(result, dict):
        return AuthorizerDecision(False)
    principal = result.get("principalId")
    context = result.get("context") or {}
    if not isinstance(context, dict):
        context = {}
    document = result.get("policyDocument")
    statements = _as_list(document.get("Statement")) if isinstance(document, dict) else []
    allowed = False
    for statement in statements:
        if not isinstance(statement, dict):
            continue
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        if not any(fnmatch.fnmatchcase("execute-api:Invoke", a) or a == "*" for a in actions):
            continue
        if not any(
            _arn_matches(str(resource), method_arn) for resource in _as_list(statement.get("Resource"))
        ):
            continue
        effect = statement.get("Effect")
        if effect == "Deny":
            return AuthorizerDecision(False, None if principal is None else str(principal), context)
        if effect == "Allow":
            allowed = True
    return AuthorizerDecision(allowed, None if principal is None else str(principal), context)


def missing_identity_source(identity_sources: Iterable[str], headers: Pairs, query: Pairs) -> str | None:
    """The first identity source absent from the request (→ 401 without invoking the authorizer)."""
    header_names = {name.lower() for name, value in headers if value}
    query_names = {name for name, value in query if value}
    for source in identity_sources:
        for prefix in ("route.request.header.", "$request.header."):
            if source.startswith(prefix) and source[len(prefix) :].lower() not in header_names:
                return source
        for prefix in ("route.request.querystring.", "$request.querystring."):
            if source.startswith(prefix) and source[len(prefix) :] not in query_names:
                return source
    return None


def identity_values(identity_sources: Iterable[str], headers: Pairs, query: Pairs) -> list[str]:
    lowered = {name.lower(): value for name, value in headers}
    queried = dict(query)
    values: list[str] = []
    for source in identity_sources:
        for prefix in ("route.request.header.", "$request.header."):
            if source.startswith(prefix):
                values.append(lowered.get(source[len(prefix) :].lower(), ""))
        for prefix in ("route.request.querystring.", "$request.querystring."):
            if source.startswith(prefix):
                values.append(queried.get(source[len(prefix) :], ""))
    return values


# --- Integration results ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectOutcome:
    status: int
    headers: list[tuple[str, str]]

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def connect_outcome(result: Any) -> ConnectOutcome:
    """How `$connect`'s return value decides the handshake (C3): statusCode and headers.

    A result without a statusCode (including None) accepts the connection: WebSocket
    integrations have no proxy-response validation for `$connect`.
    """
    if not isinstance(result, dict) or "statusCode" not in result:
        return ConnectOutcome(200, [])
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        return ConnectOutcome(502, [])
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in _as_list(values))
    return ConnectOutcome(status, headers)


def route_response_body(result: Any) -> str | None:
    """What a route response sends back (R6): a proxy result's body, else the result as JSON."""
    if isinstance(result, dict) and "statusCode" in result:
        body = result.get("body")
        if body is None:
            return None
        return body if isinstance(body, str) else json.dumps(body)
    if result is None:
        return None
    return json.dumps(result)


def gateway_error(message: str, connection_id: str, request_id: str) -> str:
    """`{"message": "Forbidden", "connectionId": ..., "requestId": ...}` (R3, R7)."""
    return json.dumps({"message": message, "connectionId": connection_id, "requestId": request_id})


# --- HTTP API (payload format 2.0) --------------------------------------------------------------


def http_api_id(api_logical_id: str) -> str:
    """A stable 10-character API id for an HTTP API known only by its logical id."""
    return hashlib.sha256(api_logical_id.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class HttpRequestFacts:
    method: str
    raw_path: str
    raw_query: str
    headers: Pairs
    body: bytes
    source_ip: str
    route_key: str  # "POST /jobs"
    path_parameters: Mapping[str, str]
    api_id: str
    domain_name: str
    region: str
    account_id: str
    request: RequestFacts


def _http_headers(headers: Pairs) -> tuple[dict[str, str], list[str]]:
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[lowered] = f"{joined[lowered]},{value}" if lowered in joined else value
    return joined, cookies


def _http_query(raw_query: str) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _http_request_context(facts: HttpRequestFacts, headers: Mapping[str, str]) -> dict[str, Any]:
    return {
        "accountId": facts.account_id,
        "apiId": facts.api_id,
        "domainName": facts.domain_name,
        "domainPrefix": facts.domain_name.split(".")[0],
        "http": {
            "method": facts.method,
            "path": facts.raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": facts.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": facts.request.request_id,
        "routeKey": facts.route_key,
        "stage": "$default",
        "time": request_time(facts.request.epoch_s),
        "timeEpoch": facts.request.epoch_ms,
    }


def _common_http_fields(facts: HttpRequestFacts) -> tuple[dict[str, Any], dict[str, str]]:
    headers, cookies = _http_headers(facts.headers)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": facts.route_key,
        "rawPath": facts.raw_path,
        "rawQueryString": facts.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if facts.raw_query:
        event["queryStringParameters"] = _http_query(facts.raw_query)
    return event, headers


def build_http_event(
    facts: HttpRequestFacts, authorizer_context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    event, headers = _common_http_fields(facts)
    context = _http_request_context(facts, headers)
    if authorizer_context is not None:
        context["authorizer"] = {"lambda": dict(authorizer_context)}
    event["requestContext"] = context
    if facts.path_parameters:
        event["pathParameters"] = dict(facts.path_parameters)
    if facts.body:
        content_type = headers.get("content-type", "")
        text = _as_text(facts.body) if _TEXT_TYPES.match(content_type) or not content_type else None
        if text is None:
            event["body"] = base64.b64encode(facts.body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
            event["isBase64Encoded"] = False
    else:
        event["isBase64Encoded"] = False
    return event


def _as_text(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def build_http_authorizer_event(facts: HttpRequestFacts, identity_sources: Sequence[str]) -> dict[str, Any]:
    """A Lambda authorizer event for HTTP APIs, payload 2.0 (simple responses)."""
    event, headers = _common_http_fields(facts)
    method, _, path = facts.route_key.partition(" ")
    arn = f"arn:aws:execute-api:{facts.region}:{facts.account_id}:{facts.api_id}/$default/{method}{path}"
    event = {"version": "2.0", "type": "REQUEST", "routeArn": arn, **event}
    event["identitySource"] = identity_values(identity_sources, facts.headers, parse_qsl(facts.raw_query))
    event["requestContext"] = _http_request_context(facts, headers)
    if facts.path_parameters:
        event["pathParameters"] = dict(facts.path_parameters)
    return event


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_result(result: Any) -> HttpResult:
    """Map a handler's return value to a response the way HTTP APIs (payload 2.0) do."""
    if isinstance(result, dict) and "statusCode" in result:
        try:
            status = int(result["statusCode"])
        except (TypeError, ValueError):
            return HttpResult(
                500, [("Content-Type", "application/json")], b'{"message":"Internal Server Error"}'
            )
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(v)) for v in _as_list(values))
        headers.extend(("Set-Cookie", str(cookie)) for cookie in _as_list(result.get("cookies")))
        if not any(name.lower() == "content-type" for name, _ in headers):
            # HTTP APIs label an untyped proxy response as JSON
            headers.append(("Content-Type", "application/json"))
        raw = result.get("body")
        if raw is None:
            body = b""
        elif result.get("isBase64Encoded"):
            body = base64.b64decode(str(raw))
        else:
            body = (raw if isinstance(raw, str) else json.dumps(raw)).encode("utf-8")
        return HttpResult(status, headers, body)
    return HttpResult(200, [("Content-Type", "application/json")], json.dumps(result).encode("utf-8"))
