"""What `tidings token`, `submit` and `watch` do over the network: find the stack, issue a token,
start a job over the HTTP API, and follow it over the WebSocket.

A target is either the running local stack (`.tidings/state.json`) or a deployed stack (its
CloudFormation outputs). Tokens are issued here from the stack's signing secret and are never
printed except by `tidings token`, whose job it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from tidings_core.config import DEFAULT_AUDIENCE
from tidings_core.protocol import SUBPROTOCOL, job_topic
from tidings_core.tokens import DEFAULT_ISSUER, issue_token

from . import watch_view
from .state import LocalStackState, StackNotRunning, read_state, state_path

DEFAULT_CONTENT_TYPE = "video/mp4"
UPLOAD_CHUNK_BYTES = 1024 * 1024
PING_INTERVAL_SECONDS = 60.0  # well inside API Gateway's 10-minute idle limit
MAX_RECONNECT_ATTEMPTS = 10
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 30.0


class CliError(Exception):
    """A failure the user can act on: printed as one line, no traceback, with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Target:
    """Where a stack listens and where its signing secret lives."""

    websocket_url: str
    jobs_api_url: str | None
    secret_id: str
    region: str | None
    aws_endpoint: str | None  # the local stack's embedded AWS; None means real AWS
    description: str
    issuer: str = DEFAULT_ISSUER  # the stack's `iss` (output TokenIssuer of a deployed stack)
    # the local stack's admin key for its embedded AWS (from the state file); None: real AWS
    aws_credentials: tuple[str, str] | None = None


def local_target(state: LocalStackState) -> Target:
    if not state.token_secret_id:
        raise CliError("the local stack has no token secret (TOKEN_SECRET_ARN) to sign tokens with")
    if not state.websocket_url:
        raise CliError("the local stack serves no WebSocket API (its template has none)")
    return Target(
        websocket_url=state.websocket_url,
        jobs_api_url=state.jobs_api_url,
        secret_id=state.token_secret_id,
        region=state.region,
        aws_endpoint=state.aws_endpoint,
        description=f"the local stack (pid {state.pid})",
        aws_credentials=(state.aws_access_key_id, state.aws_secret_access_key)
        if state.aws_access_key_id and state.aws_secret_access_key
        else None,
    )


def stack_target(stack_name: str, region: str | None = None, cloudformation: Any = None) -> Target:
    """A deployed stack from its outputs `WebSocketUrl`, `JobsApiUrl` and `TokenSecretArn`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = cloudformation or _boto_client("cloudformation", region)
        [stack] = client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise CliError(f"cannot read stack {stack_name}: {message}") from None
    except BotoCoreError as exc:
        raise CliError(f"cannot read stack {stack_name}: {exc}") from None
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    missing = [key for key in ("WebSocketUrl", "TokenSecretArn") if not outputs.get(key)]
    if missing:
        raise CliError(f"stack {stack_name} has no output {', '.join(missing)}: is it a Tidings stack?")
    return Target(
        websocket_url=outputs["WebSocketUrl"],
        jobs_api_url=outputs.get("JobsApiUrl"),
        secret_id=outputs["TokenSecretArn"],
        region=region or client.meta.region_name,
        aws_endpoint=None,
        description=f"stack {stack_name}",
        issuer=outputs.get("TokenIssuer") or DEFAULT_ISSUER,
    )


def resolve_target(stack: str | None, region: str | None, template: str | None = None) -> Target:
    if stack:
        return stack_target(stack, region)
    try:
        return local_target(read_state(state_path(template)))
    except StackNotRunning as exc:
        raise CliError(f"{exc}, or pass --stack NAME for a deployed stack") from None


def _boto_client(
    service: str, region: str | None, endpoint: str | None = None, credentials: tuple[str, str] | None = None
) -> Any:
    import boto3

    if endpoint is None:
        return boto3.client(service, region_name=region)  # type: ignore[call-overload]
    if credentials is None:
        raise CliError("the local stack's state file has no AWS key: restart `tidings dev`")
    key_id, secret = credentials
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=region or "us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def signing_secret(target: Target, client: Any = None) -> str:
    """The HS256 key from the target's Secrets Manager (the embedded one for the local stack)."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    where = target.aws_endpoint or "AWS"
    try:
        secrets = client or _boto_client(
            "secretsmanager", target.region, target.aws_endpoint, target.aws_credentials
        )
        value = secrets.get_secret_value(SecretId=target.secret_id).get("SecretString")
    except EndpointConnectionError:
        raise CliError(f"cannot reach {where} for the signing secret: is {target.description} up?") from None
    except NoCredentialsError:
        raise CliError("no AWS credentials: configure a profile or set AWS_PROFILE") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise CliError(f"cannot read the signing secret of {target.description}: {code}") from None
    except BotoCoreError as exc:
        raise CliError(f"cannot read the signing secret of {target.description}: {exc}") from None
    if not isinstance(value, str) or not value:
        raise CliError(f"the signing secret of {target.description} is empty or binary")
    return value


