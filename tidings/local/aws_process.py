"""The embedded AWS services in their own process, so that moto never runs on the gateway's GIL.

In one interpreter, every moto request (a DynamoDB Query of 1,000 subscriptions, PutEvents, the
SigV4 check in front of them) held the GIL the WebSocket gateway, the `@connections` handler
and the function runner's pipes needed: a fan-out of 1,000 ran at 1.45x the sequential sample
and connects got slower with more of them in flight. Here the stack binds the endpoint's socket
(a taken port is its one-line error, as before) and hands it to a child interpreter
(`multiprocessing`, spawn) that serves it: the host check, the guard (SigV4 and IAM), the
interceptors, then moto, as `aws.py` chains them.

What stays in the stack's process reaches the child through one duplex pipe (`Link`), never
moto's objects:

- the run's keys (`RunCredentials`, issued and revoked by the stack) are sent whole on each
  change, before the issuing call returns, so a key works as soon as a worker has it;
- an interceptor of the stack (Lambda Invoke, Step Functions executions, an add-on's) is known
  to the child by its `InterceptMatch`; a matching request, once signed and authorized, goes to
  the stack, whose interceptors answer it or let moto have it;
- refused calls (`Denial`) and rule matches with Lambda or Step Functions targets (bus.py's
  hook on moto's rules, installed in the child) come back to the stack as calls: the stack has
  them before the caller gets its AccessDenied or PutEvents' answer, as when moto ran in it (the
  invocation line that follows names the refusal; a drain after PutEvents sees the delivery);
- the few direct edits of moto's state (a secret's ARN) are calls answered by the child.

Ctrl-C reaches the whole process group: the child ignores it and stops when the stack says so,
or when the pipe closes because the stack is gone.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from tidings.local.aws_guard import AwsGuard, Caller, Credentials, Denial
from tidings.local.hosts import HostPolicy
from tidings.local.iam_requests import Names

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
KeyTable = Mapping[str, tuple[Credentials, Caller]]
# (status line, headers, body) of an interceptor's answer
Answer = tuple[str, list[tuple[str, str]], bytes]


class LinkClosed(ConnectionError):
    """The other process is gone (or stopping): a call cannot be answered."""


@dataclass(frozen=True)
class InterceptMatch:
    """Which requests an interceptor of the stack may answer, decided in the AWS process without
    asking it: a path prefix and/or an `X-Amz-Target` prefix (both must hold when both are set)."""

    path_prefix: str = ""
    target_prefix: str = ""

    def matches(self, environ: Mapping[str, Any]) -> bool:
        if self.path_prefix and not str(environ.get("PATH_INFO", "")).startswith(self.path_prefix):
            return False
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        return not self.target_prefix or target.startswith(self.target_prefix)


class Link:
    """One end of the pipe between the stack and its AWS process.

    `call(kind, *args)` sends a request and waits for the other side's answer; `post(kind, *args)`
    sends a notice. Incoming requests and notices go to `handlers[kind]`, in order on the reader
    thread, except the kinds in `threaded`, which may block (each runs on its own thread).
    """

    def __init__(
        self,
        connection: Connection,
        handlers: Mapping[str, Callable[..., Any]],
        *,
        threaded: frozenset[str] = frozenset(),
        on_closed: Callable[[], None] = lambda: None,
    ) -> None:
        self._connection = connection
        self._handlers = dict(handlers)
        self._threaded = threaded
        self._on_closed = on_closed
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, Future[Any]] = {}
        self._waiting_lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="tidings-aws-link", daemon=True)

    def start(self) -> None:
        self._reader.start()

    def join(self, timeout_s: float | None = None) -> None:
        self._reader.join(timeout_s)

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            if self._closed:
                raise LinkClosed("the AWS process link is closed")
            try:
                self._connection.send(message)
            except (OSError, ValueError) as error:
                raise LinkClosed(str(error)) from None

    def post(self, kind: str, *args: Any) -> None:
        self._send(("post", 0, kind, args))

    def call(self, kind: str, *args: Any, timeout_s: float | None = None) -> Any:
        call_id = next(self._ids)
        future: Future[Any] = Future()
        with self._waiting_lock:
            if self._closed:
                raise LinkClosed("the AWS process link is closed")
            self._waiting[call_id] = future
        try:
            self._send(("call", call_id, kind, args))
            return future.result(timeout_s)
        finally:
            with self._waiting_lock:
                self._waiting.pop(call_id, None)

    def close(self) -> None:
        """Close both ways: the other side reads the end, this side's reader stops."""
        with self._send_lock:
            self._closed = True
            with contextlib.suppress(OSError, ValueError):
                # a blocked recv keeps a closed descriptor's socket open: shut it down first
                end = socket.socket(fileno=self._connection.fileno())
                try:
                    end.shutdown(socket.SHUT_RDWR)
                finally:
                    end.detach()
            self._connection.close()
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        with self._waiting_lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting.values()), {}
        for future in waiting:
            if not future.done():
                future.set_exception(LinkClosed("the AWS process is gone"))

    def _read(self) -> None:
        try:
            while True:
                try:
                    kind_of_message, call_id, kind, payload = self._connection.recv()
                except (EOFError, OSError):
                    return
                if kind_of_message == "reply":
                    with self._waiting_lock:
                        future = self._waiting.get(call_id)
                    if future is not None and not future.done():
                        ok, value = payload
                        if ok:
                            future.set_result(value)
                        else:
                            future.set_exception(RuntimeError(value))
                    continue
                if kind in self._threaded:
                    threading.Thread(
                        target=self._handle, args=(kind_of_message, call_id, kind, payload), daemon=True
                    ).start()
                else:
                    self._handle(kind_of_message, call_id, kind, payload)
        finally:
            self._fail_waiting()
            self._on_closed()

    def _handle(self, kind_of_message: str, call_id: int, kind: str, args: tuple[Any, ...]) -> None:
        try:
            result: tuple[bool, Any] = (True, self._handlers[kind](*args))
        except Exception as error:  # the caller gets the error; this side keeps serving
            log.exception("AWS process link: %s failed", kind)
            result = (False, f"{type(error).__name__}: {error}")
        if kind_of_message == "call":
            with contextlib.suppress(LinkClosed):
                self._send(("reply", call_id, "", result))


