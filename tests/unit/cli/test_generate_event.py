"""`tidings generate-event` and `tidings --version`: AWS's shapes, checked with Powertools' models."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import models
from pydantic import BaseModel

from tidings import cli

CAPTURED = Path(__file__).resolve().parents[1] / "local" / "events"

MODELS: dict[str, type[BaseModel]] = {
    "websocket-connect": models.APIGatewayWebSocketConnectEventModel,
    "websocket-message": models.APIGatewayWebSocketMessageEventModel,
    "websocket-disconnect": models.APIGatewayWebSocketDisconnectEventModel,
    "http-api": models.APIGatewayProxyEventV2Model,
    "http-authorizer": models.ApiGatewayAuthorizerRequestV2,
    "eventbridge": models.EventBridgeModel,
}


def _generate(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert cli.main(["generate-event", *argv]) == 0
    event: dict[str, Any] = json.loads(capsys.readouterr().out)
    return event


def test_version_prints_the_installed_distributions_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tidings {version('tidings')}"


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_kind_validates_against_the_powertools_model(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    MODELS[kind].model_validate(_generate(capsys, kind))


def _shape(value: Any) -> Any:
    """Keys and value types, recursively; list items by the first one's shape."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.parametrize(
    ("kind", "captured"),
    [
        ("websocket-authorizer", "ws_authorizer"),  # Powertools has no model for WebSocket authorizers
        ("websocket-connect", "ws_connect"),
        ("websocket-message", "ws_message"),
        ("websocket-disconnect", "ws_disconnect"),
    ],
)
def test_websocket_events_have_the_shape_of_events_captured_from_aws(
    kind: str, captured: str, capsys: pytest.CaptureFixture[str]
) -> None:
    aws = json.loads((CAPTURED / f"{captured}.json").read_text())
    event = _generate(
        capsys, kind, *(["--authorizer", '{"userId": "u"}'] if kind != "websocket-authorizer" else [])
    )
    if kind == "websocket-message":
        event["body"] = aws["body"]
    generated, expected = _shape(event), _shape(aws)
    # headers differ per client; the rest of the structure must match
    for shape in (generated, expected):
        for key in (
            "headers",
            "multiValueHeaders",
            "queryStringParameters",
            "multiValueQueryStringParameters",
        ):
            shape.pop(key, None)
        shape["requestContext"].pop("authorizer", None)
    assert generated == expected


def test_a_message_event_routes_by_its_action_and_carries_the_authorizer_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = '{"action": "subscribe", "topic": "job:1"}'
    event = _generate(capsys, "websocket-message", "--body", body, "--authorizer", '{"userId": "alice"}')
    parsed = models.APIGatewayWebSocketMessageEventModel.model_validate(event)
    assert parsed.request_context.route_key == "subscribe"
    assert parsed.body == body
    assert event["requestContext"]["authorizer"]["userId"] == "alice"
    assert _generate(capsys, "websocket-message", "--body", "hi")["requestContext"]["routeKey"] == "$default"


def test_http_and_eventbridge_options_shape_the_event(capsys: pytest.CaptureFixture[str]) -> None:
    http = _generate(capsys, "http-api", "--route", "GET /jobs/1", "--query", "a=1", "--header", "x-k=v")
    parsed = models.APIGatewayProxyEventV2Model.model_validate(http)
    assert (parsed.routeKey, parsed.rawPath, parsed.rawQueryString) == ("GET /jobs/1", "/jobs/1", "a=1")
    assert http["headers"]["x-k"] == "v"
    bus = _generate(capsys, "eventbridge", "--source", "s", "--detail-type", "T", "--detail", '{"n": 1}')
    parsed_bus = models.EventBridgeModel.model_validate(bus)
    assert (parsed_bus.source, parsed_bus.detail_type, parsed_bus.detail) == ("s", "T", {"n": 1})


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["nope"], ["eventbridge", "--detail", "[1]"], ["http-api", "--route", "GET nopath"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["generate-event", *argv])
        assert exit_info.value.code == 2
        assert "Traceback" not in capsys.readouterr().err