def make_token(target: Target, user_id: str, ttl_seconds: int, audience: str = DEFAULT_AUDIENCE) -> str:
    try:
        return issue_token(signing_secret(target), user_id, ttl_seconds, audience, issuer=target.issuer)
    except ValueError as exc:
        raise CliError(str(exc)) from None


# submit


def guess_content_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed if guessed and guessed.startswith("video/") else DEFAULT_CONTENT_TYPE


async def _file_chunks(path: Path, on_progress: Callable[[int], None] | None) -> AsyncIterator[bytes]:
    sent = 0
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, UPLOAD_CHUNK_BYTES):
            sent += len(chunk)
            yield chunk
            if on_progress:
                on_progress(sent)


def _error_text(status: int, body: str) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(body)["error"]
        return f"{status} {error['code']}: {error['message']}"
    return f"{status} {body.strip()[:300]}"


async def submit_job(
    jobs_api_url: str, token: str, path: Path, *, on_progress: Callable[[int, int], None] | None = None
) -> str:
    """POST /jobs, then PUT the file to the presigned URL; returns the job id.

    The body is streamed with its Content-Length (presigned S3 PUTs refuse chunked uploads).
    """
    import aiohttp

    size = (await asyncio.to_thread(path.stat)).st_size
    request = {"filename": path.name, "contentType": guess_content_type(path), "size": size}
    # no total limit (big files take long); a stalled socket still times out
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=HTTP_TIMEOUT_SECONDS, sock_read=HTTP_TIMEOUT_SECONDS
    )
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.post(
                f"{jobs_api_url.rstrip('/')}/jobs", json=request, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                body = await response.text()
                if response.status != 201:
                    raise CliError(f"POST /jobs refused: {_error_text(response.status, body)}", exit_code=1)
            try:
                created = json.loads(body)
                job_id, upload = str(created["jobId"]), created["upload"]
                url, method = str(upload["url"]), str(upload.get("method", "PUT"))
                headers = {str(k): str(v) for k, v in upload.get("headers", {}).items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                raise CliError(f"POST /jobs answered something that is not a job: {body[:300]}", 1) from None
            headers["Content-Length"] = str(size)
            report = (lambda sent: on_progress(sent, size)) if on_progress else None
            async with session.request(method, url, data=_file_chunks(path, report), headers=headers) as put:
                if put.status == 412:  # the URL signs If-None-Match: *, so S3 keeps the first upload
                    raise CliError(f"upload of job {job_id} refused: the job already has its upload", 1)
                if put.status >= 300:
                    text = await put.text()
                    raise CliError(f"upload of job {job_id} refused: {put.status} {text.strip()[:300]}", 1)
        except aiohttp.ClientError as exc:
            raise CliError(f"cannot reach the jobs API: {exc}", exit_code=1) from None
    return job_id


# watch


def backoff_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
    return (rng or random).uniform(0, ceiling)  # jitter, not security


HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


class WatchSink(Protocol):
    """Where `watch_job` reports: a terminal printer, or the `tidings.jobs` iterator."""

    def update(self, state: watch_view.WatchState, accepted: tuple[Any, ...]) -> None: ...

    def note(self, text: str) -> None: ...

    def finish(self, lines: list[str]) -> None: ...


class WatchPrinter:
    """Draws a WatchState to a stream: a redrawn block of bars on a terminal (the overall line and
    one line per segment), else one line per update.

    Hand-written ANSI (cursor up, clear line, hide/show cursor) on top of the pure renderer in
    watch_view.py: rich's progress bar would cost ~0.5 s of import and four packages for what is
    five escape sequences. `close()` always shows the cursor again (Ctrl-C included).
    """

    def __init__(self, stream: IO[str], mode: watch_view.Mode) -> None:
        self.stream = stream
        self.mode = mode
        encoding = (getattr(stream, "encoding", None) or "ascii").lower()
        self.ascii_only = "utf" not in encoding
        self._drawn = 0  # lines of the live block on screen; the cursor is at the end of the last
        self._cursor_hidden = False

    def update(self, state: watch_view.WatchState, accepted: tuple[Any, ...]) -> None:
        if self.mode == "json":
            for message in accepted:
                self.stream.write(watch_view.render_json_line(message) + "\n")
        elif self.mode == "plain":
            if accepted:
                self.stream.write(watch_view.render_plain_line(state) + "\n")
        else:
            columns, rows = _terminal_size(self.stream)
            lines = watch_view.render_tty_block(
                state, width=columns - 1, height=rows, ascii_only=self.ascii_only
            )
            if not self._cursor_hidden:
                self.stream.write(HIDE_CURSOR)
                self._cursor_hidden = True
            up = f"\x1b[{self._drawn - 1}A" if self._drawn > 1 else ""
            # back to the block's first line, redraw each line, clear what a longer block left
            self.stream.write(up + "\r" + "\x1b[K\n".join(lines) + "\x1b[K\x1b[J")
            self._drawn = len(lines)
        self.stream.flush()

    def note(self, text: str) -> None:
        """A side remark (reconnecting...), on its own line so it does not garble the bar."""
        if self.mode == "json":
            print(text, file=sys.stderr)
            return
        self._end_line()
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, lines: list[str]) -> None:
        if self.mode == "json":
            return
        self._end_line()
        for line in lines:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Leave the terminal as it was: the block ended, the cursor shown. Safe to call twice."""
        if self.mode == "json":
            return
        self._end_line()
        self.stream.flush()

    def _end_line(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self._drawn = 0
        if self._cursor_hidden:
            self.stream.write(SHOW_CURSOR)
            self._cursor_hidden = False


def _terminal_size(stream: IO[str]) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return 80, 24
    return size.columns or 80, size.lines or 24


@dataclass(frozen=True, slots=True)
class _Connection:
    """How one connection ended: the state it reached and whether it got as far as `subscribed`."""

    state: watch_view.WatchState
    subscribed: bool
    reason: str  # "ended" when the job is over, else why the connection dropped


async def watch_job(
    websocket_url: str,
    token_for_connect: Callable[[], str],
    job_id: str,
    printer: WatchSink,
    *,
    ping_interval: float = PING_INTERVAL_SECONDS,
    max_attempts: int = MAX_RECONNECT_ATTEMPTS,
) -> int:
    """Follow one job until it completes (0) or fails (1); 2 when the server refuses the watch.

    Each connection gets a fresh token (a long watch can outlive one), subscribes, and lets the
    snapshot catch up whatever happened while disconnected; the seq rule in `fold` discards
    anything already seen. An unanswered ping counts as a dropped connection.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException
    from websockets.typing import Subprotocol

    state = watch_view.WatchState(job_id)
    started = time.monotonic()
    failures = 0
    while True:
        try:
            token = token_for_connect()
            async with connect(
                websocket_url,
                subprotocols=[Subprotocol(SUBPROTOCOL), Subprotocol(token)],
                ping_interval=None,  # the application ping below keeps API Gateway's idle timer alive
                open_timeout=HTTP_TIMEOUT_SECONDS,
                max_size=256 * 1024,
            ) as socket:
                await socket.send(json.dumps({"action": "subscribe", "topic": job_topic(job_id)}))
                outcome = await _follow(socket, state, printer, ping_interval)
            state = outcome.state
            healthy = outcome.subscribed and not outcome.reason.startswith("server error")
            failures = 0 if healthy else failures + 1
            if outcome.reason != "ended":
                printer.note(f"connection lost ({outcome.reason}); reconnecting")
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                reason = "no usable token" if status == 401 else "token or origin refused"
                raise CliError(f"the server refused the connection: {status} ({reason})", 2) from None
            failures += 1
            printer.note(f"connection refused ({status}); retrying")
        except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
            failures += 1
            printer.note(f"cannot connect ({type(exc).__name__}); retrying")
        if state.exit_code is not None:
            printer.finish(watch_view.render_result(state, watched_seconds=time.monotonic() - started))
            return state.exit_code
        if failures >= max_attempts:
            raise CliError(f"gave up after {failures} failed connections to {websocket_url}", 1)
        await asyncio.sleep(backoff_delay(failures))


async def _follow(
    socket: Any, state: watch_view.WatchState, printer: WatchSink, ping_interval: float
) -> _Connection:
    """Read one connection's messages until the job ends, the socket drops or a ping goes unanswered."""
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    next_ping = loop.time() + ping_interval
    ping_id, answered, subscribed = 0, True, False
    while True:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation (Ctrl-C)
            # that meets an arriving message, and the watch would never end
            async with asyncio.timeout_at(next_ping):
                raw = await socket.recv()
        except TimeoutError:
            if not answered:
                return _Connection(state, subscribed, "ping unanswered")
            ping_id, answered = ping_id + 1, False
            with contextlib.suppress(ConnectionClosed):  # recv reports the close next
                await socket.send(json.dumps({"action": "ping", "id": ping_id}))
            next_ping = loop.time() + ping_interval
            continue
        except ConnectionClosed as exc:
            return _Connection(state, subscribed, f"closed {exc.rcvd.code if exc.rcvd else 'abruptly'}")
        try:
            message = json.loads(raw)
        except ValueError:
            continue  # the protocol only sends JSON objects; anything else is not for us
        if not isinstance(message, dict):
            continue
        kind = message.get("type")
        if kind == "pong" and message.get("id") == ping_id:
            answered = True
        folded = watch_view.fold(state, message)
        state = folded.state
        subscribed = subscribed or (kind == "subscribed" and state.subscribed)
        if folded.accepted or kind == "subscribed":
            printer.update(state, folded.accepted)
        if state.exit_code is not None:
            return _Connection(state, subscribed, "ended")
        if folded.server_error is not None:
            code, text = folded.server_error
            if code == "internal":  # the server could not read the job: subscribe again after a pause
                return _Connection(state, subscribed, "server error: internal")
            printer.note(f"server: {code}: {text}")
