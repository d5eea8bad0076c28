"""The local HTTP side: the `@connections` management API, HTTP API routes and static pages.

`build_http_app` returns an aiohttp application for the stack to run. Routes are tried in
order: management API, HTTP API routes (payload format 2.0), then files from the static
directories, so a static file can never shadow `/{stage}/@connections/...`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from multidict import CIMultiDict

from tidings.local import limits
from tidings.local.events import (
    HttpRequestFacts,
    RequestFacts,
    build_http_authorizer_event,
    build_http_event,
    http_api_id,
    http_result,
    missing_identity_source,
)
from tidings.local.gateway import Gateway
from tidings.local.hosts import HostPolicy, HostRequest
from tidings.local.ids import new_id
from tidings.local.invoke_permissions import authorizer_caller, http_route_caller
from tidings.local.model import ACCOUNT_ID, DEFAULT_REGION, FunctionInvoker, HttpRoute

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Any]
# HTTP APIs accept payloads up to 10 MB; aiohttp's own default (1 MiB) would answer 413 first
HTTP_API_MAX_BODY = 10 * 1024 * 1024
_READ_CHUNK = 64 * 1024


def aws_error(status: int, error_type: str, message: str) -> web.Response:
    """An error boto3 maps to a typed exception: `x-amzn-ErrorType` plus a JSON message."""
    return web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": error_type})


def _gone(connection_id: str) -> web.Response:
    return aws_error(410, "GoneException", f"Connection {connection_id} is gone")


async def _read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` (without buffering the rest)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class ManagementAuth(Protocol):
    """Who may call `@connections` (aws_guard.ManagementGuard): None to go on, else the message of
    the 403 ForbiddenException. `headers` as sent, `connection_id` decoded."""

    def check(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        stage: str,
        connection_id: str,
    ) -> str | None: ...


def _stage_in_path(request: web.Request) -> str | None:
    return request.match_info.get("stage")


def management_handler(
    gateway: Gateway | None,
    auth: ManagementAuth | None,
    stage_of: Callable[[web.Request], str | None] = _stage_in_path,
) -> Handler:
    """`@connections/{connection_id}`; `stage_of`: the stage a request names (None: none), by
    default the path's first segment (a custom domain names it by its base path instead)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        stage = stage_of(request)
        connection_id = request.match_info["connection_id"]
        data = b""
        if request.method == "POST" or auth is not None:
            # the signature covers the body: read it all (up to what the HTTP side takes) first
            read = await _read_at_most(request, limits.MAX_POST_BYTES if auth is None else HTTP_API_MAX_BODY)
            if read is None:
                return aws_error(413, "PayloadTooLargeException", "Message too long")
            data = read
        if auth is not None:
            raw_path, _, raw_query = request.raw_path.partition("?")
            refused = auth.check(
                request.method,
                raw_path,
                raw_query,
                {name: value for name, value in request.headers.items()},
                data,
                stage=stage or "",
                connection_id=connection_id,
            )
            if refused is not None:
                return aws_error(403, "ForbiddenException", refused)
        if gateway is None or stage != gateway.stage:
            return aws_error(403, "ForbiddenException", "Forbidden")
        if request.method == "POST":
            if len(data) > limits.MAX_POST_BYTES:
                return aws_error(413, "PayloadTooLargeException", "Message too long")
            status = gateway.post(connection_id, data)
            if status == 200:
                return web.Response(status=200)
            if status == 413:
                return aws_error(413, "PayloadTooLargeException", "Message too long")
            if status == 429:
                return aws_error(429, "LimitExceededException", "The client's buffer is full")
            return _gone(connection_id)
        if request.method == "GET":
            info = gateway.info(connection_id)
            return _gone(connection_id) if info is None else web.json_response(info)
        if gateway.delete(connection_id) == 204:
            return web.Response(status=204)
        return _gone(connection_id)

    return handle


def _aiohttp_path(path: str) -> str:
    """`/files/{proxy+}` (API Gateway greedy variable) → `/files/{proxy:.*}`."""
    parts = []
    for segment in path.split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            segment = "{" + segment[1:-2] + ":.*}"
        parts.append(segment)
    return "/".join(parts)


def _route_handler(
    route: HttpRoute, invoker: FunctionInvoker, region: str, account_id: str, clock: Callable[[], float]
) -> Handler:
    is_default = route.path == "$default" or route.method == "$default"
    route_key = "$default" if is_default else f"{route.method.upper()} {route.path}"
    api_id = http_api_id(route.api_logical_id)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await _read_at_most(request, HTTP_API_MAX_BODY)
        if body is None:
            return web.json_response({"message": "Request Entity Too Large"}, status=413)
        headers = list(request.headers.items())
        peer = request.remote or "127.0.0.1"
        facts = HttpRequestFacts(
            method=request.method,
            raw_path=request.raw_path.split("?", 1)[0],
            raw_query=request.query_string,
            headers=headers,
            body=body,
            source_ip=peer,
            route_key=route_key,
            path_parameters={} if is_default else dict(request.match_info),
            api_id=api_id,
            domain_name=request.host,
            region=region,
            account_id=account_id,
            request=RequestFacts(new_id(), clock()),
        )
        authorizer_context: dict[str, Any] | None = None
        if route.authorizer_function_id is not None:
            denied, authorizer_context = await _authorize_http(route, invoker, facts, request)
            if denied is not None:
                return denied
        invocation = await invoker.invoke(
            route.function_id,
            build_http_event(facts, authorizer_context),
            source=route_key,
            # HTTP APIs serve their `$default` stage locally; no permission: 500, as without a handler
            caller=http_route_caller(region, account_id, api_id, "$default", route.method, route.path),
        )
        if not invocation.ok:
            return web.json_response({"message": "Internal Server Error"}, status=500)
        result = http_result(invocation.result)
        response_headers: CIMultiDict[str] = CIMultiDict(result.headers)
        return web.Response(status=result.status, headers=response_headers, body=result.body)

    return handle


