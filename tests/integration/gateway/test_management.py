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

from tidings.local.aws_guard import Credentials, Denial, ManagementGuard, RunCredentials
from tidings.local.iam import Principal, parse_document

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


# ---------------------------------------------------------------- who may call (ManagementGuard)
def guarded(run: RunCredentials, denials: list[Denial]) -> ManagementGuard:
    return ManagementGuard(
        run, api_id="abcdef1234", region="us-east-1", account="123456789012", on_denied=denials.append
    )


def signed_client(stack: Stack, keys: Credentials) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=stack.callback_url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
        **keys.boto(),
    )


async def test_guarded_api_serves_the_admin_key_and_refuses_unsigned_and_well_known_keys(
    stack_factory: StackFactory,
) -> None:
    run = RunCredentials()
    denials: list[Denial] = []
    stack = await stack_factory(management_auth=guarded(run, denials))
    async with connect(stack.ws_url) as ws:
        connection_id = await connected(stack, ws)
        admin = signed_client(stack, run.admin)
        await asyncio.to_thread(admin.post_to_connection, ConnectionId=connection_id, Data=b'{"n": 1}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"n": 1}
        assert (await asyncio.to_thread(admin.get_connection, ConnectionId=connection_id))["Identity"]

        async with aiohttp.ClientSession() as session:
            url = f"{stack.callback_url}/@connections/{connection_id}"
            for method in ("POST", "GET", "DELETE"):
                async with session.request(method, url, data=b"x") as response:
                    assert response.status == 403
                    assert response.headers["x-amzn-ErrorType"] == "ForbiddenException"
                    assert await response.json() == {"message": "Forbidden"}
        with pytest.raises(ClientError) as caught:  # moto's well-known keys are no key of this run
            await asyncio.to_thread(
                management_client(stack).post_to_connection, ConnectionId=connection_id, Data=b"x"
            )
        assert caught.value.response["Error"]["Code"] == "ForbiddenException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(TimeoutError):  # nothing refused reached the client
            await asyncio.wait_for(ws.recv(), 0.3)
    assert denials == []


async def test_guarded_api_refuses_a_role_without_manage_connections_naming_it(
    stack_factory: StackFactory,
) -> None:
    run = RunCredentials()
    document = {
        "Statement": [{"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"}],
    }
    role = Principal(
        "arn:aws:iam::123456789012:role/echo-role", "EchoFunction", parse_document(document, "p")
    )
    keys = run.issue_role("EchoFunction", role)
    denials: list[Denial] = []
    stack = await stack_factory(management_auth=guarded(run, denials))
    async with connect(stack.ws_url) as ws:
        connection_id = await connected(stack, ws)
        with pytest.raises(ClientError) as caught:
            await asyncio.to_thread(
                signed_client(stack, keys).post_to_connection, ConnectionId=connection_id, Data=b"x"
            )
    error = caught.value.response["Error"]
    assert error["Code"] == "ForbiddenException"
    resource = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/POST/@connections/{connectionId}"
    assert "assumed-role/echo-role/EchoFunction" in error["Message"]
    assert f"execute-api:ManageConnections on resource: {resource}" in error["Message"]
    assert [denial.resource for denial in denials] == [resource]
