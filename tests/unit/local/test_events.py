"""Emulated events rebuilt byte for byte from captured shapes, and validated by Powertools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)

from tidings.local.events import (
    ConnectionFacts,
    RequestFacts,
    WsApiContext,
    build_authorizer_event,
    build_connect_event,
    build_disconnect_event,
    build_message_event,
    request_time,
    single_and_multi,
)
from tidings.local.model import WebSocketApi

HERE = Path(__file__).parent
PROJECT_EVENTS = HERE.parent.parent / "events"


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def api_of(event: dict[str, Any], account: str = "123456789012") -> WsApiContext:
    context = event["requestContext"]
    region = context["domainName"].split(".")[2]
    return WsApiContext(context["apiId"], context["stage"], context["domainName"], region, account)


def connection_of(event: dict[str, Any]) -> ConnectionFacts:
    context = event["requestContext"]
    identity = context["identity"]
    return ConnectionFacts(
        context["connectionId"],
        context["connectedAt"],
        identity["sourceIp"],
        identity.get("userAgent", ""),
        context.get("authorizer"),
    )


def request_of(event: dict[str, Any]) -> RequestFacts:
    context = event["requestContext"]
    return RequestFacts(
        context["requestId"], context["requestTimeEpoch"] / 1000, context["extendedRequestId"]
    )


def pairs(multi: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, values in multi.items() for value in values]


def rebuild_connect(fixture: dict[str, Any]) -> dict[str, Any]:
    query = pairs(fixture.get("multiValueQueryStringParameters", {}))
    headers = pairs(fixture["multiValueHeaders"])
    return build_connect_event(api_of(fixture), connection_of(fixture), request_of(fixture), headers, query)


def rebuild_message(fixture: dict[str, Any]) -> dict[str, Any]:
    context = fixture["requestContext"]
    return build_message_event(
        api_of(fixture),
        connection_of(fixture),
        request_of(fixture),
        context["routeKey"],
        context["messageId"],
        fixture["body"],
    )


def rebuild_disconnect(fixture: dict[str, Any]) -> dict[str, Any]:
    context = fixture["requestContext"]
    return build_disconnect_event(
        api_of(fixture),
        connection_of(fixture),
        request_of(fixture),
        context["disconnectStatusCode"],
        context["disconnectReason"],
    )


@pytest.mark.parametrize(
    "path", [HERE / "events" / "ws_connect.json", PROJECT_EVENTS / "websocket_connect.json"]
)
def test_connect_event_is_byte_compatible(path: Path) -> None:
    fixture = load(path)
    built = rebuild_connect(fixture)
    assert json.dumps(built) == json.dumps(fixture)
    APIGatewayWebSocketConnectEventModel.model_validate(built)


@pytest.mark.parametrize(
    "path", [HERE / "events" / "ws_message.json", PROJECT_EVENTS / "websocket_message.json"]
)
def test_message_event_is_byte_compatible(path: Path) -> None:
    fixture = load(path)
    built = rebuild_message(fixture)
    assert json.dumps(built) == json.dumps(fixture)
    model = APIGatewayWebSocketMessageEventModel.model_validate(built)
    assert model.request_context.message_id == fixture["requestContext"]["messageId"]
    assert "headers" not in built


@pytest.mark.parametrize(
    "path", [HERE / "events" / "ws_disconnect.json", PROJECT_EVENTS / "websocket_disconnect.json"]
)
def test_disconnect_event_is_byte_compatible(path: Path) -> None:
    fixture = load(path)
    built = rebuild_disconnect(fixture)
    assert json.dumps(built) == json.dumps(fixture)
    model = APIGatewayWebSocketDisconnectEventModel.model_validate(built)
    assert model.request_context.disconnect_status_code == fixture["requestContext"]["disconnectStatusCode"]


@pytest.mark.parametrize(
    ("path", "account"),
    [
        (HERE / "events" / "ws_authorizer.json", "210987654321"),
        (PROJECT_EVENTS / "authorizer_request.json", None),
    ],
)
def test_authorizer_event_is_byte_compatible(path: Path, account: str | None) -> None:
    fixture = load(path)
    api = api_of(fixture, account or "123456789012")
    headers = pairs(fixture["multiValueHeaders"])
    built = build_authorizer_event(api, connection_of(fixture), request_of(fixture), headers, [])
    assert json.dumps(built) == json.dumps(fixture)
    assert built["methodArn"] == api.connect_method_arn


def test_connect_drops_hop_by_hop_headers_and_adds_query_only_when_present() -> None:
    fixture = load(HERE / "events" / "ws_connect.json")
    headers = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("X-A", "1"), ("X-A", "2")]
    built = build_connect_event(api_of(fixture), connection_of(fixture), request_of(fixture), headers, [])
    assert built["headers"] == {"X-A": "2"}
    assert built["multiValueHeaders"] == {"X-A": ["1", "2"]}
    assert "queryStringParameters" not in built
    with_query = build_connect_event(
        api_of(fixture), connection_of(fixture), request_of(fixture), headers, [("t", "1"), ("t", "2")]
    )
    assert with_query["queryStringParameters"] == {"t": "2"}
    assert with_query["multiValueQueryStringParameters"] == {"t": ["1", "2"]}


def test_key_sets_match_powertools_captures() -> None:
    """Same keys as the events AWS sent to Powertools' test suite (which have no userAgent)."""
    captured_context = {
        "routeKey",
        "eventType",
        "extendedRequestId",
        "requestTime",
        "messageDirection",
        "stage",
        "connectedAt",
        "requestTimeEpoch",
        "identity",
        "requestId",
        "domainName",
        "connectionId",
        "apiId",
    }
    connect = rebuild_connect(load(HERE / "events" / "ws_connect.json"))
    message = rebuild_message(load(HERE / "events" / "ws_message.json"))
    disconnect = rebuild_disconnect(load(HERE / "events" / "ws_disconnect.json"))
    assert set(connect) == {"headers", "multiValueHeaders", "requestContext", "isBase64Encoded"}
    assert set(connect["requestContext"]) == captured_context
    assert set(message) == {"requestContext", "body", "isBase64Encoded"}
    assert set(message["requestContext"]) == captured_context | {"messageId"}
    assert set(disconnect) == {"headers", "multiValueHeaders", "requestContext", "isBase64Encoded"}
    assert set(disconnect["requestContext"]) == captured_context | {
        "disconnectStatusCode",
        "disconnectReason",
    }
    assert set(disconnect["headers"]) == {"Host", "x-api-key", "X-Forwarded-For", "x-restapi"}


