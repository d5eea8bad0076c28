"""`tidings token`, `submit` and `watch` against real servers: a moto server holding the signing
secret, a websockets server speaking tidings.v1 and an aiohttp server imitating the jobs API.

The CLI runs `asyncio.run` itself, so the fake servers live on their own loop in a thread.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
import jwt
import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer
from websockets.asyncio.server import ServerConnection, serve

from tidings import cli, client
from tidings.state import STATE_ENV, LocalStackState, write_state
from tidings_core import tokens

SECRET = "cli-functional-signing-key-0123456789abcdef"
SECRET_NAME = "tidings-local-token"
REGION = "us-east-1"
JOB = "job-7f3a"
T = TypeVar("T")


class BackgroundLoop:
    """An event loop in a daemon thread, for servers the synchronous CLI talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    secrets = boto3.client(
        "secretsmanager", region_name=REGION, endpoint_url=endpoint,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    secrets.create_secret(Name=SECRET_NAME, SecretString=SECRET)
    yield endpoint
    server.stop()


@pytest.fixture
def background() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


def write_local_state(
    path: Path, aws_endpoint: str, websocket_url: str = "ws://127.0.0.1:9", jobs_api_url: str | None = None
) -> None:
    write_state(
        LocalStackState(
            websocket_url=websocket_url,
            callback_url="http://127.0.0.1:9",
            aws_endpoint=aws_endpoint,
            http_url="http://127.0.0.1:9",
            progress_view_url=None,
            jobs_api_url=jobs_api_url,
            region=REGION,
            stage="dev",
            token_secret_id=SECRET_NAME,
            # a run's admin key, as `tidings dev` writes it (plain moto here accepts any key)
            aws_access_key_id="AKIA" + uuid.uuid4().hex[:16].upper(),
            aws_secret_access_key=uuid.uuid4().hex,
            pid=os.getpid(),  # this test process stands in for `tidings dev`
        ),
        path,
    )


def verified_user(token: str) -> str:
    return tokens.verify_token(SECRET, token, "tidings").user_id


# token


def test_token_prints_a_jwt_signed_with_the_local_stacks_secret(tmp_path: Path, moto_endpoint: str) -> None:
    state = tmp_path / "state.json"
    write_local_state(state, moto_endpoint)
    result = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "token", "--user", "alice", "--ttl", "120"],
        capture_output=True, text=True, timeout=60, env={**os.environ, STATE_ENV: str(state)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"  # the token alone, for $(tidings token ...)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="tidings")
    assert claims["sub"] == "alice" and claims["aud"] == "tidings"
    assert claims["exp"] - claims["iat"] == 120


def test_token_reports_an_unreachable_endpoint_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    write_local_state(state, "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv(STATE_ENV, str(state))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert cli.main(["token", "--user", "alice"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "cannot reach http://127.0.0.1:9" in captured.err


def test_token_for_a_secret_that_does_not_exist(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    write_local_state(state, moto_endpoint)
    data = json.loads(state.read_text())
    state.write_text(json.dumps({**data, "tokenSecretId": "no-such-secret"}))
    monkeypatch.setenv(STATE_ENV, str(state))
    assert cli.main(["token", "--user", "alice"]) == 2
    assert "ResourceNotFoundException" in capsys.readouterr().err


def test_stack_target_reads_the_cloudformation_outputs() -> None:
    class FakeCloudFormation:
        meta = type("Meta", (), {"region_name": "eu-west-1"})()

        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            assert StackName == "tidings-prod"
            outputs = {"WebSocketUrl": "wss://a.example/dev", "JobsApiUrl": "https://b.example",
                       "TokenSecretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:t",
                       "TokenIssuer": "tidings-prod"}  # fmt: skip
            return {"Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]}

    target = client.stack_target("tidings-prod", cloudformation=FakeCloudFormation())
    assert (target.websocket_url, target.jobs_api_url, target.secret_id) == (
        "wss://a.example/dev", "https://b.example", "arn:aws:secretsmanager:eu-west-1:1:secret:t"
    )  # fmt: skip
    assert (target.region, target.aws_endpoint) == ("eu-west-1", None)  # None: real AWS
    assert target.issuer == "tidings-prod"  # tokens carry the stack's `iss`


# watch


def job_message(seq: int, percent: float, stage: str = "transcoding", **extra: Any) -> dict[str, Any]:
    kind = stage if stage in ("completed", "failed") else "progress"
    return {"type": kind, "jobId": JOB, "userId": "alice", "seq": seq, "stage": stage, "percent": percent,
            "emittedAt": 1_731_332_762_000 + seq, "sentAt": 1_731_332_762_100 + seq, **extra}  # fmt: skip


OUTPUT = {"bucket": "tidings-output", "key": f"outputs/alice/{JOB}/video.mp4", "sizeBytes": 2_400_000,
          "durationSeconds": 12.0, "elapsedSeconds": 4.5}  # fmt: skip
# A script is what the server sends on each successive connection, after the subscribe arrives.
# `None` closes that connection abruptly (as API Gateway does at its 2-hour limit).
Script = list[list[dict[str, Any] | None]]


@dataclass
class FakeTidings:
    """A tidings.v1 server: checks the subprotocols and the token, replays a script per connection."""

    script: Script
    frames: list[list[dict[str, Any]]] = field(default_factory=list)  # client frames per connection
    users: list[str] = field(default_factory=list)
    answer_pings: bool = True
    url: str = ""

    async def handle(self, socket: ServerConnection) -> None:
        frames: list[dict[str, Any]] = []
        self.frames.append(frames)
        offered = socket.request.headers.get("Sec-WebSocket-Protocol", "") if socket.request else ""
        self.users.append(verified_user(offered.split(",")[1].strip()))
        replies = self.script[min(len(self.frames), len(self.script)) - 1]
        async for raw in socket:
            frame = json.loads(raw)
            frames.append(frame)
            if frame["action"] == "ping" and self.answer_pings:
                await socket.send(json.dumps({"type": "pong", "id": frame["id"], "serverTime": 1}))
            if frame["action"] != "subscribe":
                continue
            await socket.send(json.dumps({"type": "subscribed", "topic": frame["topic"]}))
            for reply in replies:
                if reply is None:
                    socket.transport.abort()  # an abrupt drop, no close frame
                    return
                await socket.send(json.dumps(reply))


async def start_fake(fake: FakeTidings) -> Callable[[], Awaitable[None]]:
    server = await serve(fake.handle, "127.0.0.1", 0, subprotocols=["tidings.v1"])  # type: ignore[list-item]
    port = server.sockets[0].getsockname()[1]
    fake.url = f"ws://127.0.0.1:{port}"

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop


@pytest.fixture
def tidings_server(
    background: BackgroundLoop, tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Script], FakeTidings]]:
    stops: list[Callable[[], Awaitable[None]]] = []

    def start(script: Script) -> FakeTidings:
        fake = FakeTidings(script)
        stops.append(background.run(start_fake(fake)))
        state = tmp_path / "state.json"
        write_local_state(state, moto_endpoint, websocket_url=fake.url)
        monkeypatch.setenv(STATE_ENV, str(state))
        return fake

    yield start
    for stop in stops:
        background.run(stop())


RUNNING_SEGMENT = {"index": 0, "percent": 80, "state": "running"}
SNAPSHOT_QUEUED = {"type": "snapshot", "topic": f"job:{JOB}", "jobs": [job_message(0, 0, "queued")]}


def test_watch_follows_a_job_to_completion(
    tidings_server: Callable[[Script], FakeTidings], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tidings_server([[
        SNAPSHOT_QUEUED,
        job_message(1, 10, "probing"),
        job_message(2, 40, etaSeconds=6, speed=2.5, segments=[RUNNING_SEGMENT]),
        job_message(2, 40),  # a duplicate delivery
        job_message(3, 70),
        job_message(4, 100, "completed", output=OUTPUT),
    ]])  # fmt: skip
    assert cli.main(["watch", JOB, "--user", "alice"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{JOB}: queued 0.0%",
        f"{JOB}: probing 10.0%",
        f"{JOB}: transcoding 40.0%  ETA 0:06  2.5x  segments 0/1 done (80%)",
        f"{JOB}: transcoding 70.0%",
        f"{JOB}: completed 100.0%",
        f"completed: s3://tidings-output/outputs/alice/{JOB}/video.mp4",
        "  2.4 MB, duration 0:12, elapsed 4.5s",
    ]
    assert fake.users == ["alice"]
    assert fake.frames == [[{"action": "subscribe", "topic": f"job:{JOB}"}]]


def test_watch_json_prints_each_new_job_message_once(
    tidings_server: Callable[[Script], FakeTidings], capsys: pytest.CaptureFixture[str]
) -> None:
    tidings_server([[SNAPSHOT_QUEUED, job_message(2, 50), job_message(1, 20), job_message(2, 50),
                     job_message(3, 100, "completed", output=OUTPUT)]])  # fmt: skip
    assert cli.main(["watch", JOB, "--user", "alice", "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(m["type"], m["seq"]) for m in printed] == [("progress", 0), ("progress", 2), ("completed", 3)]


def test_watch_reconnects_after_a_drop_and_the_snapshot_catches_up(
    tidings_server: Callable[[Script], FakeTidings], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tidings_server([
        [SNAPSHOT_QUEUED, job_message(1, 10), job_message(2, 20), None],
        # what happened while disconnected arrives in the snapshot; a late duplicate changes nothing
        [{"type": "snapshot", "topic": f"job:{JOB}", "jobs": [job_message(5, 60)]}, job_message(4, 50),
         job_message(6, 100, "completed", output=OUTPUT)],
    ])  # fmt: skip
    assert cli.main(["watch", JOB, "--user", "alice"]) == 0
    out = capsys.readouterr().out
    percents = [line.split()[-1] for line in out.splitlines() if line.startswith(f"{JOB}: transcoding")]
    assert percents == ["10.0%", "20.0%", "60.0%"]
    assert "connection lost" in out and "50.0%" not in out
    assert len(fake.frames) == 2 and all(frames[0]["action"] == "subscribe" for frames in fake.frames)
    assert fake.users == ["alice", "alice"]  # a fresh token for each connection


def test_watch_of_a_failed_job_exits_one_with_the_error_and_a_hint(
    tidings_server: Callable[[Script], FakeTidings], capsys: pytest.CaptureFixture[str]
) -> None:
    error = {"code": "ffmpeg_exit", "message": "segment 2: exit status 1", "retryable": True}
    tidings_server([[SNAPSHOT_QUEUED, job_message(1, 30), job_message(2, 30, "failed", error=error)]])
    assert cli.main(["watch", JOB, "--user", "alice"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [
        "failed: ffmpeg_exit: segment 2: exit status 1",
        "  this failure is transient: submit the file again to retry",
    ]


def test_watch_of_someone_elses_job_exits_two(
    tidings_server: Callable[[Script], FakeTidings], capsys: pytest.CaptureFixture[str]
) -> None:
    forbidden = {"type": "error", "code": "forbidden", "message": f"job:{JOB} belongs to another user"}
    tidings_server([[forbidden]])
    assert cli.main(["watch", JOB, "--user", "mallory"]) == 2
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"cannot watch job:{JOB}: forbidden: job:{JOB} belongs to another user"
    )


async def test_an_unanswered_ping_reconnects(background: BackgroundLoop, moto_endpoint: str) -> None:
    fake = FakeTidings(
        [[SNAPSHOT_QUEUED], [SNAPSHOT_QUEUED, job_message(1, 100, "completed", output=OUTPUT)]]
    )
    fake.answer_pings = False
    stop = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(start_fake(fake), background.loop))
    try:
        printer = client.WatchPrinter(io.StringIO(), "plain")
        token = tokens.issue_token(SECRET, "alice", 60)
        code = await client.watch_job(fake.url, lambda: token, JOB, printer, ping_interval=0.2)
    finally:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(stop(), background.loop))
    assert code == 0
    assert len(fake.frames) == 2
    assert fake.frames[0][1] == {"action": "ping", "id": 1}  # sent, never answered, then a new connection


def test_a_refused_handshake_is_reported_not_retried(
    background: BackgroundLoop,
    tmp_path: Path,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def start_refusing() -> tuple[str, Callable[[], Awaitable[None]]]:
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        def refuse(connection: ServerConnection, request: Any) -> Response:
            return Response(403, "Forbidden", Headers(), b"")

        async def never(socket: ServerConnection) -> None:
            raise AssertionError("the handshake must not complete")

        server = await serve(never, "127.0.0.1", 0, process_request=refuse)

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", stop

    url, stop = background.run(start_refusing())
    try:
        state = tmp_path / "state.json"
        write_local_state(state, moto_endpoint, websocket_url=url)
        monkeypatch.setenv(STATE_ENV, str(state))
        assert cli.main(["watch", JOB, "--user", "alice"]) == 2
    finally:
        background.run(stop())
    assert "refused the connection: 403" in capsys.readouterr().err


# submit


@dataclass
class FakeJobsApi:
    """POST /jobs like UploadsFunction behind the HTTP authorizer, and the presigned PUT target."""

    post_status: int = 201
    put_status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    uploads: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    base: str = ""

    async def create_job(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        try:
            user = verified_user(tokens.bearer_token(authorization))
        except tokens.TokenError:
            return web.json_response({"message": "Forbidden"}, status=403)
        body = await request.json()
        self.requests.append({"user": user, **body})
        if self.post_status != 201:
            error = {"code": "invalid_request", "message": "contentType video/x-nope is not supported"}
            return web.json_response({"error": error}, status=self.post_status)
        upload = {"url": f"{self.base}/upload/{JOB}?X-Amz-Signature=abc", "method": "PUT",
                  "headers": {"Content-Type": body["contentType"]}, "expiresIn": 900}  # fmt: skip
        return web.json_response({"jobId": JOB, "upload": upload}, status=201)

    async def put_object(self, request: web.Request) -> web.Response:
        data = await request.read()
        self.uploads[request.match_info["job"]] = (data, dict(request.headers))
        if self.put_status != 200:
            return web.Response(
                status=self.put_status, text="<Error><Code>SignatureDoesNotMatch</Code></Error>"
            )
        return web.Response(status=200)


@pytest.fixture
def jobs_api(
    background: BackgroundLoop, tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeJobsApi]:
    fake = FakeJobsApi()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/jobs", fake.create_job)
    app.router.add_put("/upload/{job}", fake.put_object)
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    fake.base = f"http://127.0.0.1:{background.run(start())}"
    state = tmp_path / "state.json"
    write_local_state(state, moto_endpoint, jobs_api_url=fake.base + "/")
    monkeypatch.setenv(STATE_ENV, str(state))
    yield fake
    background.run(runner.cleanup())


def test_submit_creates_the_job_streams_the_file_and_prints_only_the_id(
    jobs_api: FakeJobsApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "holiday clip.mov"
    content = os.urandom(3 * client.UPLOAD_CHUNK_BYTES + 123)  # several chunks, an odd tail
    video.write_bytes(content)
    assert cli.main(["submit", str(video), "--user", "alice"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{JOB}\n"
    assert f"job {JOB} started for alice" in captured.err
    assert jobs_api.requests == [
        {
            "user": "alice",
            "filename": "holiday clip.mov",
            "contentType": "video/quicktime",
            "size": len(content),
        }
    ]
    uploaded, headers = jobs_api.uploads[JOB]
    assert uploaded == content
    assert headers["Content-Type"] == "video/quicktime"
    assert headers["Content-Length"] == str(len(content)) and "Transfer-Encoding" not in headers


def test_submit_defaults_an_unknown_extension_to_mp4(
    jobs_api: FakeJobsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "bob")
    video = tmp_path / "capture.bin"
    video.write_bytes(b"\x00" * 10)
    assert cli.main(["submit", str(video)]) == 0
    assert jobs_api.requests[0]["contentType"] == "video/mp4" and jobs_api.requests[0]["user"] == "bob"


def test_submit_reports_the_apis_refusal(
    jobs_api: FakeJobsApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs_api.post_status = 400
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 10)
    assert cli.main(["submit", str(video), "--user", "alice"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "400 invalid_request: contentType video/x-nope is not supported" in captured.err
    assert jobs_api.uploads == {}


def test_submit_reports_a_refused_upload(
    jobs_api: FakeJobsApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs_api.put_status = 403
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 10)
    assert cli.main(["submit", str(video), "--user", "alice"]) == 1
    assert f"upload of job {JOB} refused: 403" in capsys.readouterr().err


def test_submit_then_watch_keeps_stdout_to_the_job_id(
    jobs_api: FakeJobsApi,
    tidings_server: Callable[[Script], FakeTidings],
    tmp_path: Path,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = tidings_server([[SNAPSHOT_QUEUED, job_message(1, 100, "completed", output=OUTPUT)]])
    state = tmp_path / "state.json"
    write_local_state(state, moto_endpoint, websocket_url=fake.url, jobs_api_url=jobs_api.base)
    monkeypatch.setenv(STATE_ENV, str(state))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 10)
    assert cli.main(["submit", str(video), "--user", "alice", "--watch"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{JOB}\n"
    assert f"completed: s3://tidings-output/outputs/alice/{JOB}/video.mp4" in captured.err
    assert fake.users == ["alice"]
