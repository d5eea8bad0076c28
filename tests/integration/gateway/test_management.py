"""The @connections management API, proven with a real boto3 client; limits and shutdown."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .conftest import Stack, StackFactory


def management_client(stack: Stack, stage: str | None = None) -> Any:
    endpoint = stack.callback_url if stage is None else f"http://127.0.0.1:{stack.http_port}/{stage}"
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}),
    )


async def connected(stack: Stack, ws: ClientConnection) -> str:
    """The id of the only connection (taken from the $connect event)."""
    del ws
    return str(stack.invoker.events_for("connect")[-1]["requestContext"]["connectionId"])


async def test_boto3_post_get_delete_then_gone(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    client = management_client(stack)
    async with connect(stack.ws_url, user_agent_header="probe/2") as ws:
        connection_id = await connected(stack, ws)
        assert connection_id.endswith("=")  # boto3 sends it percent-encoded as %3D
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b'{"hello": 1}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"hello": 1}

        info = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
        assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "probe/2"}
        assert info["LastActiveAt"] >= info["ConnectedAt"]

        await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1000
    [disconnect] = await stack.invoker.wait_for("disconnect")
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000

    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"late")
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)


async def test_unknown_id_is_gone_with_error_type_header(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.callback_url}/@connections/AAAAAAAAAAAAAAA%3D", data=b"x") as response,
    ):
        assert response.status == 410
        assert response.headers["x-amzn-ErrorType"] == "GoneException"
        assert "message" in await response.json()


async def test_bad_stage_is_forbidden(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    client = management_client(stack, stage="prod")
    async with connect(stack.ws_url) as ws:
        connection_id = await connected(stack, ws)
        with pytest.raises(ClientError) as caught:
            await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"x")
    assert caught.value.response["Error"]["Code"] == "ForbiddenException"


async def test_post_over_128k_is_413_and_connection_survives(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    client = management_client(stack)
    async with connect(stack.ws_url, max_size=None) as ws:
        connection_id = await connected(stack, ws)
        with pytest.raises(client.exceptions.PayloadTooLargeException):
            await asyncio.to_thread(
                client.post_to_connection, ConnectionId=connection_id, Data=b"x" * 131_073
            )
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"y" * 131_072)
        assert len(await asyncio.wait_for(ws.recv(), 5)) == 131_072


async def test_full_client_buffer_is_429(stack_factory: StackFactory) -> None:
    stack = await stack_factory(outbound_queue_limit=2)
    # max_queue=1: the client stops reading its socket, so TCP buffers and then our queue fill up
    async with connect(stack.ws_url, max_size=None, max_queue=1, compression=None, close_timeout=0.1) as ws:
        connection_id = await connected(stack, ws)
        statuses = []
        for _ in range(2000):
            status = stack.gateway.post(connection_id, b"z" * 131_072)
            statuses.append(status)
            if status == 429:
                break
            await asyncio.sleep(0)  # let the sender task write
        assert statuses[-1] == 429
        assert set(statuses[:-1]) == {200}
        async with aiohttp.ClientSession() as session:
            url = f"{stack.callback_url}/@connections/{connection_id}"
            async with session.post(url, data=b"more") as response:
                assert response.status == 429
                assert response.headers["x-amzn-ErrorType"] == "LimitExceededException"


async def test_post_is_activity_and_idle_timeout_closes_1001(stack_factory: StackFactory) -> None:
    stack = await stack_factory(idle_timeout_s=0.4)
    async with connect(stack.ws_url) as ws:
        connection_id = await connected(stack, ws)
        before = stack.gateway.registry.get(connection_id)
        assert before is not None
        first_active = before.last_active_s
        await asyncio.sleep(0.1)
        assert stack.gateway.post(connection_id, b"keepalive") == 200
        assert before.last_active_s > first_active
        assert await asyncio.wait_for(ws.recv(), 5) == "keepalive"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1001
    [event] = await stack.invoker.wait_for("disconnect")
    assert event["requestContext"]["disconnectStatusCode"] == 1001
    assert event["requestContext"]["disconnectReason"] == "Going away"
    assert ("close", {"connectionId": connection_id, "reason": "idle"}) in stack.events


async def test_max_lifetime_closes_even_an_active_connection(stack_factory: StackFactory) -> None:
    stack = await stack_factory(idle_timeout_s=5, max_lifetime_s=0.5)
    async with connect(stack.ws_url) as ws:
        connection_id = await connected(stack, ws)
        with pytest.raises(ConnectionClosed):
            for _ in range(100):
                await ws.send(json.dumps({"action": "echo"}))
                await asyncio.wait_for(ws.recv(), 5)
                await asyncio.sleep(0.05)
    assert ws.close_code == 1001
    assert ("close", {"connectionId": connection_id, "reason": "lifetime"}) in stack.events


async def test_dropped_disconnect_leaves_a_stale_id_that_is_gone(stack_factory: StackFactory) -> None:
    stack = await stack_factory(drop_disconnect=True)
    client = management_client(stack)
    async with connect(stack.ws_url) as ws:
        connection_id = await connected(stack, ws)
    await asyncio.sleep(0)
    assert stack.gateway.connections() == []
    assert stack.invoker.events_for("disconnect") == []
    with pytest.raises(client.exceptions.GoneException):
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"x")


async def test_stop_closes_everyone_and_runs_disconnect(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as first, connect(stack.ws_url) as second:
        assert len(stack.gateway.connections()) == 2
        await stack.gateway.stop()
        for ws in (first, second):
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1001
    assert len(stack.invoker.events_for("disconnect")) == 2
    assert stack.gateway.connections() == []


async def test_live_connection_list(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"action": "echo"}))
        await asyncio.wait_for(ws.recv(), 5)
        [row] = stack.gateway.connections()
    assert row["connectionId"] == await connected(stack, ws)
    assert (row["messagesIn"], row["messagesOut"]) == (1, 1)  # the echo reply went out
    assert row["connectedAt"].endswith("Z")