def test_powertools_data_class_reads_every_event() -> None:
    fixture = load(PROJECT_EVENTS / "websocket_message.json")
    for built in (
        rebuild_connect(load(PROJECT_EVENTS / "websocket_connect.json")),
        rebuild_message(fixture),
        rebuild_disconnect(load(PROJECT_EVENTS / "websocket_disconnect.json")),
    ):
        event = APIGatewayWebSocketEvent(built)
        context = event.request_context
        assert context.connection_id == "BFaT_fALIAMCKug="
        assert context.identity.source_ip == "203.0.113.7"
        assert context.connected_at == 1731332746000
        assert context.event_type in {"CONNECT", "MESSAGE", "DISCONNECT"}
        assert event.is_base64_encoded is False
    assert APIGatewayWebSocketEvent(rebuild_message(fixture)).json_body == {
        "action": "subscribe",
        "topic": "job:job-1",
    }


def test_authorizer_context_rides_on_every_event() -> None:
    fixture = load(HERE / "events" / "ws_message.json")
    authorizer = {"userId": "bob", "principalId": "bob", "integrationLatency": 7}
    conn = ConnectionFacts("CgkIBwYFBAMCAQA=", 1735806600000, "198.51.100.20", "ua", authorizer)
    api, request = api_of(fixture), request_of(fixture)
    for built in (
        build_connect_event(api, conn, request, [], []),
        build_message_event(api, conn, request, "ping", "EBESExQVFhcYGRo=", "{}"),
        build_disconnect_event(api, conn, request, 1000, "Normal closure"),
    ):
        assert built["requestContext"]["authorizer"] == authorizer
    # The authorizer's own event never carries it
    assert "authorizer" not in build_authorizer_event(api, conn, request, [], [])["requestContext"]


def test_api_context_defaults_to_the_aws_domain() -> None:
    api = WebSocketApi("Ws", "abcdef1234", "n", "dev", "$request.body.action", {}, region="eu-central-1")
    context = WsApiContext.of(api)
    assert context.domain_name == "abcdef1234.execute-api.eu-central-1.amazonaws.com"
    assert (
        context.connect_method_arn == "arn:aws:execute-api:eu-central-1:123456789012:abcdef1234/dev/$connect"
    )
    assert WsApiContext.of(api, "localhost:3001").domain_name == "localhost:3001"


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (1731332746.012, "11/Nov/2024:13:45:46 +0000"),
        (0, "01/Jan/1970:00:00:00 +0000"),
        (1709251199, "29/Feb/2024:23:59:59 +0000"),
    ],
)
def test_request_time_format(epoch: float, text: str) -> None:
    assert request_time(epoch) == text


def test_single_and_multi_keep_the_last_single_value() -> None:
    assert single_and_multi([("a", "1"), ("b", "2"), ("a", "3")]) == (
        {"a": "3", "b": "2"},
        {"a": ["1", "3"], "b": ["2"]},
    )
