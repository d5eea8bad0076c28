"""The only module that calls the API Gateway Management API: concurrent posts, Gone, 429 retries.

Posts go through `ManagementApi`, a lean `post_to_connection`: each POST is signed with SigV4
(`SigV4Signer`) and sent on one of a few keep-alive HTTP/1.1 connections, all driven by one
asyncio event loop per process (`event_loop()`), with responses parsed by httptools (llhttp, in
C). Under the GIL the CPU per post, not the network, caps a fan-out: a full botocore client
spends 1.5-2.8 ms of CPU per call in its machinery, botocore's `SigV4Auth` on 32 urllib3
threads about 0.7-0.8 ms (a third of it thread switching), this path about 0.05-0.1 ms
(docs/benchmarks.md, `python -m bench.poster_cost`). Retries of 429 are done here, a 410 is
reported at once, and a failing post never stops the others; the caller deletes what is Gone.

Throttling (429) is answered by sending less, not by sleeping long: `SendWindow` caps the posts
in flight and adapts the cap as TCP does (AIMD): halved by a 429 (at most once per round of
posts, so one burst of 429s counts once), grown by one per round of answered posts. Every
invocation posting into one account's throttle (10,000 RPS by default) thus settles near its
share of it, and a throttled post is retried after a short jittered pause (at most
`MAX_DELAY_S`) instead of an exponential wait that would hold up its page and, behind it, the
whole sweep. Before that, each sender paces itself (`Pacer`) to its share of the account's
throttle: the shards of one job's layout split the configured rate and burst
(`MANAGEMENT_API_RPS`, `MANAGEMENT_API_BURST`: API Gateway's account defaults unless raised)
evenly, so they do not fight over it with 429s, and each shard's sweep runs at the same pace
(bench/aws_model.py: with 429s deciding the split, some shards fell behind for a whole sweep).
Window and pacer are pure (no clock, no threads); `Pusher` drives them on the event loop's one
thread and bench/aws_model.py drives the same classes on its virtual clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import hashlib
import hmac
import inspect
import logging
import os
import random
import re
import select
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from botocore.credentials import Credentials

logger = logging.getLogger(__name__)

MAX_WORKERS = 32  # posts in flight at most (the window's ceiling), and connections per endpoint
MAX_ATTEMPTS = 5  # 1 post + 4 retries on 429
BASE_DELAY_S = 0.05
MAX_DELAY_S = 0.2  # the window, not the pause, paces a throttled Pusher (SendWindow)
WINDOW_DECREASE = 0.5  # a 429 halves the posts in flight (AIMD)
ACCOUNT_RPS = 10_000.0  # API Gateway's default account throttle (steady rate, requests per second)
ACCOUNT_BURST = 5_000.0  # and its default burst
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
CONNECT_ATTEMPTS = 3  # a connection that could not be made is retried: the post cannot have arrived
ERROR_BODY_BYTES = 200  # of an error answer's body, kept for its message
IDLE_CHECK_S = 1.0  # a connection idle longer than this is checked for a close before reuse
SERVICE = "execute-api"
_GONE = {"GoneException", "410"}
_THROTTLED = {"LimitExceededException", "TooManyRequestsException", "429"}
_TOO_LARGE = {"PayloadTooLargeException", "413"}
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}

T = TypeVar("T")


class Outcome(Enum):
    DELIVERED = "delivered"
    GONE = "gone"  # the connection is closed: delete its rows
    TOO_LARGE = "too_large"
    FAILED = "failed"  # anything else, including 429 after the last attempt


@dataclass(frozen=True, slots=True)
class PostResult:
    connection_id: str
    outcome: Outcome
    throttled: int = 0  # how many 429s this post met
    error: str | None = None


def retry_delay(attempt: int, jitter: Callable[[float, float], float]) -> float:
    """Full-jitter exponential pause before retry number `attempt` (1-based) of a throttled post."""
    return jitter(0.0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt))


class SendWindow:
    """How many posts may be in flight: additive increase, multiplicative decrease on 429.

    `sent()` returns a ticket for `answered()`. A 429 shrinks the window only when its post was
    sent after the last shrink: the posts already in flight then were sent into the same
    congestion, and their 429s say nothing new. Each answered post that was not throttled grows
    the window by 1/window, about one post more per round. The caller waits while `full()`.
    """

    def __init__(
        self, ceiling: int = MAX_WORKERS, *, floor: int = 1, decrease: float = WINDOW_DECREASE
    ) -> None:
        if not 1 <= floor <= ceiling or not 0 < decrease < 1:
            raise ValueError("need 1 <= floor <= ceiling and 0 < decrease < 1")
        self.ceiling, self.floor, self.decrease = ceiling, floor, decrease
        self.limit = float(ceiling)
        self.in_flight = 0
        self.shrinks = 0  # how many times a 429 shrank the window (the tickets' epoch)

    @property
    def size(self) -> int:
        return max(self.floor, int(self.limit))

    def full(self) -> bool:
        return self.in_flight >= self.size

    def sent(self) -> int:
        self.in_flight += 1
        return self.shrinks

    def answered(self, ticket: int, *, throttled: bool) -> None:
        self.in_flight -= 1
        if not throttled:
            self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
        elif ticket == self.shrinks:
            self.limit = max(float(self.floor), self.limit * self.decrease)
            self.shrinks += 1


class Pacer:
    """A token bucket on the caller's clock: one sender's share of the account's throttle.

    `reserve(now)` takes a token and says how long to wait before sending; reservations queue
    (the tokens go below zero), so concurrent senders are spaced out rather than all waking at once.
    """

    def __init__(self, rate: float, burst: float, now: float, *, share: int = 1) -> None:
        if rate <= 0 or share < 1:
            raise ValueError("the rate must be positive and the share at least 1")
        self.share = share
        self.rate = rate / share
        self.burst = max(1.0, burst / share)
        self.tokens = self.burst
        self.when = now

    def reserve(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.when) * self.rate)
        self.when = max(self.when, now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def shared(self, share: int, now: float) -> Pacer:
        """This pacer for a sender that is one of `share` (itself while the share is the same)."""
        if share == self.share:
            return self
        return Pacer(self.rate * self.share, self.burst * self.share, now, share=share)


class ManagementClient(Protocol):
    """What `Pusher` needs: botocore's `post_to_connection` shape, errors raised as `ClientError`."""

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> Any: ...


