"""The local API Gateway WebSocket endpoint: a thin `websockets` shell around the pure modules.

The upgrade is held in `process_request` while the authorizer and `$connect` run (C1); each
connection then gets one task reading its messages in order, one task writing its bounded
outbound queue, and one watchdog for the idle and lifetime limits. Connections never wait
on each other, and posts are O(1) dictionary look-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from tidings.local import limits
from tidings.local.connections import ConnectionRecord, ConnectionRegistry
from tidings.local.events import (
    ConnectionFacts,
    RequestFacts,
    WsApiContext,
    build_authorizer_event,
    build_connect_event,
    build_disconnect_event,
    build_message_event,
    connect_outcome,
    evaluate_policy,
    gateway_error,
    missing_identity_source,
    route_response_body,
)
from tidings.local.hosts import HostPolicy, HostRequest
from tidings.local.ids import new_id, trace_id
from tidings.local.integration_calls import NonProxyRunner
from tidings.local.invoke_permissions import authorizer_caller, websocket_route_caller
from tidings.local.model import Caller, FunctionInvoker, Route, WebSocketApi
from tidings.local.request_models import VALIDATION_ERROR, validate_request
from tidings.local.routing import CONNECT, DISCONNECT, parse_selection_expression, select_route
from tidings.local.service_integrations import ServiceBackend

log = logging.getLogger(__name__)

OnEvent = Callable[[str, dict[str, Any]], None]
# PostToConnection: (connection id, data) -> status
PostHandler = Callable[[str, bytes], int]
# Sits in front of PostToConnection: answers itself (e.g. 429) or calls the next handler
PostWrapper = Callable[[str, bytes, PostHandler], int]
Clock = Callable[[], float]

# Response headers a $connect handler may not override: they carry the handshake itself
_HANDSHAKE_HEADERS = frozenset({"upgrade", "connection", "sec-websocket-accept", "content-length"})


class HandshakeRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Live:
    ws: ServerConnection
    record: ConnectionRecord
    outbound: asyncio.Queue[str | bytes]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Set when the gateway closes the socket itself (limits, DELETE, binary frame)
    server_close: tuple[int, str] | None = None


class Gateway:
    """One WebSocket API served on `host:port` at path `/{stage}`."""

    present = True  # (addons.Connections: a stack without a WebSocket API has NoWebSocketApi)

    def __init__(
        self,
        api: WebSocketApi,
        invoker: FunctionInvoker,
        *,
        host: str = "127.0.0.1",
        port: int = 3001,
        idle_timeout_s: float = limits.IDLE_TIMEOUT_S,
        max_lifetime_s: float = limits.MAX_LIFETIME_S,
        drop_disconnect: bool = False,
        clock: Clock = time.time,
        domain_name: str | None = None,
        outbound_queue_limit: int = limits.OUTBOUND_QUEUE_LIMIT,
        on_event: OnEvent | None = None,
        stop_timeout_s: float = 30.0,
        services: ServiceBackend | None = None,
        aws_endpoint: str = "",
        hosts: HostPolicy | None = None,
    ) -> None:
        self.api = api
        self.invoker = invoker
        self.host = host
        self._requested_port = port
        self.timeouts = limits.ConnectionTimeouts(idle_timeout_s, max_lifetime_s)
        self.drop_disconnect = drop_disconnect
        self.clock = clock
        self.context = WsApiContext.of(api, domain_name)
        self.outbound_queue_limit = outbound_queue_limit
        self.on_event = on_event
        self.stop_timeout_s = stop_timeout_s
        # IntegrationType AWS routes: request/response templates, Lambda or AWS service calls
        self.non_proxy = NonProxyRunner(invoker, services, aws_endpoint, self._emit)
        self.hosts = hosts  # None: every Host passes (tests that build a bare gateway)
        # Fails here, with the API named, rather than on the first message
        try:
            self.expression = parse_selection_expression(api.route_selection_expression)
        except ValueError as exc:
            raise ValueError(f"WebSocket API {api.logical_id}: {exc}") from exc
        self.registry = ConnectionRegistry()
        self._live: dict[str, _Live] = {}
        self._handshakes: dict[ServerConnection, ConnectionRecord] = {}
        self._response_headers: dict[ServerConnection, list[tuple[str, str]]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self._post: PostHandler = self._deliver

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def stage(self) -> str:
        return self.api.stage

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/{self.stage}"

    async def start(self) -> None:
        self._server = await serve(
            self._serve_connection,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            process_response=self._process_response,
            max_size=(limits.MAX_MESSAGE_BYTES, limits.MAX_FRAME_BYTES),
            # API Gateway sends no pings of its own; its idle timeout ends dead connections
            ping_interval=None,
            # authorizer + $connect may take up to the 29 s integration timeout
            open_timeout=35,
            server_header=None,
        )

    async def stop(self) -> None:
        """Close every connection (each runs `$disconnect`) and stop listening."""
        if self._server is None:
            return
        self._server.close(close_connections=True)
        try:
            # Each handler runs $disconnect; a handler stuck in a function must not hang shutdown
            await asyncio.wait_for(self._server.wait_closed(), self.stop_timeout_s)
        except TimeoutError:
            log.warning("connections still busy after %.0f s; stopping anyway", self.stop_timeout_s)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._server = None

    # --- management operations (used by http.py) ------------------------------------------------

    def wrap_post(self, wrapper: PostWrapper) -> None:
        """Put `wrapper` in front of PostToConnection (fault injection: throttling, counting);
        the last one added runs first."""
        inner = self._post

        def post(connection_id: str, data: bytes) -> int:
            return wrapper(connection_id, data, inner)

        self._post = post

    def post(self, connection_id: str, data: bytes) -> int:
        """PostToConnection: 200, 410 Gone, 413 too large or 429 when the client's queue is full."""
        return self._post(connection_id, data)

    def _deliver(self, connection_id: str, data: bytes) -> int:
        if limits.post_too_large(len(data)):
            return 413
        live = self._live.get(connection_id)
        if live is None or live.ws.state is not State.OPEN or live.server_close is not None:
            return 410
        try:
            text: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data
        try:
            live.outbound.put_nowait(text)
        except asyncio.QueueFull:
            return 429
        # A post is activity when accepted (the idle timer), counted as sent once written
        self.registry.touch(connection_id, self.clock())
        if self.on_event is not None:
            self._emit("post", {"connectionId": connection_id, "bytes": len(data)})
        return 200

    def info(self, connection_id: str) -> dict[str, Any] | None:
        """GetConnection's body, or None when the connection is gone."""
        if connection_id not in self._live:
            return None
        return self.registry.info(connection_id)

    def delete(self, connection_id: str) -> int:
        """DeleteConnection: 204 and the socket closes with 1000, or 410 when already gone."""
        live = self._live.get(connection_id)
        if live is None or live.server_close is not None:
            return 410
        self._close_from_server(live, limits.CLOSE_NORMAL, "")
        return 204

    def connections(self) -> list[dict[str, Any]]:
        return [live.record.summary() for live in self._live.values()]

    # --- handshake ------------------------------------------------------------------------------

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if self.hosts is not None:
            # DNS rebinding: a foreign Host is refused before any authorizer or $connect runs
            local = ws.local_address
            verdict = self.hosts.check(
                HostRequest(
                    method="GET",
                    path=parts.path,
                    host=request.headers.get("Host"),
                    origin=request.headers.get("Origin"),
                    peer=str(ws.remote_address[0]) if ws.remote_address else None,
                    local=str(local[0]) if local else None,
                    headers=request.headers,
                ),
                scheme="ws",
            )
            if not verdict.allowed:
                return _reject(ws, verdict.status, "Forbidden")
        if parts.path.rstrip("/") != f"/{self.stage}":
            return _reject(ws, 403, "Forbidden")
        query = parse_qsl(parts.query, keep_blank_values=True)
        now = self.clock()
        remote = ws.remote_address
        source_ip = str(remote[0]) if remote else "127.0.0.1"
        headers = self._forwarded(list(request.headers.raw_items()), source_ip, now)
        record = self.registry.begin(new_id(), now, source_ip, request.headers.get("User-Agent", ""))
        try:
            response_headers = await self._run_connect(record, headers, query)
        except HandshakeRejected as rejected:
            self.registry.remove(record.connection_id)
            self._emit("reject", {"connectionId": record.connection_id, "status": rejected.status})
            return _reject(ws, rejected.status, rejected.message)
        except Exception:
            self.registry.remove(record.connection_id)
            log.exception("$connect handling failed for %s", record.connection_id)
            return _reject(ws, 500, "Internal server error")
        self._handshakes[ws] = record
        self._response_headers[ws] = response_headers
        self._spawn(self._reap_unopened(ws))
        return None

    async def _run_connect(
        self, record: ConnectionRecord, headers: list[tuple[str, str]], query: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        route = self.api.routes.get(CONNECT)
        if route is None:
            return []
        if route.authorizer is not None and route.authorization_type == "CUSTOM":
            await self._authorize(route, record, headers, query)
        if route.non_proxy is not None:
            event = build_connect_event(self.context, self._facts(record), self._request(), headers, query)
            params = {"header": dict(headers), "querystring": dict(query), "path": {}}
            mapped = await self.non_proxy.run(
                route, route.non_proxy, event, "", params, caller=self._route_caller(route.route_key)
            )
            if mapped.failed:
                raise HandshakeRejected(mapped.status, _reason(mapped.status))
            return []
        if route.function_id is None:
            return []  # R5: no integration, the connection is accepted
        event = build_connect_event(self.context, self._facts(record), self._request(), headers, query)
        invocation = await self.invoker.invoke(
            route.function_id, event, source=CONNECT, caller=self._route_caller(CONNECT)
        )
        if invocation.refused:  # no invoke permission: API Gateway fails the handshake with 500
            raise HandshakeRejected(500, "Internal server error")
        if not invocation.ok:
            raise HandshakeRejected(502, "Bad Gateway")
        outcome = connect_outcome(invocation.result)
        if not outcome.accepted:
            raise HandshakeRejected(outcome.status, _reason(outcome.status))
        return outcome.headers

    async def _authorize(
        self,
        route: Route,
        record: ConnectionRecord,
        headers: list[tuple[str, str]],
        query: list[tuple[str, str]],
    ) -> None:
        authorizer = route.authorizer
        assert authorizer is not None
        if missing_identity_source(authorizer.identity_sources, headers, query) is not None:
            raise HandshakeRejected(401, "Unauthorized")
        event = build_authorizer_event(self.context, self._facts(record), self._request(), headers, query)
        started = time.monotonic()
        invocation = await self.invoker.invoke(
            authorizer.function_id,
            event,
            source=f"{CONNECT} authorizer",
            caller=authorizer_caller(
                self.api.region,
                self.api.account_id,
                self.api.api_id,
                authorizer.authorizer_id or authorizer.logical_id,
            ),
        )
        latency_ms = int((time.monotonic() - started) * 1000)
        if invocation.refused:
            raise HandshakeRejected(500, "Internal server error")
        if not invocation.ok:
            if (invocation.error_message or "").strip() == "Unauthorized":
                raise HandshakeRejected(401, "Unauthorized")
            raise HandshakeRejected(500, "Internal server error")
        if len(json.dumps(invocation.result, default=str)) > limits.MAX_AUTHORIZER_RESULT_BYTES:
            log.warning("authorizer result over 8 KB for %s", record.connection_id)
            raise HandshakeRejected(500, "Internal server error")
        decision = evaluate_policy(invocation.result, self.context.connect_method_arn)
        if not decision.allowed:
            raise HandshakeRejected(403, "Forbidden")
        record.authorizer = decision.request_context_authorizer(latency_ms)

    def _process_response(self, ws: ServerConnection, request: Request, response: Response) -> None:
        extra = self._response_headers.pop(ws, [])
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            return
        # C4: the client gets exactly the subprotocol $connect returned, nothing chosen here
        allowed = [(name, value) for name, value in extra if name.lower() not in _HANDSHAKE_HEADERS]
        for name in {name for name, _ in allowed}:
            if name in response.headers:
                del response.headers[name]
        for name, value in allowed:
            response.headers[name] = value

    async def _reap_unopened(self, ws: ServerConnection) -> None:
        """$connect accepted but the upgrade never completed: forget the id, run $disconnect."""
        await ws.wait_closed()
        record = self._handshakes.pop(ws, None)
        self._response_headers.pop(ws, None)
        if record is not None:
            self.registry.remove(record.connection_id)
            await self._run_disconnect(record, limits.CLOSE_ABNORMAL, "")

    # --- open connection ------------------------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        record = self._handshakes.pop(ws, None)
        if record is None:
            return
        self.registry.open(record.connection_id)
        live = _Live(ws, record, asyncio.Queue(maxsize=self.outbound_queue_limit))
        self._live[record.connection_id] = live
        live.tasks = [
            asyncio.create_task(self._send_outbound(live)),
            asyncio.create_task(self._watch_limits(live)),
        ]
        self._emit("connect", {"connectionId": record.connection_id, "principalId": record.principal_id})
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    # R8: API Gateway does not accept binary frames from clients
                    await self._close_and_wait(
                        live, limits.CLOSE_UNSUPPORTED_DATA, "Binary frames are not supported"
                    )
                    break
                self.registry.touch(record.connection_id, self.clock(), inbound=True)
                await self._handle_message(live, message)
        except ConnectionClosed:
            pass
        finally:
            await self._finish(live)

    async def _handle_message(self, live: _Live, body: str) -> None:
        record = live.record
        request_id = new_id()
        try:
            route_key = select_route(self.expression, self.api.routes, body)
            if route_key is None:
                await live.outbound.put(gateway_error("Forbidden", record.connection_id, request_id))
                self._emit("message", {"connectionId": record.connection_id, "routeKey": None, "ok": False})
                return
            route = self.api.routes[route_key]
            request = RequestFacts(request_id, self.clock())
            if route.request_models is not None:
                verdict = validate_request(route.request_models, body)
                if not verdict.valid:
                    # API Gateway calls no backend; the reason goes to the log (CloudWatch on AWS)
                    log.warning(
                        "route %s: message refused by request validation%s: %s",
                        route_key,
                        f" (model {verdict.model})" if verdict.model else "",
                        verdict.reason,
                    )
                    await live.outbound.put(gateway_error(VALIDATION_ERROR, record.connection_id, request_id))
                    self._emit(
                        "message", {"connectionId": record.connection_id, "routeKey": route_key, "ok": False}
                    )
                    return
            if route.non_proxy is not None:
                event = build_message_event(
                    self.context, self._facts(record), request, route_key, new_id(), body
                )
                outcome = await self.non_proxy.run(
                    route, route.non_proxy, event, body, caller=self._route_caller(route.route_key)
                )
                self._emit(
                    "message",
                    {"connectionId": record.connection_id, "routeKey": route_key, "ok": not outcome.failed},
                )
                error = outcome.gateway_error
                if error is None and outcome.failed and not route.has_route_response:
                    error = "Internal server error"  # R7; with a route response the mapped error goes
                if error is not None:
                    await live.outbound.put(gateway_error(error, record.connection_id, request_id))
                elif route.has_route_response and outcome.reply is not None:
                    await live.outbound.put(outcome.reply)
                return
            if route.function_id is None:
                return
            event = build_message_event(self.context, self._facts(record), request, route_key, new_id(), body)
            invocation = await self.invoker.invoke(
                route.function_id, event, source=route_key, caller=self._route_caller(route_key)
            )
            self._emit(
                "message",
                {"connectionId": record.connection_id, "routeKey": route_key, "ok": invocation.ok},
            )
            if not invocation.ok:
                error = gateway_error("Internal server error", record.connection_id, request_id)
                await live.outbound.put(error)
                return
            if route.has_route_response:
                reply = route_response_body(invocation.result)
                if reply is not None:
                    await live.outbound.put(reply)
        except Exception:
            log.exception("message handling failed on %s", record.connection_id)
            await live.outbound.put(gateway_error("Internal server error", record.connection_id, request_id))

    async def _send_outbound(self, live: _Live) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                data = await live.outbound.get()
                await live.ws.send(data)
                # Replies and errors the gateway sends count as activity too
                self.registry.touch(live.record.connection_id, self.clock(), inbound=False)

    async def _watch_limits(self, live: _Live) -> None:
        record = live.record
        while True:
            deadline, reason = self.timeouts.deadline(record.connected_at_s, record.last_active_s)
            remaining = deadline - self.clock()
            if remaining <= 0:
                self._emit("close", {"connectionId": record.connection_id, "reason": reason.value})
                await self._close_and_wait(live, limits.CLOSE_GOING_AWAY, "Going away")
                return
            await asyncio.sleep(remaining)

    def _close_from_server(self, live: _Live, code: int, reason: str) -> None:
        if live.server_close is None:
            live.server_close = (code, reason)
        self._spawn(live.ws.close(code, reason))

    async def _close_and_wait(self, live: _Live, code: int, reason: str) -> None:
        if live.server_close is None:
            live.server_close = (code, reason)
        await live.ws.close(code, reason)

    async def _finish(self, live: _Live) -> None:
        record = live.record
        self._live.pop(record.connection_id, None)
        self.registry.remove(record.connection_id)
        current = asyncio.current_task()
        for task in live.tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in live.tasks if t is not current), return_exceptions=True)
        code, reason = self._close_status(live)
        self._emit("disconnect", {"connectionId": record.connection_id, "code": code})
        await self._run_disconnect(record, code, reason)

    def _close_status(self, live: _Live) -> tuple[int, str]:
        protocol = live.ws.protocol
        if live.server_close is not None:
            return live.server_close[0], limits.disconnect_reason(*live.server_close)
        sent, received = protocol.close_sent, protocol.close_rcvd
        if received is not None and (protocol.close_rcvd_then_sent or sent is None):
            return received.code, limits.disconnect_reason(received.code, received.reason)
        if sent is not None:  # the library closed it (1009 too big, protocol error)
            return sent.code, limits.disconnect_reason(sent.code, sent.reason)
        return limits.CLOSE_ABNORMAL, limits.disconnect_reason(limits.CLOSE_ABNORMAL, "")

    async def _run_disconnect(self, record: ConnectionRecord, code: int, reason: str) -> None:
        route = self.api.routes.get(DISCONNECT)
        if route is None or (route.function_id is None and route.non_proxy is None):
            return
        if self.drop_disconnect:
            # Deliberately lost, as AWS may: later posts to this id must take the 410 path
            self._emit("disconnect-dropped", {"connectionId": record.connection_id})
            return
        event = build_disconnect_event(self.context, self._facts(record), self._request(), code, reason)
        try:
            if route.non_proxy is not None:
                await self.non_proxy.run(
                    route, route.non_proxy, event, "", caller=self._route_caller(route.route_key)
                )
                return
            assert route.function_id is not None
            await self.invoker.invoke(
                route.function_id, event, source=DISCONNECT, caller=self._route_caller(DISCONNECT)
            )
        except Exception:
            log.exception("$disconnect failed for %s", record.connection_id)

    # --- helpers --------------------------------------------------------------------------------

    def _route_caller(self, route_key: str) -> Caller:
        """API Gateway as it invokes a route's integration (checked against the function's policy)."""
        api = self.api
        return websocket_route_caller(api.region, api.account_id, api.api_id, api.stage, route_key)

    def _forwarded(self, headers: list[tuple[str, str]], source_ip: str, now: float) -> list[tuple[str, str]]:
        """Add the headers API Gateway's edge adds, unless a proxy in front already did."""
        present = {name.lower() for name, _ in headers}
        added = [
            ("X-Amzn-Trace-Id", trace_id(now)),
            ("X-Forwarded-For", source_ip),
            ("X-Forwarded-Port", str(self.port)),
            ("X-Forwarded-Proto", "http"),
        ]
        return headers + [(name, value) for name, value in added if name.lower() not in present]

    def _facts(self, record: ConnectionRecord) -> ConnectionFacts:
        return ConnectionFacts(
            record.connection_id,
            record.connected_at_ms,
            record.source_ip,
            record.user_agent,
            record.authorizer,
        )

    def _request(self) -> RequestFacts:
        return RequestFacts(new_id(), self.clock())

    def _emit(self, kind: str, details: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(kind, details)
        except Exception:
            log.exception("on_event hook failed for %s", kind)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _reject(ws: ServerConnection, status: int, message: str) -> Response:
    response = ws.respond(status, json.dumps({"message": message}))
    headers = Headers(response.headers)
    del headers["Content-Type"]
    headers["Content-Type"] = "application/json"
    response.headers = headers
    return response
