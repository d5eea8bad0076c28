"""The console's HTTP API against a stand-in stack: listing, replay, disconnect, refusals."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tidings.local import console
from tidings.local.model import Invocation, LocalApp

API = console.API_PREFIX


class FakeRunner:
    """Runs 'functions' that echo their event, announcing each invocation like FunctionRunner."""

    def __init__(self) -> None:
        self.on_invocation: Any = None
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    async def invoke(
        self, function_id: str, event: dict[str, Any], *, source: str = "", caller: Any = None
    ) -> Invocation:
        self.calls.append((function_id, event, source))
        invocation = Invocation(f"req-{len(self.calls)}", function_id, ok=True, result={"echo": event})
        if self.on_invocation is not None:
            self.on_invocation(invocation, function_id, source, event)
        return invocation


class FakeGateway:
    def __init__(self) -> None:
        self.live = {
            "c1": {"connectionId": "c1", "principalId": "alice", "connectedAt": "x", "lastActiveAt": "y"}
        }
        self.deleted: list[str] = []

    def connections(self) -> list[dict[str, Any]]:
        return list(self.live.values())

    def delete(self, connection_id: str) -> int:
        if self.live.pop(connection_id, None) is None:
            return 410
        self.deleted.append(connection_id)
        return 204


@dataclass
class FakeStack:
    runner: FakeRunner = field(default_factory=FakeRunner)
    gateway: FakeGateway = field(default_factory=FakeGateway)
    app: LocalApp = field(
        default_factory=lambda: LocalApp(template_path=__file__, region="us-east-1", parameters={})
    )  # type: ignore[arg-type]
    urls: Any = None
    out: io.StringIO = field(default_factory=io.StringIO)
    invocation_listeners: list[Any] = field(default_factory=list)
    gateway_listeners: list[Any] = field(default_factory=list)

    def _on_invocation(self, *args: Any) -> None:
        for listener in self.invocation_listeners:
            listener(*args)


@web.middleware
async def stack_local_routes(request: web.Request, handler: Any) -> web.StreamResponse:
    """Like LocalStack._local_routes: it answers its own /_tidings/ paths and passes the rest on."""
    if request.path == "/_tidings/config":
        return web.json_response({})
    response: web.StreamResponse = await handler(request)
    return response


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], FakeStack]]:
    app = web.Application(middlewares=[stack_local_routes])
    stack = FakeStack()
    stack.runner.on_invocation = stack._on_invocation  # as LocalStack wires its runner
    console.install(app, stack)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, stack


async def record_one(stack: FakeStack) -> None:
    await stack.runner.invoke("SubscribeFunction", {"body": '{"action": "ping"}'}, source="ping")


async def test_invocations_are_listed_through_the_stack_listeners(client: Any) -> None:
    test_client, stack = client
    await record_one(stack)
    response = await test_client.get(f"{API}/invocations")
    assert response.status == 200
    body = await response.json()
    [summary] = body["invocations"]
    assert summary["function"] == "SubscribeFunction" and summary["trigger"] == "ping"
    detail = await (await test_client.get(f"{API}/invocations/{summary['seq']}")).json()
    assert detail["event"] == {"body": '{"action": "ping"}'}
    assert (await test_client.get(f"{API}/invocations/999")).status == 404


async def test_replay_with_the_same_and_with_an_edited_event(client: Any) -> None:
    test_client, stack = client
    await record_one(stack)
    same = await test_client.post(f"{API}/invocations/1/replay")
    assert same.status == 201
    assert (await same.json())["replayOf"] == 1
    edited = await test_client.post(f"{API}/invocations/1/replay", json={"event": {"body": "edited"}})
    assert edited.status == 201
    assert stack.runner.calls[-1] == ("SubscribeFunction", {"body": "edited"}, "replay #1")
    listed = (await (await test_client.get(f"{API}/invocations")).json())["invocations"]
    assert [item["seq"] for item in listed] == [3, 2, 1]


async def test_replay_refuses_bad_input_and_other_sites(client: Any) -> None:
    test_client, stack = client
    await record_one(stack)
    url = f"{API}/invocations/1/replay"
    bad_json = await test_client.post(url, data="{", headers={"Content-Type": "application/json"})
    assert bad_json.status == 400 and (await bad_json.json())["error"]["code"] == "bad_json"
    not_object = await test_client.post(url, json={"event": [1]})
    assert not_object.status == 400
    form = await test_client.post(
        url, data="x=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status == 415
    other_site = await test_client.post(url, json={}, headers={"Origin": "https://evil.example"})
    assert other_site.status == 403
    assert len(stack.runner.calls) == 1  # none of them ran anything


async def test_disconnect_goes_through_the_gateway_delete(client: Any) -> None:
    test_client, stack = client
    listed = await (await test_client.get(f"{API}/connections")).json()
    assert listed["connections"][0]["connectionId"] == "c1"
    assert listed["connections"][0]["user"] == "alice"
    assert (await test_client.delete(f"{API}/connections/c1")).status == 204
    assert stack.gateway.deleted == ["c1"]
    assert (await test_client.delete(f"{API}/connections/c1")).status == 410
    refused = await test_client.delete(f"{API}/connections/c1", headers={"Origin": "http://elsewhere"})
    assert refused.status == 403


async def test_bad_filters_are_400_and_the_page_is_served(client: Any) -> None:
    test_client, _ = client
    assert (await test_client.get(f"{API}/invocations?outcome=maybe")).status == 400
    assert (await test_client.get(f"{API}/invocations?limit=0")).status == 400
    page = await test_client.get("/console")
    assert page.status == 200 and "Tidings" in await page.text()
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert (await test_client.get("/console/console.js")).status == 200
    assert (await test_client.get("/console/secret.txt")).status == 404
    assert (await test_client.get("/_tidings/other")).status == 404  # nobody's path
    assert (await test_client.get("/_tidings/config")).status == 200  # the stack's own paths stay its own
