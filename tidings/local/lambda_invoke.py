"""Lambda's Invoke API for the template's own functions, on the embedded AWS endpoint.

A handler that calls `lambda:Invoke` on another function of its template (by name, partial ARN
or ARN, qualified or not) reaches the embedded endpoint, where moto has none of them. This
interceptor (`AwsServices.add_interceptor`) answers those calls itself: RequestResponse runs the
function on the stack's loop and answers in Lambda's shapes (the payload; `X-Amz-Function-Error:
Unhandled` and the error payload on a handler error; `X-Amz-Executed-Version`; `X-Amz-Log-Result`
for `LogType=Tail`), Event answers 202 at once and runs it with Lambda's asynchronous retries
and destinations (`lambda_async.py`), DryRun answers 204. A name that is not one of the
template's functions is `ResourceNotFoundException`, as Lambda answers.

`target_arn`, `parse_request` and `invocation_response` are pure; `LambdaInvoke` is the thin
shell that hands the invocation to the loop (the endpoint serves on moto's threads).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import re
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from tidings.local.model import ACCOUNT_ID, FunctionInvoker, Invocation, LocalApp

log = logging.getLogger(__name__)

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
_CREDENTIAL_REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/lambda/")
LOG_TAIL_BYTES = 4096
SOURCE = "lambda:Invoke"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
AsyncInvoke = Callable[..., Coroutine[Any, Any, None]]  # LambdaAsync.invoke(function_id, payload, source=...)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def wsgi(self) -> WsgiApp:
        reasons = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 404: "Not Found"}

        def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            headers = [*self.headers.items(), ("Content-Length", str(len(self.body)))]
            start_response(f"{self.status} {reasons.get(self.status, 'Error')}", headers)
            return [self.body]

        return application


def error_answer(status: int, code: str, message: str) -> Answer:
    """Lambda's error shape: boto3 raises `code` (x-amzn-ErrorType) with `message`."""
    body = json.dumps({"Type": "User", "message": message}).encode()
    return Answer(status, {"Content-Type": "application/json", "x-amzn-ErrorType": code}, body)


def target_arn(
    name: str, qualifier: str | None, region: str, account: str = ACCOUNT_ID
) -> tuple[str, str | None]:
    """The unqualified function ARN and the qualifier that Lambda reads from a FunctionName."""
    if name.startswith("arn:"):
        parts = name.split(":")
        base, rest = ":".join(parts[:7]), parts[7:]
    elif re.match(r"^\d{12}:function:", name):
        parts = name.split(":")
        base, rest = f"arn:aws:lambda:{region}:{':'.join(parts[:3])}", parts[3:]
    else:
        function_name, _, suffix = name.partition(":")
        base, rest = f"arn:aws:lambda:{region}:{account}:function:{function_name}", [suffix] if suffix else []
    return base, (rest[0] if rest else None) or qualifier


@dataclass(frozen=True)
class InvokeRequest:
    function_name: str
    invocation_type: str  # RequestResponse | Event | DryRun
    qualifier: str | None
    log_tail: bool
    region: str | None  # the region the caller signed for, when it says


def parse_request(environ: dict[str, Any]) -> InvokeRequest | None:
    """The Invoke call a WSGI request makes, or None when it is not one."""
    if environ.get("REQUEST_METHOD") != "POST":
        return None
    match = INVOKE_PATH.match(str(environ.get("PATH_INFO", "")))
    if match is None:
        return None
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    region = _CREDENTIAL_REGION.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    return InvokeRequest(
        function_name=unquote(match.group(1)),
        invocation_type=str(environ.get("HTTP_X_AMZ_INVOCATION_TYPE") or "RequestResponse"),
        qualifier=query.get("Qualifier", [None])[0],
        log_tail=str(environ.get("HTTP_X_AMZ_LOG_TYPE", "")).lower() == "tail",
        region=region.group(1) if region else None,
    )


def invocation_response(invocation: Invocation, version: str, log_tail: bool) -> Answer:
    """A RequestResponse invocation's answer: 200 with the payload, or with the error payload."""
    headers = {
        "Content-Type": "application/json",
        "X-Amz-Executed-Version": version,
        "x-amzn-RequestId": invocation.request_id,
    }
    if log_tail:
        tail = invocation.logs.encode()[-LOG_TAIL_BYTES:]
        headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode()
    if invocation.ok:
        return Answer(200, headers, json.dumps(invocation.result).encode())
    headers["X-Amz-Function-Error"] = "Unhandled"
    payload: dict[str, Any] = {
        "errorMessage": invocation.error_message or "",
        "errorType": invocation.error_type or "Error",
        "requestId": invocation.request_id,
        "stackTrace": invocation.traceback.rstrip().splitlines() if invocation.traceback else [],
    }
    return Answer(200, headers, json.dumps(payload).encode())


def _body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    return stream.read(length) if stream is not None and length > 0 else b""


class LambdaInvoke:
    """The interceptor: runs Invoke of the app's functions through the stack's function runner."""

    def __init__(
        self,
        app: LocalApp,
        invoker: FunctionInvoker,
        invoke_async: AsyncInvoke,
        loop: asyncio.AbstractEventLoop,
        *,
        wait_margin_s: float = 60.0,
    ) -> None:
        self.app = app
        self.invoker = invoker
        self.invoke_async = invoke_async
        self.loop = loop
        self.wait_margin_s = wait_margin_s
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any]) -> WsgiApp | None:
        request = parse_request(environ)
        if request is None:
            return None
        try:
            return self.answer(request, _body(environ)).wsgi()
        except RuntimeError as error:  # the stack's loop has stopped (Ctrl-C while a call arrives)
            return error_answer(503, "ServiceException", f"the local stack is stopping: {error}").wsgi()

    def answer(self, request: InvokeRequest, body: bytes) -> Answer:
        arn, qualifier = target_arn(
            request.function_name, request.qualifier, request.region or self.app.region
        )
        function_id = self.app.function_id_by_arn(arn)
        shown = f"{arn}:{qualifier}" if qualifier else arn
        if function_id is None or (qualifier is not None and not re.fullmatch(r"[A-Za-z0-9$_-]+", qualifier)):
            return error_answer(404, "ResourceNotFoundException", f"Function not found: {shown}")
        try:
            payload: Any = json.loads(body) if body.strip() else {}
        except ValueError as error:
            return error_answer(
                400, "InvalidRequestContentException", f"Could not parse request body into json: {error}"
            )
        if request.invocation_type == "DryRun":
            return Answer(204)
        if request.invocation_type == "Event":
            future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
                self.invoke_async(function_id, payload, source=f"{SOURCE} (Event)"), self.loop
            )
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(self._forget)
            return Answer(202)
        if request.invocation_type != "RequestResponse":
            return error_answer(
                400, "InvalidParameterValueException", f"invalid InvocationType {request.invocation_type!r}"
            )
        function = self.app.functions[function_id]
        running = asyncio.run_coroutine_threadsafe(
            self.invoker.invoke(function_id, payload, source=SOURCE), self.loop
        )
        try:
            invocation = running.result(timeout=function.timeout_s + self.wait_margin_s)
        except concurrent.futures.TimeoutError:
            running.cancel()
            return error_answer(500, "ServiceException", f"{function.name}: the local runner did not answer")
        version = qualifier if qualifier and qualifier.isdigit() else "$LATEST"
        return invocation_response(invocation, version, request.log_tail)

    def _forget(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("asynchronous Invoke failed: %s", future.exception())