@runtime_checkable
class AsyncManagementClient(Protocol):
    """A client whose posts run on `event_loop()` (ManagementApi): `Pusher` awaits them there
    instead of giving each a thread. Errors are raised as `ClientError`, as by the sync shape."""

    async def post_async(self, connection_id: str, data: bytes) -> None: ...


def _response(exc: BaseException) -> dict[str, Any]:
    response: Any = getattr(exc, "response", None)
    return response if isinstance(response, dict) else {}


def error_code(exc: BaseException) -> str:
    """The service error code of a botocore ClientError ("" for anything else)."""
    response = _response(exc)
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(code or status or "")


def error_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError (None for anything else)."""
    status = _response(exc).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def region_of(endpoint_url: str, default: str | None = None) -> str:
    """The signing region: from an `{api}.execute-api.{region}.amazonaws.com` host, else the runtime's."""
    host = urlsplit(endpoint_url).hostname or ""
    if match := _REGION_IN_HOST.search(host):
        return match.group(1)
    return default or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


# --------------------------------------------------------------------------- the event loop
class _LoopThread:
    """An asyncio loop running forever on a daemon thread; `run` waits for a coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tidings-push", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise RuntimeError("push's event loop cannot wait for itself")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


@functools.cache
def event_loop() -> _LoopThread:
    """The process's one posting loop (started on first use, like the worker threads before it):
    every `ManagementApi` keeps its connections on it and every `Pusher` runs its posts there."""
    return _LoopThread()


# --------------------------------------------------------------------------- SigV4
class SigV4Signer:
    """SigV4 for `POST {path}` with a body (the management API's one request shape).

    Written out rather than botocore's `SigV4Auth` + `AWSRequest` per post: those parse the URL,
    build header objects and derive the signing key on every request, 69 µs against about
    11 µs here (bench/poster_cost.py). The signing key (four HMACs) is derived once per day, as
    AWS suggests; the canonical request is botocore's for this shape: the path URI-encoded again
    (non-S3 services sign the encoded path), no query, `host;x-amz-date[;x-amz-security-token]`
    signed, the body's SHA-256. tests/unit/core/test_push_http.py checks it equal to the SDK's.
    """

    def __init__(self, access_key: str, secret_key: str, token: str | None, region: str) -> None:
        self.access_key, self.secret_key, self.token, self.region = access_key, secret_key, token, region
        self._day = ""
        self._key = b""
        self._scope = ""
        self._signed = "host;x-amz-date;x-amz-security-token" if token else "host;x-amz-date"

    def _key_for(self, day: str) -> bytes:
        if day != self._day:
            key = f"AWS4{self.secret_key}".encode()
            for part in (day, self.region, SERVICE, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._key, self._scope, self._day = key, f"{day}/{self.region}/{SERVICE}/aws4_request", day
        return self._key

    def headers(self, host: str, path: str, body: bytes, now: datetime.datetime) -> list[tuple[str, str]]:
        """The headers to add to `POST {path}` on `host` (the Host header's value) at `now` (UTC)."""
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        key = self._key_for(stamp[:8])
        token = f"x-amz-security-token:{self.token}\n" if self.token else ""
        canonical = (
            f"POST\n{quote(path, safe='/~')}\n\nhost:{host}\nx-amz-date:{stamp}\n{token}\n"
            f"{self._signed}\n{hashlib.sha256(body).hexdigest()}"
        )
        to_sign = (
            f"AWS4-HMAC-SHA256\n{stamp}\n{self._scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers = [
            ("X-Amz-Date", stamp),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={self.access_key}/{self._scope}, "
                f"SignedHeaders={self._signed}, Signature={signature}",
            ),
        ]
        if self.token:
            headers.append(("X-Amz-Security-Token", self.token))
        return headers


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --------------------------------------------------------------------------- HTTP/1.1
@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    error_type: str
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time; httptools parses the answers."""

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[_Answer] | None = None
        self._error_type = b""
        self._body = b""
        self.open = False
        self.reusable = False
        self.idle_since = 0.0  # loop time it went back to the pool

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.open = True

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # httptools.HttpParserError: not HTTP, or not what was asked
            self._fail(ConnectionError(f"bad answer from the management API: {exc}"))

    def eof_received(self) -> bool | None:
        return False  # close the transport: connection_lost fails a request still waiting

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"connection closed before the answer ({exc})"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-amzn-errortype":
            self._error_type = value

    def on_body(self, body: bytes) -> None:
        if len(self._body) < ERROR_BODY_BYTES:
            self._body += body[: ERROR_BODY_BYTES - len(self._body)]

    def on_message_complete(self) -> None:
        waiter = self._waiter
        self.reusable = self.open and bool(self._parser.should_keep_alive())
        if waiter is not None and not waiter.done():
            status = int(self._parser.get_status_code())
            waiter.set_result(_Answer(status, self._error_type.decode("latin-1"), self._body))

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    async def request(self, head: bytes, body: bytes, timeout_s: float) -> _Answer:
        assert self._transport is not None
        self._error_type = self._body = b""
        self.reusable = False
        waiter: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._transport.write(head + body)
        timer = waiter.get_loop().call_later(timeout_s, self._timed_out, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _timed_out(self, waiter: asyncio.Future[_Answer]) -> None:
        if not waiter.done():
            self._fail(TimeoutError("no answer from the management API in time"))

    def dropped(self) -> bool:
        """Whether the peer closed it while it sat idle (its socket reads as ready: EOF, or bytes
        nobody asked for), as urllib3 checks before reusing a pooled connection. The loop may not
        have seen that EOF yet: after a Lambda environment is thawed, its first post runs before
        the loop's next look at the sockets."""
        if not self.open or self._transport is None:
            return True
        sock = self._transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()


class ManagementApi:
    """`post_to_connection` as one SigV4-signed POST on a few keep-alive connections.

    Its connections live on `event_loop()`: `post_async` runs there (what `Pusher` awaits);
    `post_to_connection` is the same post for a caller on any other thread. Answers other than
    2xx raise botocore's `ClientError` with the status and the `x-amzn-ErrorType` code, the same
    shape the botocore client raises, so `Pusher` treats both alike. Credentials come from
    botocore's provider chain and are re-read when they rotate. HTTPS is verified against
    the `ca_bundle` given (`from_environment`: botocore's setting, AWS_CA_BUNDLE), else botocore's
    own bundle.
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        credentials: Credentials,
        region: str,
        max_connections: int = MAX_WORKERS,
        ca_bundle: str | None = None,
        now: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        parts = urlsplit(self.endpoint_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url!r}")
        self._address = (parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])
        # the Host header as botocore sends and signs it: the port only when it is not the default
        self.host = parts.netloc.rpartition("@")[2]
        if parts.port == _DEFAULT_PORTS[parts.scheme]:
            self.host = self.host.rsplit(":", 1)[0]
        # HTTPS is verified against `ca_bundle` (botocore's `ca_bundle` setting: AWS_CA_BUNDLE or
        # the config file), else botocore's own bundle, as a botocore client would
        self._ssl = _tls_context(ca_bundle) if parts.scheme == "https" else None
        self._path = f"{parts.path}/@connections/"
        self.region = region
        self._credentials = credentials
        self._signer: tuple[Any, SigV4Signer] | None = None
        self._now = now
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)  # bound to the loop that first waits on it
        self.max_connections = max_connections
        self._loop = event_loop()

    @classmethod
    def from_environment(cls, endpoint_url: str, max_connections: int = MAX_WORKERS) -> ManagementApi:
        """Credentials and region as the Lambda runtime provides them (botocore's default chain)."""
        import botocore.session  # lazy and without boto3: less import time on cold start

        session = botocore.session.get_session()
        credentials = session.get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials to sign @connections posts with")
        region = region_of(endpoint_url, session.get_config_variable("region"))
        return cls(
            endpoint_url,
            credentials=credentials,
            region=region,
            max_connections=max_connections,
            ca_bundle=session.get_config_variable("ca_bundle"),
        )

    def url(self, connection_id: str) -> str:
        return f"{self.endpoint_url}/@connections/{_quoted_id(connection_id)}"

    def path(self, connection_id: str) -> str:
        return f"{self._path}{_quoted_id(connection_id)}"

    def _sigv4(self) -> SigV4Signer:
        """One signer per set of credentials; a rotation (refreshable credentials) makes a new one."""
        frozen = self._credentials.get_frozen_credentials()
        signer = self._signer
        if signer is None or signer[0] != frozen:
            signer = (
                frozen,
                SigV4Signer(frozen.access_key or "", frozen.secret_key or "", frozen.token, self.region),
            )
            self._signer = signer
        return signer[1]

    def _request_head(self, connection_id: str, data: bytes) -> bytes:
        path = self.path(connection_id)
        headers = self._sigv4().headers(self.host, path, data, self._now())
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        return (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(data)}\r\n{lines}\r\n"
        ).encode()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        failure: BaseException | None = None
        for _ in range(CONNECT_ATTEMPTS):
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(
                        _Connection,
                        *self._address,
                        ssl=self._ssl,
                        server_hostname=self._address[0] if self._ssl is not None else None,
                    ),
                    CONNECT_TIMEOUT_S,
                )
                return connection
            except (OSError, TimeoutError) as exc:
                failure = exc
        raise ConnectionError(f"cannot connect to {self.endpoint_url}: {failure}")

    async def post_async(self, connection_id: str, data: bytes) -> None:
        """One post, on `event_loop()`; at most `max_connections` at once."""
        head = self._request_head(connection_id, data)
        async with self._slots:
            connection = None
            now = asyncio.get_running_loop().time()
            while self._idle and connection is None:
                candidate = self._idle.pop()
                # a connection idle for a while (a thawed environment, a pause between events) is
                # checked before it is trusted with a post; one in constant use is not
                if candidate.open and (now - candidate.idle_since < IDLE_CHECK_S or not candidate.dropped()):
                    connection = candidate
                else:
                    candidate.close()
            if connection is None:
                connection = await self._connect()
            try:
                answer = await connection.request(head, data, READ_TIMEOUT_S)
            except BaseException:
                connection.close()
                raise
            if connection.reusable:
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.append(connection)
            else:
                connection.close()
        if not 200 <= answer.status < 300:
            raise _client_error(answer)

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        self._loop.run(self.post_async(ConnectionId, Data))
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}

    def close(self) -> None:
        async def close_all() -> None:
            for connection in self._idle:
                connection.close()
            self._idle.clear()

        self._loop.run(close_all())


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    if not ca_bundle:
        from botocore.httpsession import get_cert_path

        ca_bundle = get_cert_path(True)
    return ssl.create_default_context(cafile=ca_bundle)


