"""The console's HTTP API against a stand-in stack: listing, replay, disconnect, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tidings.local import console
from tidings.local.aws_guard import Denial
from tidings.local.model import Invocation, LocalApp
from tidings.local.stack import DenialLog

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
    present = True

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


class FakeHost:
    """The parts of `StackHost` the console uses, around the fake runner and gateway."""

    def __init__(self, views: Any = ()) -> None:
        self.runner = FakeRunner()
        self.gateway = FakeGateway()
        self.app = LocalApp(template_path=__file__, region="us-east-1", parameters={})  # type: ignore[arg-type]
        self.routes: list[tuple[str, list[web.RouteDef]]] = []
        self.links: list[tuple[str, str]] = []
        self.invocation_listeners: list[Any] = []
        self.gateway_listeners: list[Any] = []
        self.stop_hooks: list[Any] = []
        self.denials = DenialLog()  # the stack's; the AWS guard reports here
        self.runner.on_invocation = self._on_invocation  # as the stack wires its runner

    def _on_invocation(self, *args: Any) -> None:
        for listener in self.invocation_listeners:
            listener(*args)

    def on_invocation(self, listener: Any) -> None:
        self.invocation_listeners.append(listener)

    def on_gateway_event(self, listener: Any) -> None:
        self.gateway_listeners.append(listener)

    def on_denied(self, listener: Any) -> None:
        self.denials.listeners.append(listener)

    def add_routes(self, prefix: str, routes: Any, *, purpose: str) -> None:
        self.routes.append((prefix, list(routes)))

    def advertise(self, label: str, path: str) -> None:
        self.links.append((label, path))

    def on_stop(self, hook: Any) -> None:
        self.stop_hooks.append(hook)

    async def invoke(self, function_id: str, event: dict[str, Any], *, source: str) -> Invocation:
        return await self.runner.invoke(function_id, event, source=source)

    def register(self, app: web.Application) -> None:
        for prefix, routes in self.routes:
            for route in routes:
                web.RouteDef(route.method, prefix + route.path, route.handler, route.kwargs).register(
                    app.router
                )


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], FakeHost]]:
    app = web.Application()
    host = FakeHost()
    console.Console().install(host)  # type: ignore[arg-type]
    host.register(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, host


async def record_one(stack: FakeHost) -> None:
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
    assert (await test_client.get("/console/")).status == 200


async def test_the_console_advertises_itself_and_closes_its_streams_at_stop(client: Any) -> None:
    _, host = client
    assert host.links == [("Console", "/console")]
    assert [prefix for prefix, _ in host.routes] == ["/console", API]
    [close_streams] = host.stop_hooks
    await close_streams()


async def test_features_name_no_app_labels_or_panels_without_views(client: Any) -> None:
    test_client, _ = client
    features = await (await test_client.get(f"{API}/features")).json()
    assert features == {"labels": [], "panels": [], "websocket": True}
    listed = await (await test_client.get(f"{API}/connections")).json()
    assert "topics" not in listed["connections"][0]  # an app's column, from its view only


ADD = "add it to the function's Policies"


async def test_an_invocation_record_carries_the_calls_iam_denied_during_it(client: Any) -> None:
    test_client, stack = client
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/JobsTable"
    stack.denials(  # as the AWS endpoint's guard reports a refused call while the function runs
        Denial(
            "SubscribeFunction",
            "arn:aws:sts::123456789012:assumed-role/r/s",
            "dynamodb:BatchGetItem",
            table,
            "m",
        )
    )
    stack.denials(
        Denial("NotifyFunction", "arn:aws:sts::123456789012:assumed-role/n/s", "sqs:SendMessage", "q", "m")
    )
    await record_one(stack)
    await record_one(stack)
    listed = (await (await test_client.get(f"{API}/invocations")).json())["invocations"]
    assert [item["denied"] for item in listed] == [
        [],  # the next invocation of the same function starts clean
        ["SubscribeFunction: dynamodb:BatchGetItem on table/JobsTable denied — " + ADD],
    ]
    detail = await (await test_client.get(f"{API}/invocations/1")).json()
    assert detail["denied"] == listed[1]["denied"]
