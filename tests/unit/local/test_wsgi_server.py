"""wsgi_server.py: the AWS process's HTTP/1.1 front, over real sockets (keep-alive, bodies, errors,
concurrency, stop), and the environ werkzeug's dev server gave for the same bytes."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from tidings.local.wsgi_server import WsgiServer

Environ = dict[str, Any]


def _echo(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response(
        "200 OK",
        [
            ("Content-Length", str(len(body))),
            ("X-Port", str(environ["REMOTE_PORT"])),
            ("X-Method", environ["REQUEST_METHOD"]),
        ],
    )
    return [body]


class Served:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.server = WsgiServer(socket.create_server(("127.0.0.1", 0)), app)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def raw(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()


@pytest.fixture
def echo() -> Iterator[Served]:
    served = Served(_echo)
    yield served
    served.stop()


def _read_all(connection: socket.socket) -> bytes:
    data = bytearray()
    while chunk := connection.recv(1024 * 1024):
        data += chunk
    return bytes(data)


def test_requests_on_one_connection_are_kept_alive(echo: Served) -> None:
    connection = echo.connect()
    ports = set()
    for n in range(3):
        connection.request("POST", "/", body=f"call {n}".encode())
        answer = connection.getresponse()
        assert answer.read() == f"call {n}".encode()
        assert answer.getheader("Connection") is None and answer.getheader("Date")
        ports.add(answer.getheader("X-Port"))
    assert len(ports) == 1  # one TCP connection for the three


def test_a_chunked_body_reaches_the_app_decoded_with_its_length() -> None:
    seen: list[Environ] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(dict(environ))
        return _echo(environ, start_response)

    served = Served(app)
    try:
        connection = served.connect()
        connection.request("PUT", "/up", body=iter([b"first,", b"second"]), encode_chunked=True)
        assert connection.getresponse().read() == b"first,second"
        assert seen[0]["CONTENT_LENGTH"] == "12" and "HTTP_TRANSFER_ENCODING" not in seen[0]
    finally:
        served.stop()


def test_expect_100_continue_is_answered_before_the_body_is_sent(echo: Served) -> None:
    with echo.raw() as connection:
        connection.sendall(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert connection.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(b"hello")
        answer = connection.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nhello")


def test_an_answer_without_a_length_is_chunked_and_head_gets_no_body() -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"one ", b"", b"two"]

    served = Served(app)
    try:
        connection = served.connect()
        connection.request("GET", "/")
        answer = connection.getresponse()
        assert answer.getheader("Transfer-Encoding") == "chunked"
        assert answer.read() == b"one two"
        with served.raw() as raw:
            raw.sendall(
                b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
            )
            head, _, rest = _read_all(raw).partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head  # HEAD: the head alone, then the next answer
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
        assert rest.endswith(b"\r\n\r\n4\r\none \r\n3\r\ntwo\r\n0\r\n\r\n")
    finally:
        served.stop()


def test_a_204_sends_no_body_even_when_the_app_gives_one() -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("204 No Content", [])
        return [b"stray"]

    served = Served(app)
    try:
        with served.raw() as raw:
            raw.sendall(b"DELETE /b/k HTTP/1.1\r\nHost: h\r\n\r\nDELETE /b/k HTTP/1.1\r\nHost: h\r\n\r\n")
            time.sleep(0.2)
            raw.shutdown(socket.SHUT_WR)
            data = _read_all(raw)
        assert data.count(b"HTTP/1.1 204 No Content\r\n") == 2 and b"stray" not in data
        assert b"Transfer-Encoding" not in data
    finally:
        served.stop()


def test_a_large_body_goes_in_and_out_whole(echo: Served) -> None:
    body = hashlib.sha256(b"seed").digest() * (40 * 1024 * 1024 // 32)  # 40 MiB, a video clip's size
    connection = echo.connect()
    connection.request("PUT", "/bucket/clip.mp4", body=body)
    answer = connection.getresponse()
    assert answer.status == 200 and answer.read() == body


def test_pipelined_requests_are_answered_in_order(echo: Served) -> None:
    with echo.raw() as connection:
        connection.sendall(
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nA"
            b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: close\r\n\r\nB"
        )
        data = _read_all(connection)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.index(b"\r\n\r\nA") < data.index(b"\r\n\r\nB")


def test_http_1_0_closes_unless_asked_to_keep_alive(echo: Served) -> None:
    with echo.raw() as connection:
        connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = _read_all(connection)  # returns: the server closed it
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in data
    with echo.raw() as connection:
        connection.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert b"Connection: keep-alive\r\n" in connection.recv(65536)
        connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert _read_all(connection).startswith(b"HTTP/1.1 200 OK")


def test_a_request_it_cannot_parse_is_a_400_and_the_server_keeps_serving(echo: Served) -> None:
    with echo.raw() as connection:
        connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = _read_all(connection)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in data
    connection2 = echo.connect()
    connection2.request("POST", "/", body=b"still here")
    assert connection2.getresponse().read() == b"still here"


def test_an_app_error_is_a_500_or_a_closed_connection_once_the_answer_began(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/before":
            raise RuntimeError("broken before the answer")
        if environ["PATH_INFO"] == "/after":

            def body() -> Iterator[bytes]:
                yield b"part"
                raise RuntimeError("broken in the middle")

            start_response("200 OK", [("Content-Length", "100")])
            return body()
        return _echo(environ, start_response)

    served = Served(app)
    try:
        connection = served.connect()
        with caplog.at_level(logging.ERROR, logger="tidings.local.wsgi_server"):
            connection.request("GET", "/before?X-Amz-Security-Token=secret-token")
            answer = connection.getresponse()
            assert answer.status == 500 and answer.read() == b"Internal Server Error"
            connection.request("POST", "/fine", body=b"ok")  # the same connection goes on
            assert connection.getresponse().read() == b"ok"
            with served.raw() as raw:
                raw.sendall(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
                data = _read_all(raw)  # closed after the part that went out
            assert data.endswith(b"\r\n\r\npart")
        assert "GET /before failed" in caplog.text and "GET /after failed" in caplog.text
        assert "secret-token" not in caplog.text  # the path is logged, never the query
    finally:
        served.stop()


def test_a_blocked_request_holds_up_no_other() -> None:
    release = threading.Event()
    entered = threading.Event()

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/wait":
            entered.set()
            release.wait(30)  # a Lambda Invoke waiting for its function
        return _echo(environ, start_response)

    served = Served(app)
    try:
        waiting = served.connect()
        waiting.request("GET", "/wait")
        assert entered.wait(10)
        started = time.monotonic()
        for _ in range(5):  # each on a connection of its own, as the waiting function's calls are
            other = served.connect()
            other.request("POST", "/quick", body=b"x")
            assert other.getresponse().read() == b"x"
        assert time.monotonic() - started < 5
        release.set()
        assert waiting.getresponse().status == 200
    finally:
        release.set()
        served.stop()


def test_stop_is_idempotent_ends_idle_connections_and_works_unstarted() -> None:
    served = Served(_echo)
    with served.raw() as idle:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 OK")
        served.stop()
        assert not served.thread.is_alive()
        assert idle.recv(100) == b""  # the kept-alive connection was closed by the stop
    served.server.shutdown()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", served.port), timeout=5)
    never = WsgiServer(socket.create_server(("127.0.0.1", 0)), _echo)
    never.shutdown()
    never.server_close()


def test_an_idle_connection_is_closed_after_the_idle_timeout(
    echo: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WsgiServer, "IDLE_TIMEOUT_S", 0.2)
    with echo.raw() as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 OK")
        started = time.monotonic()
        assert connection.recv(100) == b""
        assert time.monotonic() - started < 5


# ------------------------------------------------------------ the environ, as werkzeug gave it
REQUESTS = [
    b"GET /bucket/a%2Fb%20c.txt?list-type=2&prefix=a%2F HTTP/1.1\r\nHost: s3.local:9\r\n"
    b"X-Amz-Meta-My_Key: dropped\r\nX-Amz-Meta-Other: kept\r\nAccept: a\r\nAccept: b\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.0\r\n"
    b"X-Amz-Target: DynamoDB_20120810.GetItem\r\nContent-Length: 2\r\n\r\n{}",
    b"GET http://other.host:4566/path?q HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET //double/slash HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /caf%C3%A9 HTTP/1.1\r\nHost: localhost\r\n\r\n",
]
# werkzeug's own, the server's, and the peer's
DIFFERENT = {
    "wsgi.input", "wsgi.errors", "wsgi.multiprocess", "werkzeug.socket", "SERVER_SOFTWARE",
    "REMOTE_PORT", "SERVER_PORT",
}  # fmt: skip


@pytest.mark.parametrize("raw", REQUESTS, ids=range(len(REQUESTS)))
def test_the_environ_is_the_one_werkzeug_gave(raw: bytes) -> None:
    from werkzeug.serving import make_server

    seen: list[Environ] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append({**environ, "body": environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))})
        start_response("204 No Content", [])
        return []

    werkzeug = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=werkzeug.serve_forever, daemon=True).start()
    ours = Served(app)
    try:
        for port in (werkzeug.server_address[1], ours.port):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
                connection.sendall(raw)
                assert connection.recv(65536).startswith(b"HTTP/1.1 204")
        theirs, mine = ({k: v for k, v in e.items() if k not in DIFFERENT} for e in seen)
        assert mine == theirs
    finally:
        werkzeug.shutdown()
        werkzeug.server_close()
        ours.stop()


def test_the_headers_hook_sees_the_headers_as_sent() -> None:
    hooked: list[list[tuple[str, str]]] = []

    def hook(environ: Environ, headers: list[tuple[str, str]]) -> None:
        hooked.append(headers)
        environ["hooked"] = True

    seen: list[Environ] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ)
        return _echo(environ, start_response)

    server = WsgiServer(socket.create_server(("127.0.0.1", 0)), app, headers_hook=hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30) as connection:
            connection.sendall(
                b"GET / HTTP/1.1\r\nHost: h\r\nX-Amz-Meta-My_Key: v\r\nConnection: close\r\n\r\n"
            )
            _read_all(connection)
        assert ("X-Amz-Meta-My_Key", "v") in hooked[0] and seen[0]["hooked"] is True
        assert "HTTP_X_AMZ_META_MY_KEY" not in seen[0]  # the server itself leaves it out
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def test_the_environ_input_is_a_file_of_the_body(echo: Served) -> None:
    seen: list[Any] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ["wsgi.input"])
        return _echo(environ, start_response)

    served = Served(app)
    try:
        connection = served.connect()
        connection.request("GET", "/")
        connection.getresponse().read()
        assert isinstance(seen[0], io.BytesIO) and seen[0].getvalue() == b""
    finally:
        served.stop()


# ------------------------------------------------------------ adversarial input and limits
def _exchange(served: Served, raw: bytes) -> bytes:
    """Send `raw` on a new connection; everything the server answers until it closes."""
    with served.raw() as connection:
        connection.sendall(raw)
        return _read_all(connection)


def _statuses(data: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def _still_serves(served: Served) -> None:
    connection = served.connect()
    connection.request("POST", "/", body=b"still here")
    assert connection.getresponse().read() == b"still here"


def test_a_head_that_never_ends_is_a_408_after_the_head_timeout(
    echo: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WsgiServer, "HEAD_TIMEOUT_S", 0.5)
    with echo.raw() as connection:  # slowloris: a byte at a time, never the blank line
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for byte in b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"a" * 100:
                connection.sendall(bytes([byte]))
                time.sleep(0.05)
        data = _read_all(connection)
        assert time.monotonic() - started < 4
    assert _statuses(data) == [408] and b"Connection: close" in data
    _still_serves(echo)


def test_a_body_that_stops_arriving_is_a_408_after_the_request_timeout(
    echo: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WsgiServer, "REQUEST_TIMEOUT_S", 0.3)
    data = _exchange(echo, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    assert _statuses(data) == [408]


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",  # the request line
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",  # one header
        b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-Many: a\r\n" * 101 + b"\r\n",  # too many headers
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
        b"X-Trailer: " + b"a" * 70_000 + b"\r\n\r\n",  # trailers are held like a head
    ],
    ids=["request-line", "header", "count", "trailer"],
)
def test_a_head_over_the_limits_is_a_431_and_the_connection_closes(echo: Served, raw: bytes) -> None:
    data = _exchange(echo, raw)
    assert _statuses(data) == [431] and b"Connection: close" in data
    _still_serves(echo)


def test_a_head_that_never_ends_holds_bounded_memory(echo: Served) -> None:
    with echo.raw() as connection:
        with contextlib.suppress(OSError):
            connection.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Endless: ")
            for _ in range(64):  # 16 MiB of one header value: refused long before
                connection.sendall(b"a" * 256 * 1024)
        assert _statuses(_read_all(connection)) == [431]


def test_a_body_over_the_limit_is_a_413_without_100_continue(
    echo: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WsgiServer, "MAX_BODY_BYTES", 1000)
    with echo.raw() as connection:
        connection.sendall(
            b"PUT /b/k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n"
        )
        data = _read_all(connection)  # refused on the head: the body need not be sent
    assert _statuses(data) == [413] and b"Connection: close" in data
    head = b"PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"64\r\n" + b"a" * 100 + b"\r\n"
    assert _statuses(_exchange(echo, head + chunk * 11)) == [413]  # a chunked one as it grows
    connection2 = echo.connect()
    connection2.request("PUT", "/", body=b"a" * 1000)  # at the limit: served
    assert connection2.getresponse().read() == b"a" * 1000


def test_no_100_continue_for_http_1_0(echo: Served) -> None:
    data = _exchange(echo, b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
    assert _statuses(data) == [200]


def test_a_transfer_coding_other_than_chunked_is_a_501(echo: Served) -> None:
    data = _exchange(
        echo, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert _statuses(data) == [501] and b"Connection: close" in data


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\n\n",
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
    ],
    ids=["cl-and-te", "cl-twice", "cl-list", "cl-sign", "te-not-last", "bare-lf", "space-colon", "fold"],
)
def test_ambiguous_framing_is_a_400_and_nothing_reaches_the_app(raw: bytes) -> None:
    calls: list[str] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        return _echo(environ, start_response)

    served = Served(app)
    try:
        data = _exchange(served, raw + b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
        assert _statuses(data) == [400] and b"Connection: close" in data and calls == []
    finally:
        served.stop()


def test_requests_before_a_bad_one_are_answered_then_the_400(echo: Served) -> None:
    data = _exchange(echo, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nokNOT HTTP\r\n\r\n")
    assert _statuses(data) == [200, 400] and b"\r\n\r\nok" in data


def test_trailers_are_not_headers(echo: Served) -> None:
    seen: list[Environ] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ)
        return _echo(environ, start_response)

    served = Served(app)
    try:
        data = _exchange(
            served,
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"3\r\nabc\r\n0\r\nHost: evil\r\nAuthorization: x\r\n\r\n",
        )
        assert data.endswith(b"abc")
        assert seen[0]["HTTP_HOST"] == "h" and "HTTP_AUTHORIZATION" not in seen[0]  # as werkzeug
    finally:
        served.stop()


def test_connections_over_the_cap_get_a_503_and_the_rest_go_on(
    echo: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WsgiServer, "MAX_CONNECTIONS", 2)
    held = [echo.raw(), echo.raw()]
    try:
        for connection in held:  # both served, so both counted
            connection.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert connection.recv(65536).startswith(b"HTTP/1.1 200 OK")
        data = _exchange(echo, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert _statuses(data) == [503] and b"Retry-After" in data
    finally:
        for connection in held:
            connection.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the held ones end: room again
        if _statuses(_exchange(echo, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")) == [200]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("no room after the held connections closed")


class _FlakyListener(socket.socket):
    """A listening socket whose first accept fails as when the process is out of descriptors."""

    failures = 1

    def accept(self) -> tuple[socket.socket, Any]:
        if _FlakyListener.failures:
            _FlakyListener.failures -= 1
            raise OSError(24, "Too many open files")
        return super().accept()


def test_accept_failing_does_not_stop_the_server(caplog: pytest.LogCaptureFixture) -> None:
    plain = socket.create_server(("127.0.0.1", 0))
    listening = _FlakyListener(fileno=plain.detach())
    served = Served.__new__(Served)
    served.server = WsgiServer(listening, _echo)
    served.port = served.server.server_address[1]
    served.thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    served.thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="tidings.local.wsgi_server"):
            _still_serves(served)
        assert served.thread.is_alive() and "Too many open files" in caplog.text
    finally:
        served.stop()


@pytest.mark.parametrize(
    "headers",
    [[("X-Bad", "a\r\nSet-Cookie: evil=1")], [("X-Bad", "a\nb")], [("X-Bad\r\nX-Evil", "1")]],
    ids=["crlf", "lf", "name"],
)
def test_a_line_break_in_an_answer_header_is_a_500_not_a_new_header(headers: list[tuple[str, str]]) -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "2"), *headers])
        return [b"ok"]

    served = Served(app)
    try:
        data = _exchange(served, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert _statuses(data) == [500] and b"evil" not in data.lower() and b"X-Evil" not in data
    finally:
        served.stop()


def test_an_answer_longer_or_shorter_than_its_content_length_ends_the_connection() -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        if environ["PATH_INFO"] == "/long":
            return [b"12345", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]  # a forged answer
        return [b"123"]

    served = Served(app)
    try:
        for path in ("/long", "/short"):
            with served.raw() as connection:
                connection.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
                data = _read_all(connection)  # closed: no second answer, no waiting for bytes
            assert _statuses(data) == [200]
            assert data.endswith(b"\r\n\r\n12345" if path == "/long" else b"\r\n\r\n123")
    finally:
        served.stop()


def test_the_gate_sees_the_head_and_refuses_before_the_body(caplog: pytest.LogCaptureFixture) -> None:
    gated: list[Environ] = []

    def refuse(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("403 Forbidden", [("Content-Length", "2")])
        return [b"no"]

    def gate(environ: Environ) -> Callable[..., Iterable[bytes]] | None:
        gated.append(environ)
        if environ["PATH_INFO"] == "/broken":
            raise RuntimeError("gate broken")
        return refuse if environ["PATH_INFO"] == "/refused" else None

    served = Served(_echo)
    served.server.gate = gate
    try:
        connection = served.connect()
        for _ in range(2):  # the environ built on the head is the application's, with the body
            connection.request("POST", "/fine", body=iter([b"bo", b"dy"]), encode_chunked=True)
            assert connection.getresponse().read() == b"body"
        assert [environ["CONTENT_LENGTH"] for environ in gated] == ["4", "4"]
        assert gated[0]["wsgi.input"].getvalue() == b"body"
        with served.raw() as raw:  # a head only: the 403 comes without the body being sent
            raw.sendall(b"PUT /refused HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n")
            data = _read_all(raw)
        assert _statuses(data) == [403] and data.endswith(b"no") and b"Connection: close" in data
        with caplog.at_level(logging.ERROR, logger="tidings.local.wsgi_server"):
            data = _exchange(served, b"GET /broken?X-Amz-Signature=secret HTTP/1.1\r\nHost: h\r\n\r\n")
        assert _statuses(data) == [500] and "GET /broken failed" in caplog.text
        assert "secret" not in caplog.text
        _still_serves(served)
    finally:
        served.stop()


def test_an_answer_is_not_cut_short_by_what_was_left_of_the_head_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(WsgiServer, "HEAD_TIMEOUT_S", 0.5)
    big = b"x" * (32 * 1024 * 1024)

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(len(big)))])
        return [big]

    served = Served(app)
    try:
        with served.raw() as connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n")
            time.sleep(0.45)  # the head completes just inside its timeout
            connection.sendall(b"Connection: close\r\n\r\n")
            time.sleep(0.5)  # a reader a little slow to start: the answer waits for it
            data = _read_all(connection)
        assert data.endswith(b"\r\n\r\n" + big)
    finally:
        served.stop()


class _Closing:
    """An answer iterable with close(), which the server must call however the answer ends."""

    closed = 0

    def __init__(self, parts: list[bytes], fail: bool = False) -> None:
        self.parts, self.fail = parts, fail

    def __iter__(self) -> Iterator[bytes]:
        yield from self.parts
        if self.fail:
            raise RuntimeError("broken in the middle")

    def close(self) -> None:
        _Closing.closed += 1


def test_wsgi_write_exc_info_and_close_as_pep_3333_says(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/write":  # the legacy write() callable, then the iterable
            write = start_response("200 OK", [("Content-Length", "6")])
            write(b"abc")
            return _Closing([b"def"])
        if path == "/replaced":  # an error before the head: exc_info replaces the status
            start_response("200 OK", [("Content-Length", "2")])
            try:
                raise ValueError("late")
            except ValueError:
                import sys

                start_response("502 Bad Gateway", [("Content-Length", "3")], sys.exc_info())
            return _Closing([b"bad"])
        if path == "/twice":
            start_response("200 OK", [])
            start_response("200 OK", [])
        if path == "/after":  # exc_info once the head is out: re-raised, the connection closes
            write = start_response("200 OK", [("Content-Length", "10")])
            write(b"12345")
            try:
                raise ValueError("after the head")
            except ValueError:
                import sys

                start_response("500 Error", [], sys.exc_info())
        if path == "/fails":
            start_response("200 OK", [("Content-Length", "10")])
            return _Closing([b"12345"], fail=True)
        return _echo(environ, start_response)

    served = Served(app)
    _Closing.closed = 0
    try:
        connection = served.connect()
        connection.request("GET", "/write")
        assert connection.getresponse().read() == b"abcdef"
        connection.request("GET", "/replaced")
        answer = connection.getresponse()
        assert (answer.status, answer.read()) == (502, b"bad")
        with caplog.at_level(logging.ERROR, logger="tidings.local.wsgi_server"):
            connection.request("GET", "/twice")
            answer = connection.getresponse()
            assert (answer.status, answer.read()) == (500, b"Internal Server Error")
            for path in ("/after", "/fails"):
                data = _exchange(served, f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
                assert _statuses(data) == [200] and data.endswith(b"\r\n\r\n12345")  # then closed
        assert _Closing.closed == 3  # /write, /replaced and /fails: close() each time
        _still_serves(served)
    finally:
        served.stop()


def test_head_and_304_keep_the_apps_content_length_send_no_body_and_stay_open() -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        status = "304 Not Modified" if environ["PATH_INFO"] == "/304" else "200 OK"
        start_response(status, [("Content-Length", "5")])
        return [b"" if status.startswith("304") else b"12345"]

    served = Served(app)
    try:
        with served.raw() as connection:
            connection.sendall(
                b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET /304 HTTP/1.1\r\nHost: h\r\n\r\n"
                b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
            )
            data = _read_all(connection)
        assert _statuses(data) == [200, 304, 200] and data.count(b"Content-Length: 5\r\n") == 3
        assert data.count(b"12345") == 1 and data.endswith(b"\r\n\r\n12345")
    finally:
        served.stop()


def test_stop_with_a_request_in_flight_returns_at_once_and_leaves_no_thread_behind() -> None:
    release = threading.Event()
    entered = threading.Event()

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        entered.set()
        release.wait(30)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    served = Served(app)
    before = set(threading.enumerate())
    with served.raw() as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert entered.wait(10)
        serving = [thread for thread in threading.enumerate() if thread not in before]
        assert [thread.name for thread in serving] == ["tidings-aws-conn"]
        started = time.monotonic()
        served.stop()  # the stack stopping: it does not wait for the application
        assert time.monotonic() - started < 2 and not served.thread.is_alive()
        assert connection.recv(100) == b""  # the client learns at once
        release.set()  # the application returns: its answer fails quietly, its thread ends
        serving[0].join(5)
        assert not serving[0].is_alive(), "a connection thread was left behind"
