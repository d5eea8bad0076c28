"""`tidings generate-event`: sample events in AWS's shapes, like `sam local generate-event`. Pure.

The API Gateway events come from the local stack's own builders (tidings/local/events.py), so a
generated event has exactly the shape `tidings dev` hands to functions; the EventBridge event is
shaped by the local bus's `eventbridge_event`. Every time and id is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "websocket-connect",
    "websocket-message",
    "websocket-disconnect",
    "websocket-authorizer",
    "http-api",
    "http-authorizer",
    "eventbridge",
)


@dataclass(frozen=True)
class Sample:
    """What the user may set (command-line options); the rest are typical values."""

    epoch_s: float
    ids: tuple[str, ...]  # fresh ids: connection, request, message/event (API Gateway's format)
    api_id: str = "abcdef1234"
    stage: str = "dev"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    route: str | None = None  # WebSocket route key, or "METHOD /path" for HTTP
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    authorizer: dict[str, Any] = field(default_factory=dict)  # the authorizer's context
    source: str = "my.app"
    detail_type: str = "Sample"
    detail: Any = None
    source_ip: str = "203.0.113.10"
    user_agent: str = "Mozilla/5.0"


def generate(kind: str, sample: Sample) -> dict[str, Any]:
    if kind.startswith("websocket-"):
        return _websocket(kind.removeprefix("websocket-"), sample)
    if kind in ("http-api", "http-authorizer"):
        return _http(kind == "http-authorizer", sample)
    if kind == "eventbridge":
        from tidings.local.bus import eventbridge_event  # the local bus (and its moto) only here

        return eventbridge_event(
            {
                "version": "0",
                "id": _uuid(sample.ids[2]),
                "detail-type": sample.detail_type,
                "source": sample.source,
                "account": sample.account_id,
                "time": int(sample.epoch_s),
                "region": sample.region,
                "resources": [],
                "detail": sample.detail if sample.detail is not None else {},
            }
        )
    raise ValueError(f"unknown event kind {kind!r}; one of: {', '.join(KINDS)}")


def _uuid(seed: str) -> str:
    """A UUID-shaped id (EventBridge's) from an API Gateway-shaped one."""
    raw = hashlib.sha256(seed.encode()).hexdigest()
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-8{raw[17:20]}-{raw[20:32]}"


def _websocket(kind: str, sample: Sample) -> dict[str, Any]:
    from tidings.local import events  # the local stack's model (and its extra) only when used

    domain = f"{sample.api_id}.execute-api.{sample.region}.amazonaws.com"
    api = events.WsApiContext(sample.api_id, sample.stage, domain, sample.region, sample.account_id)
    connection_id, request_id, message_id = sample.ids[:3]
    authorizer = None
    if kind != "authorizer":
        authorizer = {"principalId": "user", "integrationLatency": 0, **sample.authorizer}
    conn = events.ConnectionFacts(
        connection_id, round(sample.epoch_s * 1000), sample.source_ip, sample.user_agent, authorizer
    )
    request = events.RequestFacts(request_id, sample.epoch_s)
    headers = [
        ("Host", domain),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("Sec-WebSocket-Key", base64.b64encode(sample.ids[1].encode()[:16]).decode()),
        ("Sec-WebSocket-Version", "13"),
        ("User-Agent", sample.user_agent),
        ("X-Forwarded-For", sample.source_ip),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
        *sample.headers,
    ]
    query = list(sample.query)
    if kind == "authorizer":
        return events.build_authorizer_event(api, conn, request, headers, query)
    if kind == "connect":
        return events.build_connect_event(api, conn, request, headers, query)
    if kind == "message":
        body = (
            sample.body if sample.body is not None else json.dumps({"action": sample.route or "sendmessage"})
        )
        route = sample.route or _route_of(body)
        return events.build_message_event(api, conn, request, route, message_id, body)
    if kind == "disconnect":
        return events.build_disconnect_event(api, conn, request, 1001, "Going away")
    raise ValueError(f"unknown event kind 'websocket-{kind}'; one of: {', '.join(KINDS)}")


def _route_of(body: str) -> str:
    """The route a `$request.body.action` selection expression would pick, else `$default`."""
    try:
        action = json.loads(body).get("action")
    except (ValueError, AttributeError):
        return "$default"
    return action if isinstance(action, str) and action else "$default"


def _http(authorizer: bool, sample: Sample) -> dict[str, Any]:
    from tidings.local import events

    route = sample.route or "POST /items"
    method, _, path = route.partition(" ")
    if not path.startswith("/"):
        raise ValueError(f"an HTTP route is 'METHOD /path', not {route!r}")
    body = (sample.body or "").encode()
    headers = [
        ("accept", "*/*"),
        ("host", f"{sample.api_id}.execute-api.{sample.region}.amazonaws.com"),
        ("user-agent", sample.user_agent),
        ("x-forwarded-for", sample.source_ip),
        ("x-forwarded-port", "443"),
        ("x-forwarded-proto", "https"),
        *([("content-type", "application/json")] if body else []),
        *([("authorization", "Bearer TOKEN")] if authorizer else []),
        *sample.headers,
    ]
    facts = events.HttpRequestFacts(
        method=method.upper(),
        raw_path=path,
        raw_query="&".join(f"{k}={v}" for k, v in sample.query),
        headers=headers,
        body=body,
        source_ip=sample.source_ip,
        route_key=f"{method.upper()} {path}",
        path_parameters={},
        api_id=sample.api_id,
        domain_name=f"{sample.api_id}.execute-api.{sample.region}.amazonaws.com",
        region=sample.region,
        account_id=sample.account_id,
        request=events.RequestFacts(sample.ids[1], sample.epoch_s),
    )
    if authorizer:
        return events.build_http_authorizer_event(facts, ["$request.header.Authorization"])
    return events.build_http_event(facts, sample.authorizer or None)
