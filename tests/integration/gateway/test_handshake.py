"""The $connect handshake over real sockets (C1-C5) and its events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tidings.local.model import Authorizer

from .conftest import Stack, StackFactory, make_api

AUTHORIZER = Authorizer("Auth", "authorize", identity_sources=("route.request.header.X-Token",))
CONNECT_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/$connect"


def policy(effect: str, resource: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "principalId": "alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context or {"userId": "alice"},
    }


async def rejected_status(stack: Stack, **options: Any) -> int:
    url = options.pop("url", stack.ws_url)
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, **options):
            pass
    return caught.value.response.status_code


async def test_connect_event_shape_and_query(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url + "?topic=a&topic=b", user_agent_header="probe/1.0"):
        pass
    event = stack.invoker.events_for("connect")[0]
    APIGatewayWebSocketConnectEventModel.model_validate(event)
    assert event["queryStringParameters"] == {"topic": "b"}
    assert event["multiValueQueryStringParameters"] == {"topic": ["a", "b"]}
    assert event["requestContext"]["identity"] == {"userAgent": "probe/1.0", "sourceIp": "127.0.0.1"}
    assert event["multiValueHeaders"]["User-Agent"] == ["probe/1.0"]
    assert "Upgrade" not in event["headers"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Forwarded-Port"] == str(stack.gateway.port)
    assert event["headers"]["X-Amzn-Trace-Id"].startswith("Root=1-")


async def test_no_query_string_means_no_query_keys(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url):
        pass
    event = stack.invoker.events_for("connect")[0]
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event


async def test_wrong_path_is_forbidden(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    base = stack.ws_url.rsplit("/", 1)[0]
    assert await rejected_status(stack, url=base + "/prod") == 403
    assert await rejected_status(stack, url=base + "/") == 403
    assert stack.invoker.calls == []


async def test_connect_without_integration_accepts(stack_factory: StackFactory) -> None:
    stack = await stack_factory(api=make_api(connect_function=None))
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"action": "echo"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"action": "echo"}
    assert stack.invoker.events_for("connect") == []


async def test_connect_non_2xx_fails_handshake_with_that_status(stack_factory: StackFactory) -> None:
    stack = await stack_factory(handlers={"connect": lambda event: {"statusCode": 409}})
    assert await rejected_status(stack) == 409
    assert stack.gateway.connections() == []


async def test_connect_crash_is_502(stack_factory: StackFactory) -> None:
    def crash(event: dict[str, Any]) -> Any:
        raise ValueError("boom")

    stack = await stack_factory(handlers={"connect": crash})
    assert await rejected_status(stack) == 502


async def test_subprotocol_is_exactly_what_connect_returned(stack_factory: StackFactory) -> None:
    def choose(event: dict[str, Any]) -> Any:
        offered = event["headers"]["Sec-WebSocket-Protocol"].split(", ")
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": offered[0]}}

    stack = await stack_factory(handlers={"connect": choose})
    async with connect(stack.ws_url, subprotocols=["tidings.v1", "secret-token"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "tidings.v1"


async def test_gateway_selects_no_subprotocol_by_itself(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url, subprotocols=["tidings.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers


async def test_post_to_the_connecting_id_is_gone(stack_factory: StackFactory) -> None:
    statuses: list[int] = []
    holder: dict[str, Any] = {}

    def connect_handler(event: dict[str, Any]) -> Any:
        statuses.append(holder["gateway"].post(event["requestContext"]["connectionId"], b"too early"))
        return {"statusCode": 200}

    stack = await stack_factory(handlers={"connect": connect_handler})
    holder["gateway"] = stack.gateway
    async with connect(stack.ws_url) as ws:
        connection_id = stack.gateway.connections()[0]["connectionId"]
        assert stack.gateway.post(connection_id, b"now") == 200
        assert await asyncio.wait_for(ws.recv(), 5) == "now"
    assert statuses == [410]


async def test_nothing_flows_before_connect_finishes(stack_factory: StackFactory) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_connect(event: dict[str, Any]) -> Any:
        entered.set()
        await release.wait()
        return {"statusCode": 200}

    stack = await stack_factory(handlers={"connect": slow_connect})
    opening = asyncio.create_task(connect(stack.ws_url).__aenter__())
    await asyncio.wait_for(entered.wait(), 5)
    assert not opening.done()
    assert stack.gateway.connections() == []
    release.set()
    ws = await asyncio.wait_for(opening, 5)
    assert len(stack.gateway.connections()) == 1
    await ws.close()


async def test_authorizer_allow_context_reaches_every_event(stack_factory: StackFactory) -> None:
    stack = await stack_factory(
        api=make_api(authorizer=AUTHORIZER),
        handlers={"authorize": lambda event: policy("Allow", event["methodArn"], {"userId": "alice"})},
    )
    async with connect(stack.ws_url, additional_headers={"x-token": "t0ken"}) as ws:
        await ws.send(json.dumps({"action": "echo"}))
        await asyncio.wait_for(ws.recv(), 5)
    [auth_event] = stack.invoker.events_for("authorize")
    assert auth_event["type"] == "REQUEST"
    assert auth_event["methodArn"] == CONNECT_ARN
    assert auth_event["queryStringParameters"] == {} and auth_event["stageVariables"] == {}
    [disconnect] = await stack.invoker.wait_for("disconnect")
    for event in (stack.invoker.events_for("connect")[0], stack.invoker.events_for("echo")[0], disconnect):
        authorizer = event["requestContext"]["authorizer"]
        assert authorizer["principalId"] == "alice"
        assert authorizer["userId"] == "alice"
        assert isinstance(authorizer["integrationLatency"], int)
    assert stack.gateway.connections() == []


async def test_identity_source_in_query_string(stack_factory: StackFactory) -> None:
    by_query = Authorizer("Auth", "authorize", identity_sources=("route.request.querystring.token",))
    stack = await stack_factory(
        api=make_api(authorizer=by_query),
        handlers={"authorize": lambda event: policy("Allow", event["methodArn"])},
    )
    assert await rejected_status(stack) == 401
    async with connect(stack.ws_url + "?token=abc"):
        pass
    assert len(stack.invoker.events_for("authorize")) == 1


@pytest.mark.parametrize(
    ("resource", "status"),
    [
        # REST-style "stage/METHOD/path" wildcards need a level $connect does not have
        ("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/*/*", 403),
        ("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/*/*", 101),
        ("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/*", 101),
        ("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/*", 101),
        ("arn:aws:execute-api:us-east-1:123456789012:abcdef1234/de?/$connect", 101),
        ("arn:aws:execute-api:us-east-1:123456789012:otherapi/dev/$connect", 403),
    ],
)
async def test_policy_resource_must_cover_the_connect_arn(
    stack_factory: StackFactory, resource: str, status: int
) -> None:
    stack = await stack_factory(
        api=make_api(authorizer=AUTHORIZER), handlers={"authorize": lambda event: policy("Allow", resource)}
    )
    if status == 101:
        async with connect(stack.ws_url, additional_headers={"X-Token": "t"}):
            pass
    else:
        assert await rejected_status(stack, additional_headers={"X-Token": "t"}) == status
        assert stack.invoker.events_for("connect") == []


async def test_authorizer_deny_is_403(stack_factory: StackFactory) -> None:
    stack = await stack_factory(
        api=make_api(authorizer=AUTHORIZER),
        handlers={"authorize": lambda event: policy("Deny", event["methodArn"])},
    )
    assert await rejected_status(stack, additional_headers={"X-Token": "t"}) == 403


async def test_authorizer_unauthorized_is_401(stack_factory: StackFactory) -> None:
    def unauthorized(event: dict[str, Any]) -> Any:
        raise Exception("Unauthorized")

    stack = await stack_factory(api=make_api(authorizer=AUTHORIZER), handlers={"authorize": unauthorized})
    assert await rejected_status(stack, additional_headers={"X-Token": "t"}) == 401
    assert stack.invoker.events_for("connect") == []


async def test_missing_identity_source_is_401_without_invoking(stack_factory: StackFactory) -> None:
    stack = await stack_factory(
        api=make_api(authorizer=AUTHORIZER), handlers={"authorize": lambda event: policy("Allow", "*")}
    )
    assert await rejected_status(stack) == 401
    assert stack.invoker.calls == []


async def test_disconnect_codes_and_reasons(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        await ws.close(code=4000, reason="bye")
    async with connect(stack.ws_url) as ws:
        # A close frame without a status code (websockets sends an empty payload for None)
        await ws.close(code=None)  # type: ignore[arg-type]
    events = await stack.invoker.wait_for("disconnect", 2)
    for event in events:
        APIGatewayWebSocketDisconnectEventModel.model_validate(event)
    contexts = sorted((e["requestContext"] for e in events), key=lambda c: c["disconnectStatusCode"])
    assert (contexts[0]["disconnectStatusCode"], contexts[0]["disconnectReason"]) == (
        1005,
        "Client-side close frame status not set",
    )
    assert (contexts[1]["disconnectStatusCode"], contexts[1]["disconnectReason"]) == (4000, "bye")


async def test_authorizer_result_over_8k_is_500(stack_factory: StackFactory) -> None:
    stack = await stack_factory(
        api=make_api(authorizer=AUTHORIZER),
        handlers={"authorize": lambda event: policy("Allow", event["methodArn"], {"blob": "x" * 9000})},
    )
    assert await rejected_status(stack, additional_headers={"X-Token": "t"}) == 500
    assert stack.invoker.events_for("connect") == []
