"""Routes, replies and errors over real sockets (R1-R8)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayWebSocketMessageEventModel
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tidings.local.model import Route

from .conftest import StackFactory, make_api


async def test_custom_route_reply_and_event_shape(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"action": "echo", "n": 1}))
        reply = await asyncio.wait_for(ws.recv(), 5)
    assert json.loads(reply) == {"action": "echo", "n": 1}
    event = stack.invoker.events_for("echo")[0]
    APIGatewayWebSocketMessageEventModel.model_validate(event)
    assert event["requestContext"]["routeKey"] == "echo"
    assert event["requestContext"]["eventType"] == "MESSAGE"
    connect_event = stack.invoker.events_for("connect")[0]
    assert event["requestContext"]["connectionId"] == connect_event["requestContext"]["connectionId"]
    assert event["requestContext"]["connectedAt"] == connect_event["requestContext"]["connectedAt"]


async def test_reply_only_with_route_response(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"action": "silent"}))  # same function, no route response
        await ws.send(json.dumps({"action": "echo", "marker": 2}))
        reply = await asyncio.wait_for(ws.recv(), 5)
    # The first reply the client sees is the echo: the silent route sent nothing
    assert json.loads(reply)["marker"] == 2
    assert len(stack.invoker.events_for("echo")) == 2


async def test_bare_result_is_sent_as_json(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        await ws.send("not json at all")
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply == {"routed": "$default", "body": "not json at all"}


async def test_no_default_route_answers_forbidden(stack_factory: StackFactory) -> None:
    stack = await stack_factory(api=make_api(default=False))
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"action": "nope"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        connection_id = stack.gateway.connections()[0]["connectionId"]
    assert reply["message"] == "Forbidden"
    assert reply["connectionId"] == connection_id
    assert len(reply["requestId"]) == 16
    assert stack.invoker.events_for("default") == []


async def test_lifecycle_keys_are_never_selected(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"action": "$disconnect"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["routed"] == "$default"
    assert len(stack.invoker.events_for("connect")) == 1


async def test_failing_handler_then_gateway_keeps_serving(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"action": "fail"}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        await ws.send(json.dumps({"action": "echo", "after": True}))
        after = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert error["message"] == "Internal server error"
    assert set(error) == {"message", "connectionId", "requestId"}
    assert after == {"action": "echo", "after": True}


async def test_braced_expression_with_several_variables(stack_factory: StackFactory) -> None:
    api = make_api(
        expression="${request.body.version}-${request.body.kind}",
        extra_routes={"v2-beta": Route("v2-beta", "echo", has_route_response=True)},
    )
    stack = await stack_factory(api=api)
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"version": "v2", "kind": "beta"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["kind"] == "beta"
    assert stack.invoker.events_for("echo")[0]["requestContext"]["routeKey"] == "v2-beta"


async def test_binary_frame_closes_1003(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        await ws.send(b"\x00\x01")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1003
    [event] = await stack.invoker.wait_for("disconnect")
    assert event["requestContext"]["disconnectStatusCode"] == 1003


async def test_frame_over_32k_closes_1009(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url, max_size=None) as ws:
        await ws.send("x" * (32 * 1024 + 1))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1009
    assert stack.invoker.events_for("default") == []


async def test_message_over_128k_in_small_frames_closes_1009(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        fragments = ["y" * (16 * 1024)] * 9  # 144 KB in 16 KB frames: every frame is legal
        with pytest.raises(ConnectionClosed):
            await ws.send(fragments)
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1009
    assert stack.invoker.events_for("default") == []


async def test_message_of_100k_in_small_frames_is_accepted(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url, max_size=None) as ws:
        await ws.send(["z" * (20 * 1024)] * 5)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert len(reply["body"]) == 100 * 1024


async def test_messages_of_one_connection_run_in_order(stack_factory: StackFactory) -> None:
    seen: list[int] = []

    async def record(event: dict[str, Any]) -> None:
        number = json.loads(event["body"])["n"]
        # Later messages would overtake earlier ones if they ran concurrently
        await asyncio.sleep(0.02 if number % 2 == 0 else 0)
        seen.append(number)

    stack = await stack_factory(handlers={"default": record})
    async with connect(stack.ws_url) as ws:
        for number in range(12):
            await ws.send(json.dumps({"n": number}))
        await stack.invoker.wait_for("default", 12)
    assert seen == list(range(12))


async def test_slow_handler_does_not_block_other_connections(stack_factory: StackFactory) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_or_fast(event: dict[str, Any]) -> Any:
        if json.loads(event["body"]).get("slow"):
            entered.set()
            await release.wait()
        return {"done": json.loads(event["body"])}

    stack = await stack_factory(handlers={"default": slow_or_fast})
    async with connect(stack.ws_url) as slow, connect(stack.ws_url) as fast:
        await slow.send(json.dumps({"slow": True}))
        await asyncio.wait_for(entered.wait(), 5)
        await fast.send(json.dumps({"slow": False}))
        fast_reply = json.loads(await asyncio.wait_for(fast.recv(), 5))
        assert fast_reply == {"done": {"slow": False}}
        release.set()
        slow_reply = json.loads(await asyncio.wait_for(slow.recv(), 5))
    assert slow_reply == {"done": {"slow": True}}


async def test_on_event_hook_sees_the_lifecycle(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"action": "echo"}))
        await asyncio.wait_for(ws.recv(), 5)
    await stack.invoker.wait_for("disconnect")
    kinds = [kind for kind, _ in stack.events]
    assert kinds[:2] == ["connect", "message"]
    assert "disconnect" in kinds