def _quoted_id(connection_id: str) -> str:
    quoted = quote(connection_id, safe="")
    # "." and ".." would be dot segments of the path, removed before signing and routing
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _client_error(answer: _Answer) -> Exception:
    from botocore.exceptions import ClientError

    error: Any = {  # the parts of botocore's parsed error that `error_code`/`error_status` read
        "Error": {
            "Code": answer.error_type.split(":", 1)[0] or str(answer.status),
            "Message": answer.body.decode(errors="replace"),
        },
        "ResponseMetadata": {"HTTPStatusCode": answer.status},
    }
    return ClientError(error, "PostToConnection")


# --------------------------------------------------------------------------- Pusher
class Pusher:
    """Posts bytes to connections; `sleep` and `jitter` are injectable so tests need no waiting.

    The posts run on `event_loop()`: at most `window.size` in flight (`max_workers` until a 429
    shrinks it), fewer for a smaller page. An `AsyncManagementClient` (ManagementApi) is awaited
    on the loop itself, so 32 posts in flight cost no thread each; any other client (a boto3
    client, a test's fake) is called on a pool of `max_workers` threads that lives as long as the
    Pusher. The window and pacer also live as long as the Pusher (one per container). `sleep` may
    return an awaitable (the default, asyncio's) or None (a test's recorder).
    """

    def __init__(
        self,
        client: ManagementClient | AsyncManagementClient,
        *,
        max_workers: int = MAX_WORKERS,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], Awaitable[None] | None] = asyncio.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
        clock: Callable[[], float] = time.monotonic,
        rate: float = ACCOUNT_RPS,
        burst: float = ACCOUNT_BURST,
    ) -> None:
        self.client = client
        self.max_workers = max_workers
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self.window = SendWindow(max_workers)
        self.pacer = Pacer(rate, burst, clock())
        self._loop = event_loop()
        self._window_changed: asyncio.Condition | None = None  # made on the loop
        self._waiting = 0  # posters waiting for room in the window
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def backoff(self, attempt: int) -> float:
        """The pause before retry number `attempt` (1-based) of a throttled post."""
        return retry_delay(attempt, self._jitter)

    def pace(self, share: int) -> None:
        """Post at most 1/`share` of the account's rate and burst (one shard of `share`)."""

        async def change() -> None:
            self.pacer = self.pacer.shared(share, self._clock())

        self._loop.run(change())

    async def _pause(self, seconds: float) -> None:
        paused = self._sleep(seconds)
        if inspect.isawaitable(paused):
            await paused

    def _condition(self) -> asyncio.Condition:
        if self._window_changed is None:
            self._window_changed = asyncio.Condition()
        return self._window_changed

    async def _send(self) -> int:
        if self.window.full():
            changed = self._condition()
            async with changed:
                self._waiting += 1
                try:
                    await changed.wait_for(lambda: not self.window.full())
                finally:
                    self._waiting -= 1
        ticket = self.window.sent()
        wait = self.pacer.reserve(self._clock())
        if wait > 0:
            await self._pause(wait)
        return ticket

    async def _answered(self, ticket: int, *, throttled: bool) -> None:
        self.window.answered(ticket, throttled=throttled)
        if self._waiting:  # nobody waits unless a 429 shrank the window below the posters
            changed = self._condition()
            async with changed:
                changed.notify_all()

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.max_workers, thread_name_prefix="tidings-push"
                )
            return self._executor

    async def _call(self, connection_id: str, data: bytes) -> None:
        client = self.client
        if isinstance(client, AsyncManagementClient):
            await client.post_async(connection_id, data)
            return
        call = functools.partial(client.post_to_connection, ConnectionId=connection_id, Data=data)
        await asyncio.get_running_loop().run_in_executor(self._threads(), call)

    async def _attempt(self, connection_id: str, data: bytes) -> BaseException | None:
        """One POST inside the window; the exception it raised, None when delivered."""
        ticket = await self._send()
        failure: BaseException | None = None
        try:
            await self._call(connection_id, data)
        except Exception as exc:  # one failing post must never stop the fan-out
            failure = exc
        status = error_status(failure) if failure is not None else None
        code = error_code(failure) if failure is not None else ""
        await self._answered(ticket, throttled=status == 429 or code in _THROTTLED)
        return failure

    async def _post(self, connection_id: str, data: bytes) -> PostResult:
        throttled = 0
        while True:
            exc = await self._attempt(connection_id, data)
            if exc is None:
                return PostResult(connection_id, Outcome.DELIVERED, throttled)
            code = error_code(exc) or type(exc).__name__
            status = error_status(exc)
            # the status decides where there is one: a bare 410 is as Gone as a typed one
            if status == 410 or code in _GONE:
                return PostResult(connection_id, Outcome.GONE, throttled, code)
            if status == 413 or code in _TOO_LARGE:
                logger.warning("too large", extra={"connection_id": connection_id, "n": len(data)})
                return PostResult(connection_id, Outcome.TOO_LARGE, throttled, code)
            if status == 429 or code in _THROTTLED:
                throttled += 1
                if throttled < self.max_attempts:
                    await self._pause(self.backoff(throttled))
                    continue
            logger.warning("post failed", extra={"connection_id": connection_id, "code": code})
            return PostResult(connection_id, Outcome.FAILED, throttled, code)

    async def _post_all(self, ids: list[str], data: bytes) -> list[PostResult]:
        """`max_workers` posters take the ids in order; the window decides how many are in flight."""
        results: list[PostResult | None] = [None] * len(ids)
        upcoming = iter(range(len(ids)))

        async def poster() -> None:
            for index in upcoming:
                results[index] = await self._post(ids[index], data)

        await asyncio.gather(*(poster() for _ in range(min(self.max_workers, len(ids)))))
        return [result for result in results if result is not None]

    def post(self, connection_id: str, data: bytes) -> PostResult:
        return self._loop.run(self._post(connection_id, data))

    def post_many(self, connection_ids: Iterable[str], data: bytes) -> list[PostResult]:
        """Post the same `data` bytes to every id concurrently (bounded); results in input order."""
        ids = list(connection_ids)
        if not ids:
            return []
        return self._loop.run(self._post_all(ids, data))

    def close(self) -> None:
        """Stop the worker threads of a sync client (they also end with the process)."""
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


@functools.cache
def _default_pusher(endpoint_url: str, rate: float, burst: float) -> Pusher:
    api = ManagementApi.from_environment(endpoint_url, max_connections=MAX_WORKERS)
    return Pusher(api, rate=rate, burst=burst)


def pusher() -> Pusher:
    """The container's Pusher for the configured CALLBACK_URL and account throttle."""
    from .config import settings

    configured = settings()
    return _default_pusher(
        configured.require("callback_url"), configured.management_api_rps, configured.management_api_burst
    )
