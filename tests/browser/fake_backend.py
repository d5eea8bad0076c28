"""An in-process fake of the Tidings protocol, only for testing the progress view in isolation.

It speaks `tidings.v1` (docs/protocol.md) over a `websockets` server and serves the page, the
local-stack endpoints (`/_tidings/config`, `/_tidings/token`) and the upload API (`POST /api/jobs`,
`PUT /upload/{id}`, `GET /api/jobs/{id}`) from one aiohttp server. Both run on free ports in a
background thread, so synchronous Playwright tests drive it through thread-safe methods:
`publish` (store + deliver, like notify), `deliver` (send as-is, for stale or duplicate
messages), `refuse_connections`, `drop_connections`, `hold_uploads` / `release_uploads`.

The real stack is tested end to end elsewhere; this fake only has to be faithful to the
protocol the page sees.

Run it by hand to look at the page: `python tests/browser/fake_backend.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import jwt
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
SUBPROTOCOL = Subprotocol("tidings.v1")
AUDIENCE = "tidings"
USER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
TOPIC = re.compile(r"^(job|user):([A-Za-z0-9_.:@-]{1,128})$")
MAX_FRAME_BYTES = 4096

T = TypeVar("T")


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid one-colour PNG, served as the fake poster frame."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


class FakeTidings:
    """The fake backend; use as a context manager (`with FakeTidings() as backend:`)."""

    def __init__(self, web_dir: Path = WEB_DIR) -> None:
        self.web_dir = web_dir
        # A fresh signing key per run: tokens from one run are worthless in the next.
        self._secret = secrets.token_urlsafe(32)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-tidings", daemon=True)
        self._ws_server: Server | None = None
        self._http_runner: web.AppRunner | None = None
        self.http_port = 0
        self.ws_port = 0
        # Everything below is touched only on the backend's loop.
        self._latest: dict[str, dict[str, Any]] = {}  # jobId -> latest job message
        self._subscribers: dict[ServerConnection, set[str]] = {}
        self._users: dict[ServerConnection, str] = {}
        self._accepting = True
        self._answer_pings = True
        self._issue_tokens = True
        self._upload_gate = asyncio.Event()
        self._upload_gate.set()
        self._job_numbers = itertools.count(1)
        self.subscribe_calls: Counter[str] = Counter()
        self.pings = 0
        self.connections_opened = 0
        self.offered_subprotocols: list[list[str]] = []
        self.request_paths: list[str] = []
        self.created_jobs: list[dict[str, Any]] = []
        self.uploads: dict[str, bytes] = {}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeTidings:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    async def _start(self) -> None:
        self._ws_server = await serve(
            self._handle_socket,
            "127.0.0.1",
            0,
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_handshake,
            max_size=MAX_FRAME_BYTES * 4,
        )
        self.ws_port = next(iter(self._ws_server.sockets)).getsockname()[1]
        app = web.Application()
        app.router.add_get("/_tidings/config", self._config)
        app.router.add_get("/_tidings/token", self._token)
        app.router.add_post("/api/jobs", self._create_job)
        app.router.add_get("/api/jobs/{job_id}", self._get_job)
        app.router.add_put("/upload/{job_id}", self._receive_upload)
        app.router.add_get("/media/{name}", self._media)
        app.router.add_get("/", self._page)
        app.router.add_get("/{path:.+}", self._page)
        self._http_runner = web.AppRunner(app, access_log=None)
        await self._http_runner.setup()
        site = web.TCPSite(self._http_runner, "127.0.0.1", 0)
        await site.start()
        self.http_port = self._http_runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        if self._http_runner is not None:
            await self._http_runner.cleanup()

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def _run(self, action: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return action()

        return self._call(wrapper())

    # ------------------------------------------------------------------ test controls

    def token_for(self, user: str, lifetime_s: int = 3600) -> str:
        now = int(time.time())
        claims = {"sub": user, "aud": AUDIENCE, "iat": now, "exp": now + lifetime_s}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def publish(self, message: dict[str, Any]) -> int:
        """Store the message as the job's latest (when its seq is higher) and deliver it, like notify.

        Returns the number of connections it was sent to.
        """
        return self._call(self._publish(message, store=True))

    def deliver(self, message: dict[str, Any]) -> int:
        """Send the message to the job's subscribers without storing it (duplicates, stale seqs)."""
        return self._call(self._publish(message, store=False))

    def broadcast(self, message: dict[str, Any]) -> int:
        """Send any server message (an error reply, a type from a newer protocol) to every connection."""

        async def send_all() -> int:
            payload = json.dumps(message)
            for connection in list(self._users):
                with contextlib.suppress(ConnectionClosed):
                    await connection.send(payload)
            return len(self._users)

        return self._call(send_all())

    def latest(self, job_id: str) -> dict[str, Any] | None:
        return self._run(lambda: self._latest.get(job_id))

    def subscribe_count(self, topic: str) -> int:
        return self._run(lambda: self.subscribe_calls[topic])

    def open_connections(self) -> int:
        return self._run(lambda: len(self._users))

    def refuse_connections(self, refuse: bool = True) -> None:
        """While refusing, every handshake is answered 503, so the page keeps reconnecting."""

        def change() -> None:
            self._accepting = not refuse

        self._run(change)

    def answer_pings(self, answer: bool) -> None:
        """With False, pings go unanswered, like a connection that died without closing."""

        def change() -> None:
            self._answer_pings = answer

        self._run(change)

    def issue_tokens(self, issue: bool) -> None:
        """With False, GET /_tidings/token answers 503, like a local stack that is restarting."""

        def change() -> None:
            self._issue_tokens = issue

        self._run(change)

    def drop_connections(self) -> int:
        """Cut every open connection without a close frame, as a network failure would."""

        def drop() -> int:
            for connection in list(self._users):
                connection.transport.abort()
            return len(self._users)

        return self._run(drop)

    def hold_uploads(self) -> None:
        """Uploads are read but not answered until `release_uploads`."""
        self._run(self._upload_gate.clear)

    def release_uploads(self) -> None:
        self._run(self._upload_gate.set)

    # ------------------------------------------------------------------ WebSocket side

    def _verify(self, token: str) -> str | None:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                options={"require": ["sub", "exp", "iat", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) and USER_ID.match(sub) else None

    @staticmethod
    def _offered(headers: Headers) -> list[str]:
        return [
            part.strip()
            for value in headers.get_all("Sec-WebSocket-Protocol")
            for part in value.split(",")
            if part.strip()
        ]

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self._accepting:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "not accepting connections\n")
        offered = self._offered(request.headers)
        self.offered_subprotocols.append(offered)
        if "?" in request.path:
            self.request_paths.append(request.path)
        tokens = [value for value in offered if value != SUBPROTOCOL]
        if SUBPROTOCOL not in offered or not tokens:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "no token\n")
        if self._verify(tokens[0]) is None:
            return connection.respond(HTTPStatus.FORBIDDEN, "forbidden\n")
        return None

    def _select_subprotocol(
        self, connection: ServerConnection, subprotocols: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        # Answer only `tidings.v1`, never echo the token back.
        return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    async def _handle_socket(self, connection: ServerConnection) -> None:
        offered = self._offered(connection.request.headers) if connection.request else []
        user = next(u for u in (self._verify(v) for v in offered if v != SUBPROTOCOL) if u)
        self._users[connection] = user
        self._subscribers[connection] = set()
        self.connections_opened += 1
        try:
            async for frame in connection:
                await self._handle_frame(connection, user, frame)
        except ConnectionClosed:
            pass
        finally:
            self._users.pop(connection, None)
            self._subscribers.pop(connection, None)

    async def _handle_frame(self, connection: ServerConnection, user: str, frame: str | bytes) -> None:
        async def reply(message: dict[str, Any]) -> None:
            await connection.send(json.dumps(message))

        if len(frame) > MAX_FRAME_BYTES:
            await reply({"type": "error", "code": "too_large", "message": "the frame is over 4096 bytes"})
            return
        try:
            request = json.loads(frame)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            await reply({"type": "error", "code": "bad_json", "message": "the frame is not a JSON object"})
            return
        action = request.get("action")
        if action == "ping":
            self.pings += 1
            if not self._answer_pings:
                return
            pong: dict[str, Any] = {"type": "pong", "serverTime": int(time.time() * 1000)}
            if "id" in request:
                pong["id"] = request["id"]
            await reply(pong)
            return
        if action not in {"subscribe", "unsubscribe"}:
            await reply({"type": "error", "code": "unknown_action", "message": f"unknown action {action!r}"})
            return
        topic = request.get("topic")
        match = TOPIC.match(topic) if isinstance(topic, str) else None
        if match is None:
            await reply({"type": "error", "code": "bad_topic", "message": "expected job:<id> or user:<id>"})
            return
        kind, ident = match.groups()
        owner = ident if kind == "user" else self._latest.get(ident, {}).get("userId")
        if kind == "job" and owner is None:
            await reply({"type": "error", "code": "not_found", "message": f"{topic} does not exist"})
            return
        if owner != user:
            await reply({"type": "error", "code": "forbidden", "message": f"{topic} belongs to another user"})
            return
        assert isinstance(topic, str)
        if action == "unsubscribe":
            self._subscribers[connection].discard(topic)
            await reply({"type": "unsubscribed", "topic": topic})
            return
        self.subscribe_calls[topic] += 1
        self._subscribers[connection].add(topic)
        await reply({"type": "subscribed", "topic": topic})
        if kind == "user":
            jobs = [m for m in self._latest.values() if m.get("userId") == user]
            jobs.sort(key=lambda m: m.get("emittedAt", 0), reverse=True)
            jobs = jobs[:50]
        else:
            jobs = [self._latest[ident]]
        await reply({"type": "snapshot", "topic": topic, "jobs": jobs})

    async def _publish(self, message: dict[str, Any], *, store: bool) -> int:
        job_id = message["jobId"]
        if store:
            known = self._latest.get(job_id)
            if known is not None and known["seq"] >= message["seq"]:
                return 0
            self._latest[job_id] = message
        topics = {f"job:{job_id}", f"user:{message['userId']}"}
        payload = json.dumps({**message, "sentAt": int(time.time() * 1000)})
        sent = 0
        for connection, subscribed in list(self._subscribers.items()):
            if subscribed & topics:
                try:
                    await connection.send(payload)
                    sent += 1
                except ConnectionClosed:
                    pass
        return sent

    # ------------------------------------------------------------------ HTTP side

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response({"websocketUrl": self.ws_url, "apiUrl": self.api_url})

    async def _token(self, request: web.Request) -> web.Response:
        if not self._issue_tokens:
            return web.json_response({"message": "the stack is restarting"}, status=503)
        user = request.query.get("user", "")
        if not USER_ID.match(user):
            return web.json_response({"message": "user must be 1-128 of A-Z a-z 0-9 _ . : @ -"}, status=400)
        return web.json_response({"token": self.token_for(user)})

    def _caller(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self._verify(token) if scheme == "Bearer" else None

    async def _create_job(self, request: web.Request) -> web.Response:
        user = self._caller(request)
        if user is None:
            return web.json_response({"message": "missing or invalid bearer token"}, status=401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("filename"), str)
            or not isinstance(body.get("contentType"), str)
            or not isinstance(body.get("size"), int)
        ):
            return web.json_response({"message": "expected {filename, contentType, size}"}, status=400)
        job_id = f"job-{next(self._job_numbers)}"
        self.created_jobs.append({"jobId": job_id, "userId": user, **body})
        # Like registry.create_job: the job exists at seq 0 ("queued") before any event.
        self._latest[job_id] = {
            "type": "progress",
            "jobId": job_id,
            "userId": user,
            "seq": 0,
            "stage": "queued",
            "percent": 0,
            "emittedAt": int(time.time() * 1000),
            "input": {"bucket": "uploads", "key": f"{user}/{job_id}/{body['filename']}"},
        }
        upload = {"url": f"{self.base_url}/upload/{job_id}", "method": "PUT", "headers": {}}
        return web.json_response({"jobId": job_id, "upload": upload}, status=201)

    async def _receive_upload(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        if not any(job["jobId"] == job_id for job in self.created_jobs):
            return web.Response(status=404, text="no such upload")
        self.uploads[job_id] = await request.read()
        await self._upload_gate.wait()
        return web.Response(status=200)

    async def _get_job(self, request: web.Request) -> web.Response:
        user = self._caller(request)
        if user is None:
            return web.json_response({"message": "missing or invalid bearer token"}, status=401)
        job = self._latest.get(request.match_info["job_id"])
        if job is None:
            return web.json_response({"message": "no such job"}, status=404)
        if job["userId"] != user:
            return web.json_response({"message": "not your job"}, status=403)
        body = dict(job)
        if job["stage"] == "completed" and isinstance(job.get("output"), dict):
            body["output"] = {
                **job["output"],
                "url": f"{self.base_url}/media/{job['jobId']}.mp4",
                "posterUrl": f"{self.base_url}/media/{job['jobId']}.png",
            }
        return web.json_response(body)

    async def _media(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name.endswith(".png"):
            return web.Response(body=solid_png(320, 180, (37, 99, 235)), content_type="image/png")
        # No real video: the page's <video> element only needs a URL to point at.
        return web.Response(status=404, text="no video in the fake backend")

    async def _page(self, request: web.Request) -> web.StreamResponse:
        relative = request.match_info.get("path", "") or "index.html"
        path = (self.web_dir / relative).resolve()
        if not path.is_file() or not path.is_relative_to(self.web_dir.resolve()):
            return web.Response(status=404, text="not found")
        return web.FileResponse(path, headers={"Cache-Control": "no-store"})


def main() -> None:
    with FakeTidings() as backend:
        print(f"progress view: {backend.base_url}/?user=alice  (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()


__all__ = ["FakeTidings", "solid_png"]