async def _authorize_http(
    route: HttpRoute, invoker: FunctionInvoker, facts: HttpRequestFacts, request: web.Request
) -> tuple[web.Response | None, dict[str, Any] | None]:
    """Simple-response Lambda authorizer (payload 2.0): `{"isAuthorized": bool, "context": {...}}`."""
    assert route.authorizer_function_id is not None
    query = [(name, value) for name, value in request.query.items()]
    if missing_identity_source(route.identity_sources, facts.headers, query) is not None:
        return web.json_response({"message": "Unauthorized"}, status=401), None
    event = build_http_authorizer_event(facts, route.identity_sources)
    invocation = await invoker.invoke(
        route.authorizer_function_id,
        event,
        source=f"{facts.route_key} authorizer",
        caller=authorizer_caller(facts.region, facts.account_id, facts.api_id, route.authorizer_id),
    )
    if not invocation.ok:
        return web.json_response({"message": "Internal Server Error"}, status=500), None
    result = invocation.result
    if not isinstance(result, dict) or result.get("isAuthorized") is not True:
        return web.json_response({"message": "Forbidden"}, status=403), None
    context = result.get("context")
    return None, dict(context) if isinstance(context, dict) else {}


def host_request(request: web.Request) -> HostRequest:
    """The facts `hosts.py` decides on, from an aiohttp request."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return HostRequest(
        method=request.method,
        path=request.path,
        host=request.headers.get("Host"),
        origin=request.headers.get("Origin"),
        peer=request.remote,
        local=str(sockname[0]) if sockname else None,
        headers=request.headers,
    )


def host_check(policy: HostPolicy) -> Any:
    """Middleware: a request for a host this server does not serve gets 403 before any handler."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        verdict = policy.check(host_request(request))
        if not verdict.allowed:
            return web.json_response({"message": verdict.reason}, status=verdict.status)
        response: web.StreamResponse = await handler(request)
        return response

    return check


def _static_file(roots: Sequence[Path], relative: str) -> Path | None:
    """The file to serve for `relative` under one of `roots`, or None.

    A path the file system cannot even look up (a NUL byte, a name too long) is simply not there.
    """
    for root in roots:
        try:
            candidate = (root / relative).resolve()
            # Never serve outside the static roots (`..`, symlinks out)
            if candidate != root and root not in candidate.parents:
                continue
            if candidate.is_dir():
                candidate = candidate / "index.html"
            if candidate.is_file():
                return candidate
        except (OSError, ValueError):
            continue
    return None


def _static_handler(static_dirs: Sequence[Path], fallback: Handler | None) -> Handler:
    roots = [directory.resolve() for directory in static_dirs]

    async def handle(request: web.Request) -> web.StreamResponse:
        found = _static_file(roots, request.match_info.get("tail", ""))
        if found is not None:
            return web.FileResponse(found)
        if fallback is not None:
            response: web.StreamResponse = await fallback(request)
            return response
        raise web.HTTPNotFound(text=json.dumps({"message": "Not Found"}), content_type="application/json")

    return handle


def build_http_app(
    gateway: Gateway | None,
    *,
    static_dirs: Sequence[Path] = (),
    http_routes: Sequence[HttpRoute] = (),
    invoker: FunctionInvoker | None = None,
    region: str = DEFAULT_REGION,
    account_id: str = ACCOUNT_ID,
    clock: Callable[[], float] = time.time,
    hosts: HostPolicy | None = None,
    management_auth: ManagementAuth | None = None,
) -> web.Application:
    """`hosts`: the Host/Origin policy checked before anything else (none: every request passes).
    `management_auth`: who may call `@connections` (none: anyone who reaches it)."""
    if http_routes and invoker is None:
        raise ValueError("HTTP API routes need an invoker to run their functions")
    app = web.Application(client_max_size=HTTP_API_MAX_BODY)
    if hosts is not None:
        app.middlewares.append(host_check(hosts))
    management = management_handler(gateway, management_auth)
    for method in ("POST", "GET", "DELETE"):
        app.router.add_route(method, "/{stage}/@connections/{connection_id}", management)
        # No stage in the path: AWS's missing-stage answer
        app.router.add_route(method, "/@connections/{connection_id}", management)
    fallback: Handler | None = None
    for route in http_routes:
        assert invoker is not None
        handler = _route_handler(route, invoker, region, account_id, clock)
        if route.path == "$default" or route.method == "$default":
            fallback = handler  # API Gateway's catch-all route: only what nothing else matched
            continue
        method = "*" if route.method.upper() == "ANY" else route.method.upper()
        app.router.add_route(method, _aiohttp_path(route.path), handler)
    if static_dirs:
        app.router.add_get("/{tail:.*}", _static_handler(static_dirs, fallback))
    if fallback is not None:
        app.router.add_route("*", "/{tail:.*}", fallback)
    return app
