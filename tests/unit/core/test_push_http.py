"""push.ManagementApi against a real local HTTP server: signing, encoding, status mapping, keep-alive."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.credentials import Credentials

from tidings_core.push import ManagementApi, Outcome, Pusher, event_loop, region_of

FIXED_NOW = datetime.datetime(2026, 11, 26, 12, 0, 0)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    peer_port: int


@dataclass
class FakeGateway:
    """`script[id]` lists (status, x-amzn-ErrorType or "") answers for that id's next posts."""

    script: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def gateway() -> Iterator[tuple[FakeGateway, str]]:
    state = FakeGateway()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            connection_id = self.path.rsplit("/", 1)[-1]
            with state.lock:
                state.received.append(
                    Received(self.path, dict(self.headers.items()), body, self.client_address[1])
                )
                steps = state.script.get(connection_id)
                status, error_type = steps.pop(0) if steps else (200, "")
            self.send_response(status)
            if error_type:
                self.send_header("x-amzn-ErrorType", error_type)
            payload = b"" if status == 200 else b'{"message":"x"}'
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/dev"
    finally:
        server.shutdown()
        server.server_close()


def _api(endpoint: str, credentials: Credentials | None = None, max_connections: int = 4) -> ManagementApi:
    return ManagementApi(
        endpoint,
        credentials=credentials or Credentials("AKIDEXAMPLE", "secret", "session-token"),
        region="eu-west-1",
        max_connections=max_connections,
        now=lambda: FIXED_NOW.replace(tzinfo=datetime.UTC),
    )


def test_the_signature_is_the_one_the_botocore_client_computes(
    gateway: tuple[FakeGateway, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, endpoint = gateway
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: FIXED_NOW)
    connection_id = "Ab+c/d=="  # characters a real id never has, to prove the path encoding
    _api(endpoint).post_to_connection(ConnectionId=connection_id, Data=b'{"n":1}')
    sdk: Any = botocore.session.get_session().create_client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token="session-token",
        config=Config(retries={"max_attempts": 1}),
    )
    sdk.post_to_connection(ConnectionId=connection_id, Data=b'{"n":1}')
    ours, theirs = state.received
    assert ours.path == theirs.path == "/dev/@connections/Ab%2Bc%2Fd%3D%3D"
    assert ours.body == theirs.body == b'{"n":1}'
    assert ours.headers["Authorization"] == theirs.headers["Authorization"]
    assert "/20261126/eu-west-1/execute-api/aws4_request" in ours.headers["Authorization"]
    assert ours.headers["X-Amz-Security-Token"] == "session-token"


def test_statuses_map_to_outcomes_whatever_the_error_header_says(gateway: tuple[FakeGateway, str]) -> None:
    state, endpoint = gateway
    state.script = {
        "typed-gone": [(410, "GoneException")],
        "bare-gone": [(410, "")],
        "odd-gone": [(410, "SomethingElse:http://internal.amazon.com/")],
        "busy": [(429, "LimitExceededException"), (429, "")],
        "big": [(413, "PayloadTooLargeException")],
        "forbidden": [(403, "ForbiddenException")],
        "broken": [(500, "")],
    }
    ids = ["a", *state.script, "b"]
    sleeps: list[float] = []
    results = Pusher(_api(endpoint), max_workers=4, sleep=sleeps.append).post_many(ids, b"m")
    assert [r.connection_id for r in results] == ids
    outcome = {r.connection_id: r.outcome for r in results}
    assert outcome == {
        "a": Outcome.DELIVERED, "typed-gone": Outcome.GONE, "bare-gone": Outcome.GONE,
        "odd-gone": Outcome.GONE, "busy": Outcome.DELIVERED, "big": Outcome.TOO_LARGE,
        "forbidden": Outcome.FAILED, "broken": Outcome.FAILED, "b": Outcome.DELIVERED,
    }  # fmt: skip
    busy = next(r for r in results if r.connection_id == "busy")
    assert busy.throttled == 2 and len(sleeps) == 2
    assert next(r for r in results if r.connection_id == "odd-gone").error == "SomethingElse"


def test_posts_share_a_few_keep_alive_connections(gateway: tuple[FakeGateway, str]) -> None:
    state, endpoint = gateway
    ids = [f"c{i}" for i in range(60)]
    results = Pusher(_api(endpoint, max_connections=3), max_workers=3).post_many(ids, b"m")
    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert sorted(r.path.rsplit("/", 1)[-1] for r in state.received) == sorted(ids)
    assert len({r.peer_port for r in state.received}) <= 3  # 60 posts, at most one socket per worker


class RotatingCredentials(Credentials):
    """Refreshable credentials as botocore hands them out: a new frozen set after each rotation."""

    def __init__(self) -> None:
        super().__init__("AKID-1", "secret-1")

    def rotate(self) -> None:
        self.access_key, self.secret_key = "AKID-2", "secret-2"


def test_rotated_credentials_sign_the_next_posts(gateway: tuple[FakeGateway, str]) -> None:
    state, endpoint = gateway
    credentials = RotatingCredentials()
    api = _api(endpoint, credentials)
    api.post_to_connection(ConnectionId="x", Data=b"m")
    credentials.rotate()
    api.post_to_connection(ConnectionId="x", Data=b"m")
    first, second = (r.headers["Authorization"] for r in state.received)
    assert "Credential=AKID-1/" in first and "Credential=AKID-2/" in second
    assert "X-Amz-Security-Token" not in state.received[0].headers  # no token, no header


def test_an_unreachable_endpoint_fails_each_post_without_stopping_the_others() -> None:
    api = _api("http://127.0.0.1:9/dev")  # discard port: nothing listens
    results = Pusher(api, max_workers=2).post_many(["a", "b", "c"], b"m")
    assert [r.outcome for r in results] == [Outcome.FAILED] * 3
    assert all(r.error for r in results)


def test_the_region_comes_from_the_execute_api_host_else_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    assert region_of("https://abc123.execute-api.ap-southeast-2.amazonaws.com/prod") == "ap-southeast-2"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert region_of("http://127.0.0.1:3000/local") == "eu-central-1"
    assert region_of("https://ws.example.com/prod", "us-west-2") == "us-west-2"


def test_a_connection_the_server_closed_while_idle_is_not_reused_even_before_the_loop_notices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As after a Lambda thaw: the server closed the keep-alive connection, and the next post
    runs before the event loop has looked at the socket again. The post goes on a new connection."""
    closed = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive is announced, then the server closes anyway

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def shutdown_request(self, request: Any) -> None:
            super().shutdown_request(request)
            closed.set()

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr("tidings_core.push.IDLE_CHECK_S", 0.0)  # check every reuse
    api = _api(f"http://127.0.0.1:{server.server_address[1]}/dev")

    async def two_posts() -> None:
        await api.post_async("a", b"m")
        assert closed.wait(5)  # blocks the loop: it cannot see the EOF before the next post
        await api.post_async("b", b"m")

    try:
        event_loop().run(two_posts())
    finally:
        server.shutdown()
        server.server_close()
