"""A real gateway and HTTP app on free ports, with handlers that are plain Python callables."""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tidings.local.gateway import Gateway
from tidings.local.http import build_http_app
from tidings.local.ids import new_id
from tidings.local.model import Authorizer, HttpRoute, Invocation, Route, WebSocketApi

HandlerFn = Callable[[dict[str, Any]], Any]


@dataclass
class FakeInvoker:
    """An in-memory FunctionInvoker: function id → callable(event), sync or async."""

    handlers: dict[str, HandlerFn] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    finished: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def invoke(
        self, function_id: str, event: dict[str, Any], *, source: str = "", caller: Any = None
    ) -> Invocation:
        self.calls.append((function_id, event))
        request_id = new_id()
        try:
            result = self.handlers[function_id](event)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            await self._notify()
            return Invocation(
                request_id,
                function_id,
                ok=False,
                error_type=type(exc).__name__,
                error_message=str(exc),
                traceback=traceback.format_exc(),
            )
        await self._notify()
        return Invocation(request_id, function_id, ok=True, result=result)

    async def _notify(self) -> None:
        async with self.finished:
            self.finished.notify_all()

    def events_for(self, function_id: str) -> list[dict[str, Any]]:
        return [event for called, event in self.calls if called == function_id]

    async def wait_for(self, function_id: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait (bounded) until `function_id` has finished `count` invocations."""
        async with asyncio.timeout(5), self.finished:
            await self.finished.wait_for(lambda: len(self.events_for(function_id)) >= count)
        return self.events_for(function_id)


def make_api(
    *,
    expression: str = "$request.body.action",
    authorizer: Authorizer | None = None,
    connect_function: str | None = "connect",
    default: bool = True,
    extra_routes: dict[str, Route] | None = None,
) -> WebSocketApi:
    routes: dict[str, Route] = {
        "$connect": Route(
            "$connect",
            connect_function,
            authorization_type="CUSTOM" if authorizer else "NONE",
            authorizer=authorizer,
        ),
        "$disconnect": Route("$disconnect", "disconnect"),
        "echo": Route("echo", "echo", has_route_response=True),
        "silent": Route("silent", "echo"),
        "fail": Route("fail", "fail", has_route_response=True),
    }
    if default:
        routes["$default"] = Route("$default", "default", has_route_response=True)
    routes.update(extra_routes or {})
    return WebSocketApi("WebSocketApi", "abcdef1234", "tidings", "dev", expression, routes)


def default_handlers() -> dict[str, HandlerFn]:
    def fail(event: dict[str, Any]) -> Any:
        raise RuntimeError("handler exploded")

    return {
        "connect": lambda event: {"statusCode": 200},
        "disconnect": lambda event: {"statusCode": 200},
        "echo": lambda event: {"statusCode": 200, "body": event["body"]},
        "default": lambda event: {"routed": "$default", "body": event["body"]},
        "fail": fail,
    }


@dataclass
class Stack:
    gateway: Gateway
    invoker: FakeInvoker
    http_port: int
    events: list[tuple[str, dict[str, Any]]]

    @property
    def ws_url(self) -> str:
        return self.gateway.url

    @property
    def callback_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/{self.gateway.stage}"


StackFactory = Callable[..., Any]


@pytest.fixture
async def stack_factory() -> AsyncIterator[StackFactory]:
    started: list[tuple[Gateway, web.AppRunner]] = []

    async def start(
        api: WebSocketApi | None = None,
        handlers: dict[str, HandlerFn] | None = None,
        http_routes: tuple[HttpRoute, ...] = (),
        static_dirs: tuple[Any, ...] = (),
        management_auth: Any = None,
        **gateway_options: Any,
    ) -> Stack:
        invoker = FakeInvoker({**default_handlers(), **(handlers or {})})
        events: list[tuple[str, dict[str, Any]]] = []
        gateway = Gateway(
            api or make_api(),
            invoker,
            host="127.0.0.1",
            port=0,
            on_event=lambda kind, details: events.append((kind, details)),
            **gateway_options,
        )
        await gateway.start()
        app = build_http_app(
            gateway,
            static_dirs=static_dirs,
            http_routes=http_routes,
            invoker=invoker,
            management_auth=management_auth,
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        started.append((gateway, runner))
        port = runner.addresses[0][1]
        return Stack(gateway, invoker, port, events)

    yield start
    for gateway, runner in started:
        await runner.cleanup()
        await gateway.stop()