# ---------------------------------------------------------------- the AWS process (child side)
@dataclass
class _Served:
    """What the AWS process knows of the stack: its keys, the app's names, which requests its
    interceptors take. Replaced whole by the stack's calls (reads need no lock)."""

    keys: KeyTable
    names: Names = field(default_factory=Names)
    matches: tuple[InterceptMatch, ...] = ()

    def lookup(self, access_key_id: str) -> tuple[Credentials, Caller] | None:
        return self.keys.get(access_key_id)


def _set_secret_arn(region: str, account: str, name: str, arn: str) -> None:
    """The template's functions hold the ARN the stack computed; moto picks its own random
    suffix, so the stored secret takes the stack's ARN to make both lookups work."""
    from moto.secretsmanager.models import secretsmanager_backends

    secretsmanager_backends[account][region].secrets[name].arn = arn


def _intercepting(moto_app: WsgiApp, served: _Served, link: Link) -> WsgiApp:
    """Requests an interceptor of the stack may answer go to the stack first (behind the guard)."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if any(match.matches(environ) for match in served.matches):
            stream = environ.get("wsgi.input")
            body = stream.read() if stream is not None else b""
            fields = {key: value for key, value in environ.items() if isinstance(value, str)}
            answer: Answer | None = link.call("intercept", fields, body)
            if answer is not None:
                status, headers, data = answer
                start_response(status, headers)
                return [data]
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return moto_app(environ, start_response)

    return application


def serve(
    listening: socket.socket,
    connection: Connection,
    policy: HostPolicy | None,
    keys: KeyTable,
    enforce_iam: bool,
    account: str,
) -> None:
    """The AWS process: serve `listening` until the stack says stop or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the stack's to handle: it stops us
    from tidings.local.aws import (
        cache_dynamodb_update_expressions,
        disable_moto_global_cors,
        make_dynamodb_atomic,
        query_dynamodb_tables_by_hash_key,
        serialize_dynamodb_items_directly,
        track_moto_instances_weakly,
    )
    from tidings.local.bus import route_rule_deliveries
    from tidings.local.moto_server import MotoServer

    make_dynamodb_atomic()
    serialize_dynamodb_items_directly()
    cache_dynamodb_update_expressions()
    query_dynamodb_tables_by_hash_key()
    disable_moto_global_cors()
    track_moto_instances_weakly()
    served = _Served(keys)
    stopped = threading.Event()

    def replace(**changes: Any) -> None:
        for name, value in changes.items():
            setattr(served, name, value)

    link = Link(
        connection,
        {
            "keys": lambda table: replace(keys=table),
            "names": lambda names: replace(names=names),
            "matches": lambda matches: replace(matches=tuple(matches)),
            "secret_arn": _set_secret_arn,
            "stop": stopped.set,
        },
        on_closed=stopped.set,
    )

    def deliver(rule_arn: str, rule_name: str, targets: list[dict[str, Any]], event: dict[str, Any]) -> None:
        try:  # a call: scheduled in the stack before PutEvents answers, as when moto ran there
            link.call("events", rule_arn, rule_name, targets, event, timeout_s=30)
        except LinkClosed:
            log.warning("event %s for rule %s dropped: the stack is stopping", event.get("id"), rule_name)

    def denied(denial: Denial) -> None:
        # a call, not a notice: the stack has it before the caller gets its AccessDenied, so the
        # invocation line that ends after the refusal names it
        with contextlib.suppress(LinkClosed):
            link.call("denied", denial, timeout_s=30)

    route_rule_deliveries(deliver)

    def guarded(moto_app: WsgiApp) -> WsgiApp:
        return AwsGuard(
            _intercepting(moto_app, served, link),
            served,
            account=account,
            enforce_iam=enforce_iam,
            names=lambda: served.names,
            on_denied=denied,
        )

    # the host check first, then the guard (signature, IAM), then the interceptors, then moto
    hosts = None if policy is None else (lambda _port: policy)
    server = MotoServer("", 0, hosts=hosts, wrap=guarded, listening=listening)
    link.start()
    server.start()
    try:
        link.post("ready")
        stopped.wait()
    finally:
        server.stop()
        link.close()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)  # moto's and the server's threads are daemons: nothing else to wait for


