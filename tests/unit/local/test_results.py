"""Authorizer policies, identity sources, integration results and HTTP API (payload 2.0) events."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
)
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from tidings.local.events import (
    HttpRequestFacts,
    RequestFacts,
    build_http_authorizer_event,
    build_http_event,
    connect_outcome,
    evaluate_policy,
    gateway_error,
    http_api_id,
    http_result,
    identity_values,
    missing_identity_source,
    route_response_body,
)

ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect"


def policy(*statements: dict[str, Any], context: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "principalId": "u1",
        "policyDocument": {"Version": "2012-10-17", "Statement": list(statements)},
    }
    if context is not None:
        result["context"] = context
    return result


def allow(resource: Any, action: Any = "execute-api:Invoke") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@pytest.mark.parametrize(
    ("result", "allowed"),
    [
        (policy(allow(ARN)), True),
        (policy(allow([ARN])), True),
        (policy(allow("*")), True),
        (policy(allow("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/*")), True),
        (policy(allow("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/*/*")), True),
        (policy(allow("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/*/*")), False),
        (policy(allow("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/de?/$connect")), True),
        (policy(allow("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/d?/$connect")), False),
        (policy(allow("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/$connect")), False),
        (policy(allow(ARN, action="execute-api:*")), True),
        (policy(allow(ARN, action="s3:GetObject")), False),
        (policy(allow(ARN), {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": "*"}), False),
        (policy({"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": ARN}), False),
        (policy(), False),
        ({"principalId": "u1"}, False),
        (None, False),
        ("Allow", False),
    ],
)
def test_policy_evaluation(result: Any, allowed: bool) -> None:
    assert evaluate_policy(result, ARN).allowed is allowed


def test_policy_context_becomes_request_context_authorizer() -> None:
    decision = evaluate_policy(policy(allow(ARN), context={"userId": "u1", "n": 3}), ARN)
    assert decision.request_context_authorizer(12) == {
        "userId": "u1",
        "n": 3,
        "principalId": "u1",
        "integrationLatency": 12,
    }
    assert evaluate_policy(policy(allow(ARN), context="junk"), ARN).context == {}


HEADERS = [("X-Token", "abc"), ("Host", "h")]


@pytest.mark.parametrize(
    ("sources", "query", "missing"),
    [
        ((), [], None),
        (("route.request.header.x-token",), [], None),  # header names ignore case
        (("route.request.header.Authorization",), [], "route.request.header.Authorization"),
        (("route.request.querystring.token",), [("token", "t")], None),
        (("route.request.querystring.Token",), [("token", "t")], "route.request.querystring.Token"),
        (("route.request.querystring.token",), [("token", "")], "route.request.querystring.token"),
        (("$request.header.X-Token", "$request.querystring.q"), [("q", "1")], None),
    ],
)
def test_missing_identity_source(
    sources: tuple[str, ...], query: list[tuple[str, str]], missing: str | None
) -> None:
    assert missing_identity_source(sources, HEADERS, query) == missing


def test_identity_values_in_order() -> None:
    sources = ("$request.header.x-token", "$request.querystring.q")
    assert identity_values(sources, HEADERS, [("q", "7")]) == ["abc", "7"]


@pytest.mark.parametrize(
    ("result", "status", "headers"),
    [
        ({"statusCode": 200}, 200, []),
        ({"statusCode": "204"}, 204, []),
        ({"statusCode": 401, "body": "no"}, 401, []),
        (None, 200, []),
        ({"anything": 1}, 200, []),
        ({"statusCode": "x"}, 502, []),
        (
            {
                "statusCode": 200,
                "headers": {"Sec-WebSocket-Protocol": "tidings.v1"},
                "multiValueHeaders": {"X-A": ["1", "2"]},
            },
            200,
            [("Sec-WebSocket-Protocol", "tidings.v1"), ("X-A", "1"), ("X-A", "2")],
        ),
    ],
)
def test_connect_outcome(result: Any, status: int, headers: list[tuple[str, str]]) -> None:
    outcome = connect_outcome(result)
    assert (outcome.status, outcome.headers) == (status, headers)
    assert outcome.accepted is (200 <= status < 300)


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"statusCode": 200, "body": "raw text"}, "raw text"),
        ({"statusCode": 200, "body": {"a": 1}}, '{"a": 1}'),
        ({"statusCode": 200}, None),
        ({"type": "pong"}, '{"type": "pong"}'),
        ("hello", '"hello"'),
        ([1, 2], "[1, 2]"),
        (None, None),
    ],
)
def test_route_response_body(result: Any, body: str | None) -> None:
    assert route_response_body(result) == body


def test_gateway_error_shape() -> None:
    assert json.loads(gateway_error("Forbidden", "c=", "r=")) == {
        "message": "Forbidden",
        "connectionId": "c=",
        "requestId": "r=",
    }


def facts(**overrides: Any) -> HttpRequestFacts:
    values: dict[str, Any] = {
        "method": "POST",
        "raw_path": "/jobs/j1",
        "raw_query": "a=1&a=2&b=",
        "headers": [
            ("Content-Type", "application/json"),
            ("User-Agent", "ua"),
            ("Cookie", "x=1; y=2"),
            ("X-M", "1"),
            ("x-m", "2"),
        ],
        "body": b'{"k": "v"}',
        "source_ip": "127.0.0.1",
        "route_key": "POST /jobs/{id}",
        "path_parameters": {"id": "j1"},
        "api_id": http_api_id("HttpApi"),
        "domain_name": "localhost:3000",
        "region": "us-east-1",
        "account_id": "123456789012",
        "request": RequestFacts("AAAAAAAAAAAAAAA=", 1731332746.012),
    }
    values.update(overrides)
    return HttpRequestFacts(**values)


def test_http_event_payload_2() -> None:
    event = build_http_event(facts(), {"user": "alice"})
    APIGatewayProxyEventV2Model.model_validate(event)
    assert event["routeKey"] == "POST /jobs/{id}"
    assert event["headers"]["x-m"] == "1,2"
    assert event["cookies"] == ["x=1", "y=2"]
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["pathParameters"] == {"id": "j1"}
    assert event["body"] == '{"k": "v"}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["authorizer"] == {"lambda": {"user": "alice"}}
    assert context["http"] == {
        "method": "POST",
        "path": "/jobs/j1",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "ua",
    }
    assert (context["time"], context["timeEpoch"], context["stage"]) == (
        "11/Nov/2024:13:45:46 +0000",
        1731332746012,
        "$default",
    )
    assert len(http_api_id("HttpApi")) == 10 and http_api_id("HttpApi") != http_api_id("Other")


def test_http_event_binary_and_empty_bodies() -> None:
    binary = build_http_event(facts(headers=[("Content-Type", "image/png")], body=b"\x89PNG\x00"))
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\x89PNG\x00"
    not_utf8 = build_http_event(facts(headers=[("Content-Type", "text/plain")], body=b"\xff\xfe"))
    assert not_utf8["isBase64Encoded"] is True
    empty = build_http_event(facts(body=b"", raw_query="", path_parameters={}))
    assert "body" not in empty and "queryStringParameters" not in empty and "pathParameters" not in empty
    assert "authorizer" not in empty["requestContext"]


def test_http_authorizer_event() -> None:
    event = build_http_authorizer_event(
        facts(raw_query="token=t1"), ("$request.header.User-Agent", "$request.querystring.token")
    )
    parsed = APIGatewayAuthorizerEventV2(event)
    assert parsed.identity_source == ["ua", "t1"]
    assert (
        parsed.route_arn
        == f"arn:aws:execute-api:us-east-1:123456789012:{http_api_id('HttpApi')}/$default/POST/jobs/{{id}}"
    )
    assert event["type"] == "REQUEST" and event["version"] == "2.0"


@pytest.mark.parametrize(
    ("result", "status", "body", "content_type"),
    [
        (
            {"statusCode": 201, "body": "made", "headers": {"Content-Type": "text/plain"}},
            201,
            b"made",
            "text/plain",
        ),
        (
            {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True},
            200,
            b"\x00\x01",
            "application/json",
        ),
        ({"statusCode": 204}, 204, b"", "application/json"),
        ({"jobId": "j1"}, 200, b'{"jobId": "j1"}', "application/json"),
        ("hello", 200, b'"hello"', "application/json"),
        ({"statusCode": "bad"}, 500, b'{"message":"Internal Server Error"}', "application/json"),
    ],
)
def test_http_result_mapping(result: Any, status: int, body: bytes, content_type: str) -> None:
    mapped = http_result(result)
    assert (mapped.status, mapped.body) == (status, body)
    assert dict((k.lower(), v) for k, v in mapped.headers)["content-type"] == content_type


def test_http_result_cookies_and_multi_value_headers() -> None:
    mapped = http_result(
        {"statusCode": 200, "cookies": ["a=1", "b=2"], "multiValueHeaders": {"X-A": ["1", "2"]}}
    )
    assert [v for k, v in mapped.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert [v for k, v in mapped.headers if k == "X-A"] == ["1", "2"]
