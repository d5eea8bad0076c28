"""A threaded HTTP/1.1 WSGI server on a listening socket it is given: the AWS process's front.

Each connection has its own thread, which reads requests with httptools (llhttp, in C), runs the
WSGI application and writes the answer, for as long as the client keeps the connection alive.
Requests therefore run concurrently and one that blocks (a Lambda Invoke waiting for its
function, which itself calls the endpoint on another connection) holds up no other.

Why not a library: measured side by side with the real chain (host check, guard, moto), AWS
process CPU per GetItem / UpdateItem: werkzeug's dev server 1.13 / 1.63 ms (a new connection
and thread per request, since it always answers `Connection: close`; email.parser for the
headers; two writes per answer), uvicorn with a2wsgi 1.00-1.10 / 1.57-1.77 (asyncio or uvloop),
waitress 0.87 / 1.50, this server 0.63 / 1.17 (docs/benchmarks.md, "What limits the fan-out
here"). The libraries hand every request and answer between an I/O thread and a worker thread;
this one never does. waitress and cheroot also serve from a fixed pool of threads, where
requests queue behind blocked ones, and cheroot answered kept-alive requests after ~45 ms.
httptools is already a dependency (push.py).

What it does, as werkzeug's server did for moto:
- the environ werkzeug builds (`PATH_INFO` percent-decoded, `RAW_URI`/`REQUEST_URI` as sent, an
  absolute request target's host as `HTTP_HOST`, header names with an underscore left out, since
  WSGI cannot tell `X_Foo` from `X-Foo`); `headers_hook` sees the raw header list (moto keeps its
  S3 metadata names with underscores through it);
- the body is read whole before the application runs (`Expect: 100-continue` answered first), a
  chunked one decoded: `wsgi.input` holds it and `CONTENT_LENGTH` its length; a `gate` (the host
  policy) sees the environ of the head first, so that a request it refuses is answered without
  its body being read or held (werkzeug's server streamed the body: its host check read none);
- the answer goes out in as few writes as possible: the head with the first part of the body,
  chunked when the application gives no length (HTTP/1.1), nothing after the head for HEAD, 1xx,
  204 and 304;
- an application error before the head is sent is a 500 (logged), after it the connection closes;
  so does an answer with a line break in a header (a 500) or more or fewer bytes than its
  Content-Length (never more than announced: the rest would read as the next answer);
  nothing is logged per request.

What it refuses, answering once and closing the connection (requests complete before it on the
connection are answered first): a request llhttp cannot parse or frame (both Content-Length and
Transfer-Encoding, a repeated or malformed Content-Length, chunked not last) is a 400; a
transfer coding other than chunked a 501; a head (or trailers) over `MAX_HEAD_BYTES` or
`MAX_HEADERS` fields a 431; a body over `MAX_BODY_BYTES` (held whole in memory) a 413, on the
Content-Length before any `100 Continue`; a head not complete `HEAD_TIMEOUT_S` after its first
byte, or a request whose next bytes take over `REQUEST_TIMEOUT_S`, a 408 (slow clients hold
nothing for ever). Past `MAX_CONNECTIONS` a new connection gets a 503 with Retry-After; an accept
that fails (out of descriptors) is logged and retried. Trailers are read and dropped, as werkzeug
did.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import logging
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

import httptools

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# (environ, the request's headers as sent): adds to the environ what the server left out
HeadersHook = Callable[[dict[str, Any], list[tuple[str, str]]], None]
# (environ of the head, no body yet) -> None to go on, or the application answering a refusal
Gate = Callable[[dict[str, Any]], WsgiApp | None]

_RECV_BYTES = 256 * 1024
_SEND_BYTES = 256 * 1024  # body parts are gathered up to this size before a write
_NO_BODY = frozenset({204, 304})
_DROPPED = (ConnectionError, TimeoutError, BrokenPipeError)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class _Refused(Exception):
    """Raised in a parser callback: the request is answered with `status` (or by `answer`, the
    gate's application, on `environ`) and the connection closes."""

    def __init__(
        self, status: int, answer: WsgiApp | None = None, environ: dict[str, Any] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.answer = answer
        self.environ = environ


class _Request:
    """One parsed request (httptools fills it through its callbacks)."""

    __slots__ = (
        "body", "chunked", "environ", "expect", "headers", "keep_alive", "method", "target", "version"
    )  # fmt: skip

    def __init__(self) -> None:
        self.target = b""
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.method = "GET"
        self.version = "1.1"
        self.keep_alive = True
        self.expect = ""
        self.chunked = False  # the body came chunked (decoded: its length is CONTENT_LENGTH)
        self.environ: dict[str, Any] | None = None  # built on the head when a gate saw it


class _Parsing:
    """httptools' callbacks for one connection: complete requests queue up in `done`."""

    def __init__(
        self,
        on_continue: Callable[[], None],
        max_head: int,
        max_headers: int,
        max_body: int,
        on_head: Callable[[_Request], None] | None = None,
    ) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.current = _Request()
        self.done: list[_Request] = []
        self.started = False  # bytes of a request not yet complete have arrived
        self.head_done = False  # the current request's head is complete
        self.in_chunk_head = False  # a chunk's size line parsed, none of its data yet: trailers?
        self._on_continue = on_continue
        self._on_head = on_head
        self._max_head = max_head
        self._max_headers = max_headers
        self._head_bytes = 0
        self._max_body = max_body
        self._fields = 0

    def buffering(self) -> bool:
        """httptools is holding a head or trailers in progress (held whole until complete)."""
        return self.started and (not self.head_done or self.in_chunk_head)

    def on_message_begin(self) -> None:
        self.current = _Request()
        self.started = True
        self.head_done = False
        self.in_chunk_head = False
        self._fields = 0
        self._head_bytes = 0

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._max_head:
            raise _Refused(431)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self.current.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._fields > self._max_headers or self._head_bytes > self._max_head:
            raise _Refused(431)  # 100 fields: http.server's (so werkzeug's) limit; trailers too
        if self.head_done:  # a trailer: not a header (werkzeug drops them too)
            return
        text = value.decode("latin-1")
        self.current.headers.append((name.decode("latin-1"), text))
        size = len(name)
        if size == 6 and name.lower() == b"expect":
            self.current.expect = text.strip(" \t").lower()
        elif size == 14 and name.lower() == b"content-length":  # llhttp let one valid one through
            if int(text) > self._max_body:
                raise _Refused(413)  # on the head, before `100 Continue`: it need not be sent
        elif size == 17 and name.lower() == b"transfer-encoding":
            if text.strip(" \t").lower() != "chunked":  # gzip etc.: not decoded here
                raise _Refused(501)
            self.current.chunked = True

    def on_headers_complete(self) -> None:
        request = self.current
        self.head_done = True
        request.method = self.parser.get_method().decode("latin-1")
        request.version = self.parser.get_http_version()
        request.keep_alive = bool(self.parser.should_keep_alive())
        if self._on_head is not None:  # may refuse the request before its body is read
            self._on_head(request)
        if request.expect == "100-continue" and request.version == "1.1":
            self._on_continue()

    def on_chunk_header(self) -> None:
        self.in_chunk_head = True

    def on_body(self, body: bytes) -> None:
        self.in_chunk_head = False
        if len(self.current.body) + len(body) > self._max_body:
            raise _Refused(413)
        self.current.body += body

    def on_message_complete(self) -> None:
        self.done.append(self.current)
        self.started = False
        self.head_done = False
        self.in_chunk_head = False


def _refusal(status: int, extra: bytes = b"") -> bytes:
    """The whole answer to a request refused with `status`; the connection closes after it."""
    reason = _REASONS[status].encode()
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\n%sContent-Length: %d\r\n\r\n%s"
        % (status, reason, extra, len(reason), reason)
    )


def _wsgi_str(text: str) -> str:
    """WSGI's "bytes as latin-1" form of a decoded string (werkzeug's `_wsgi_encoding_dance`)."""
    return text.encode().decode("latin-1")


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class WsgiServer:
    """Serves `app` on `listening` (already bound and listening) until `shutdown`.

    `serve_forever` accepts connections (run it on a thread of its own); `shutdown` stops it and
    closes the connections still open; `server_close` closes the listening socket.
    """

    IDLE_TIMEOUT_S = 120.0  # a kept-alive connection with no request for this long is closed
    HEAD_TIMEOUT_S = 30.0  # a request's head must be complete this long after its first byte
    REQUEST_TIMEOUT_S = 60.0  # once a request has begun, the longest wait for its next bytes
    MAX_HEAD_BYTES = 64 * 1024  # request line and headers (trailers alike); more: 431
    MAX_HEADERS = 100  # as http.server (under werkzeug); more: 431
    MAX_BODY_BYTES = 512 * 1024 * 1024  # held whole in memory; more: 413 (S3 uploads stay far under)
    MAX_CONNECTIONS = 256  # a thread each; more: 503 with Retry-After, the connection closed

    def __init__(
        self,
        listening: socket.socket,
        app: WsgiApp,
        *,
        headers_hook: HeadersHook | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._listening = listening
        self.app = app
        # sees each request's environ once its head is read, before the body is: a refusal is
        # answered without reading (and holding) the body, and the connection closes
        self.gate = gate
        self._headers_hook = headers_hook
        address = listening.getsockname()
        self.server_address: tuple[str, int] = (str(address[0]), int(address[1]))
        self._wake_read, self._wake_write = socket.socketpair()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ accepting
    def serve_forever(self) -> None:
        self._listening.setblocking(False)  # a connection reset before accept must not block it
        with selectors.DefaultSelector() as selector:
            selector.register(self._listening, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._listening:
                        self._accept()

    def _accept(self) -> None:
        try:
            connection, peer = self._listening.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as error:  # out of descriptors or memory: the others go on, retried shortly
            log.warning("AWS endpoint: cannot accept a connection: %s", error)
            self._stopping.wait(0.1)  # the listening socket stays readable: no busy loop
            return
        with self._lock:
            if self._stopping.is_set():
                connection.close()
                return
            if len(self._connections) >= self.MAX_CONNECTIONS:
                full = True
            else:
                full = False
                self._connections.add(connection)
        if full:
            self._turn_away(connection)
            return
        try:
            threading.Thread(
                target=self._serve_connection, args=(connection, peer), name="tidings-aws-conn", daemon=True
            ).start()
        except RuntimeError as error:  # can't start new thread
            log.warning("AWS endpoint: cannot serve a connection: %s", error)
            with self._lock:
                self._connections.discard(connection)
            self._turn_away(connection)

    def _turn_away(self, connection: socket.socket) -> None:
        """503 on a connection the server has no room for, without blocking the accepting loop."""
        with contextlib.suppress(OSError):
            connection.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                connection.recv(_RECV_BYTES)  # what arrived is read: closing then sends no reset
            connection.send(_refusal(503, b"Retry-After: 1\r\n"))
            connection.shutdown(socket.SHUT_WR)
        connection.close()

    def shutdown(self) -> None:
        """Stop accepting (`serve_forever` returns) and end the connections still open."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # a thread waiting in recv sees the end and returns
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._listening.close()
        self._wake_read.close()
        self._wake_write.close()

    # ------------------------------------------------------------ one connection
    def _serve_connection(self, connection: socket.socket, peer: Any) -> None:
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._requests(connection, peer)
        except _DROPPED:
            pass
        except OSError as error:  # the connection ended under us (shutdown, reset)
            log.debug("AWS endpoint: connection from %s ended: %s", peer, error)
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def _requests(self, connection: socket.socket, peer: Any) -> None:
        parsing = _Parsing(
            lambda: connection.sendall(_CONTINUE),
            self.MAX_HEAD_BYTES,
            self.MAX_HEADERS,
            self.MAX_BODY_BYTES,
            None if self.gate is None else lambda request: self._check_head(request, peer),
        )
        buffered = 0  # bytes received while httptools holds a head (or trailers) in progress
        head_deadline = 0.0  # when the head begun must be complete (0: none begun)
        current = -1.0  # the socket's timeout (set only when it changes: two syscalls each)
        while not self._stopping.is_set():
            # idle between requests: the idle timeout; once a request has begun, bounded waits
            if not parsing.started:
                timeout = self.IDLE_TIMEOUT_S
            elif head_deadline:
                timeout = min(self.REQUEST_TIMEOUT_S, head_deadline - time.monotonic())
            else:
                timeout = self.REQUEST_TIMEOUT_S
            try:
                if timeout <= 0:
                    raise TimeoutError
                if timeout != current:
                    connection.settimeout(timeout)
                    current = timeout
                data = connection.recv(_RECV_BYTES)
            except TimeoutError:
                if parsing.started:  # a client too slow to finish its request holds nothing
                    self._refuse(connection, 408)
                return
            if not data:
                return
            upgrade = False
            refused = 0
            gated: _Refused | None = None
            try:
                parsing.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                upgrade = True  # answered as plain HTTP/1.1, then closed
            except httptools.HttpParserCallbackError as error:
                cause = error.__context__
                refused = cause.status if isinstance(cause, _Refused) else 400
                if isinstance(cause, _Refused) and cause.answer is not None:
                    gated = cause
            except httptools.HttpParserError:
                refused = 400
            if parsing.buffering():
                buffered += len(data)
                if buffered > self.MAX_HEAD_BYTES:
                    refused = refused or 431
                if not head_deadline and not parsing.head_done:
                    head_deadline = time.monotonic() + self.HEAD_TIMEOUT_S
            else:
                buffered = 0
            if parsing.head_done or not parsing.started:
                head_deadline = 0.0
            if (parsing.done or refused or gated) and current != self.IDLE_TIMEOUT_S:
                current = self.IDLE_TIMEOUT_S  # each send may wait this long for the client
                connection.settimeout(current)  # (not what was left of the head's timeout)
            while parsing.done:  # those complete before any error are answered first
                request = parsing.done.pop(0)
                if not self._answer(connection, peer, request) or not request.keep_alive:
                    return
            if gated is not None:  # the gate's own answer, the body left unread
                parsing.current.keep_alive = False
                self._answer(connection, peer, parsing.current, gated.answer, gated.environ)
                self._linger(connection)
                return
            if refused:
                self._refuse(connection, refused)
                return
            if upgrade:
                return

    def _check_head(self, request: _Request, peer: Any) -> None:
        """The gate's verdict on `request`'s head (raises `_Refused` to refuse it)."""
        assert self.gate is not None
        try:
            environ = self._head_environ(request, peer)
            answer = self.gate(environ)
        except Exception:
            path = request.target.partition(b"?")[0].decode("latin-1")  # a query may hold a token
            log.exception("AWS endpoint: %s %s failed", request.method, path)
            raise _Refused(500) from None
        if answer is not None:
            raise _Refused(403, answer, environ)
        request.environ = environ  # the application gets it, with the body, once it is read

    def _refuse(self, connection: socket.socket, status: int) -> None:
        """Answer `status` and close."""
        connection.sendall(_refusal(status))
        self._linger(connection)

    def _linger(self, connection: socket.socket) -> None:
        """Read for a moment what the client still sends before closing (so that closing with
        unread bytes does not reset the connection before the answer is read)."""
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2.0
            connection.settimeout(0.5)
            drained = 0
            while time.monotonic() < deadline and drained < 4 * self.MAX_HEAD_BYTES:
                data = connection.recv(_RECV_BYTES)
                if not data:
                    break
                drained += len(data)

    def environ(self, request: _Request, peer: Any) -> dict[str, Any]:
        """The WSGI environ werkzeug's dev server would give for `request`."""
        environ = self._head_environ(request, peer)
        self._add_body(environ, request)
        return environ

    @staticmethod
    def _add_body(environ: dict[str, Any], request: _Request) -> None:
        body = bytes(request.body)
        request.body = bytearray()  # the one copy the application reads stays in memory
        environ["wsgi.input"] = io.BytesIO(body)
        if request.chunked or body:
            environ["CONTENT_LENGTH"] = str(len(body))

    def _head_environ(self, request: _Request, peer: Any) -> dict[str, Any]:
        """`environ` but for the body (an empty `wsgi.input`)."""
        target = request.target.decode("latin-1")
        if target.startswith("//"):  # as http.server (under werkzeug) reads it: one leading slash
            target = "/" + target.lstrip("/")
        url = urlsplit(target)
        # a target starting with two slashes parses as a netloc: it is part of the path
        path = f"/{url.netloc}{url.path}" if not url.scheme and url.netloc else url.path
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "SERVER_SOFTWARE": "tidings",
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": _wsgi_str(unquote(path)),
            "QUERY_STRING": _wsgi_str(url.query),
            "REQUEST_URI": _wsgi_str(target),
            "RAW_URI": _wsgi_str(target),
            "REMOTE_ADDR": str(peer[0]),
            "REMOTE_PORT": int(peer[1]),
            "SERVER_NAME": self.server_address[0],
            "SERVER_PORT": str(self.server_address[1]),
            "SERVER_PROTOCOL": f"HTTP/{request.version}",
        }
        for name, value in request.headers:
            if "_" in name:
                continue
            key = name.upper().replace("-", "_")
            if key == "TRANSFER_ENCODING":  # the body is decoded: its length is CONTENT_LENGTH
                continue
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = f"HTTP_{key}"
                if key in environ:
                    value = f"{environ[key]},{value}"
            environ[key] = value
        if url.scheme and url.netloc:  # an absolute target names the host (RFC 9112)
            environ["HTTP_HOST"] = url.netloc
        if self._headers_hook is not None:
            self._headers_hook(environ, request.headers)
        return environ

    def _answer(
        self,
        connection: socket.socket,
        peer: Any,
        request: _Request,
        app: WsgiApp | None = None,
        environ: dict[str, Any] | None = None,
    ) -> bool:
        """Run the application (or `app` on `environ`) for `request` and send its answer; False:
        close the connection."""
        keep_alive = request.keep_alive
        bodiless = [request.method == "HEAD"]  # HEAD, 1xx, 204, 304: no body is sent
        started: list[Any] = []  # [status, headers] once start_response is called
        sent: list[bool] = [False]  # the head has been written
        chunked = [False]
        remaining = [-1]  # bytes of the body still due after the app's Content-Length (-1: none given)
        pending = bytearray()

        def head() -> None:
            nonlocal keep_alive
            status, headers = started
            code = int(status.split(None, 1)[0])
            lines = [f"HTTP/1.1 {status}\r\n"]
            names = set()
            for name, value in headers:
                lowered = name.lower()
                names.add(lowered)
                lines.append(f"{name}: {value}\r\n")
                if lowered == "content-length":
                    remaining[0] = int(value)
            if "date" not in names:
                lines.append(f"Date: {_http_date()}\r\n")
            bodiless[0] = bodiless[0] or 100 <= code < 200 or code in _NO_BODY
            if "content-length" not in names and not bodiless[0]:
                if request.version == "1.1":
                    chunked[0] = True
                    lines.append("Transfer-Encoding: chunked\r\n")
                else:
                    keep_alive = False  # the end of the body is the end of the connection
            if not keep_alive:
                lines.append("Connection: close\r\n")
            elif request.version == "1.0":
                lines.append("Connection: keep-alive\r\n")
            lines.append("\r\n")
            text = "".join(lines)
            if text.count("\n") != len(lines) or text.count("\r") != len(lines):
                raise ValueError("a line break in the status or a header of the answer")
            pending.extend(text.encode("latin-1"))
            sent[0] = True

        def write(data: bytes) -> None:
            nonlocal keep_alive
            if not started:
                raise AssertionError("write() before start_response")
            if not sent[0]:
                head()
            if data and not bodiless[0]:
                if remaining[0] >= 0:  # never more than announced: the rest would read as an answer
                    if len(data) > remaining[0]:
                        keep_alive = False
                        data = data[: remaining[0]]
                    remaining[0] -= len(data)
                if chunked[0]:
                    pending.extend(b"%x\r\n" % len(data))
                if len(data) >= _SEND_BYTES:  # a large part goes out as it is, not copied
                    if pending:
                        connection.sendall(pending)
                        pending.clear()
                    view = memoryview(data)  # in parts: the timeout bounds each, not the whole
                    for start in range(0, len(view), _SEND_BYTES * 4):
                        connection.sendall(view[start : start + _SEND_BYTES * 4])
                else:
                    pending.extend(data)
                if chunked[0]:
                    pending.extend(b"\r\n")
            if len(pending) >= _SEND_BYTES:
                connection.sendall(pending)
                pending.clear()

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info is not None:
                try:
                    if sent[0]:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif started:
                raise AssertionError("start_response called twice without exc_info")
            started[:] = [status, list(headers)]
            return write

        try:
            if app is not None and environ is not None:  # the gate's answer: no body read
                result = app(environ, start_response)
            elif request.environ is not None:  # built on the head for the gate
                self._add_body(request.environ, request)
                result = self.app(request.environ, start_response)
            else:
                result = self.app(self.environ(request, peer), start_response)
            try:
                for data in result:
                    write(data)
                if not sent[0]:
                    write(b"")
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except _DROPPED:
            raise
        except Exception:
            path = request.target.partition(b"?")[0].decode("latin-1")  # a query may hold a token
            log.exception("AWS endpoint: %s %s failed", request.method, path)
            if sent[0]:  # the answer has begun: what is written goes out, then closing tells the client
                if pending:
                    connection.sendall(pending)
                return False
            message = b"Internal Server Error"
            connection.sendall(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n%s\r\n%s"
                % (len(message), b"" if keep_alive else b"Connection: close\r\n", message)
            )
            return keep_alive
        if chunked[0]:
            pending.extend(b"0\r\n\r\n")
        if pending:
            connection.sendall(pending)
        if remaining[0] > 0 and not bodiless[0]:  # shorter than announced: closing tells the client
            return False
        return keep_alive