def child_main() -> None:
    """The AWS process's entry (`python -c`, argv: the link's and the listening socket's
    descriptors, then the stack's sys.path): the stack sends the rest as the link's first message."""
    connection = Connection(int(sys.argv[1]))
    listening = socket.socket(fileno=int(sys.argv[2]))
    policy, keys, enforce_iam, account = connection.recv()
    serve(listening, connection, policy, keys, enforce_iam, account)


_MODULE = child_main.__module__


class AwsProcess:
    """The stack's side: the AWS process serving `listening`, and the link to it.

    `handlers` answer the process's requests and notices: `intercept(environ_fields, body)` (on
    its own thread: an interceptor may wait for a function), `denied(denial)`, `events(rule_arn,
    rule_name, targets, event)`. Started on construction; raises OSError when it does not start.
    """

    START_TIMEOUT_S = 120.0

    def __init__(
        self,
        listening: socket.socket,
        policy: HostPolicy | None,
        keys: KeyTable,
        *,
        enforce_iam: bool,
        account: str,
        handlers: Mapping[str, Callable[..., Any]],
    ) -> None:
        ours, theirs = socket.socketpair()
        # this interpreter with the stack's sys.path, running `child_main` (named from the object);
        # its own session: Ctrl-C is the stack's, which stops it (it also stops when the pipe ends)
        code = f"import sys; sys.path[:] = sys.argv[3:]; from {_MODULE} import child_main; child_main()"
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-c", code, str(theirs.fileno()), str(listening.fileno()), *sys.path],
                pass_fds=(theirs.fileno(), listening.fileno()),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        connection = Connection(ours.detach())
        connection.send((policy, dict(keys), enforce_iam, account))
        ready = threading.Event()
        self._stopping = False
        self.link = Link(
            connection,
            {**handlers, "ready": ready.set},
            threaded=frozenset({"intercept"}),
            on_closed=self._gone,
        )
        self.link.start()
        started = time.monotonic()
        while not ready.wait(0.1):
            if self._process.poll() is not None or time.monotonic() - started > self.START_TIMEOUT_S:
                self.stop()
                raise OSError("AWS endpoint: the embedded AWS services did not start")

    @property
    def pid(self) -> int:
        return self._process.pid

    def _gone(self) -> None:
        if not self._stopping:
            log.error("the embedded AWS services stopped: AWS calls now fail (restart tidings dev)")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the process (idempotent): asked first, then terminated, then killed."""
        self._stopping = True
        with contextlib.suppress(LinkClosed):
            self.link.post("stop")
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self.link.close()
        self.link.join(5)
