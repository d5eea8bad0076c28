"""The only module that calls the API Gateway Management API: concurrent posts, Gone, 429 retries.

Posts go through `ManagementApi`, a lean `post_to_connection`: each POST is signed with
botocore's `SigV4Auth` and sent on one shared keep-alive urllib3 pool. A full botocore client
spends 1.5-2.8 ms of CPU per call in its machinery (parameter validation, serialization, event
hooks, endpoint resolution, retry handlers); under the GIL that CPU, not the network, caps a
fan-out, and the lean path needs about a third of it (docs/benchmarks.md). Retries of 429 are
done here, a 410 is reported at once, and a failing post never stops the others; the caller
deletes what is Gone.

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
Window and pacer are pure (no clock, no threads); `Pusher` guards them with a lock and
bench/aws_model.py drives the same classes on its virtual clock.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    import urllib3
    from botocore.auth import SigV4Auth
    from botocore.credentials import Credentials, ReadOnlyCredentials

logger = logging.getLogger(__name__)

MAX_WORKERS = 32
MAX_ATTEMPTS = 5  # 1 post + 4 retries on 429
BASE_DELAY_S = 0.05
MAX_DELAY_S = 0.2  # the window, not the pause, paces a throttled Pusher (SendWindow)
WINDOW_DECREASE = 0.5  # a 429 halves the posts in flight (AIMD)
ACCOUNT_RPS = 10_000.0  # API Gateway's default account throttle (steady rate, requests per second)
ACCOUNT_BURST = 5_000.0  # and its default burst
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
SERVICE = "execute-api"
_GONE = {"GoneException", "410"}
_THROTTLED = {"LimitExceededException", "TooManyRequestsException", "429"}
_TOO_LARGE = {"PayloadTooLargeException", "413"}
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


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


class ManagementApi:
    """`post_to_connection` as one SigV4-signed POST on a shared keep-alive pool (thread-safe).

    Answers other than 2xx raise botocore's `ClientError` with the status and the
    `x-amzn-ErrorType` code, the same shape the botocore client raises, so `Pusher` treats both
    alike. Credentials come from botocore's provider chain and are re-read when they rotate.
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        credentials: Credentials,
        region: str,
        max_connections: int = MAX_WORKERS,
        pool: urllib3.HTTPConnectionPool | None = None,
    ) -> None:
        import urllib3
        from botocore.httpsession import get_cert_path

        self.endpoint_url = endpoint_url.rstrip("/")
        self._path = f"{urlsplit(self.endpoint_url).path}/@connections/"
        self.region = region
        self._credentials = credentials
        self._signer: tuple[ReadOnlyCredentials, SigV4Auth] | None = None
        self._lock = threading.Lock()
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)
        # retries only where the request cannot have reached the service (connect errors)
        retries = urllib3.Retry(total=2, connect=2, read=0, redirect=0, status=0)
        options: dict[str, Any] = {"maxsize": max_connections, "block": True}
        if self.endpoint_url.startswith("https:"):
            options.update(cert_reqs="CERT_REQUIRED", ca_certs=get_cert_path(True))
        self._pool = pool or urllib3.connection_from_url(
            self.endpoint_url, timeout=timeout, retries=retries, **options
        )

    @classmethod
    def from_environment(cls, endpoint_url: str, max_connections: int = MAX_WORKERS) -> ManagementApi:
        """Credentials and region as the Lambda runtime provides them (botocore's default chain)."""
        import botocore.session  # lazy and without boto3: less import time on cold start

        session = botocore.session.get_session()
        credentials = session.get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials to sign @connections posts with")
        region = region_of(endpoint_url, session.get_config_variable("region"))
        return cls(endpoint_url, credentials=credentials, region=region, max_connections=max_connections)

    def url(self, connection_id: str) -> str:
        return f"{self.endpoint_url}/@connections/{quote(connection_id, safe='')}"

    def path(self, connection_id: str) -> str:
        return f"{self._path}{quote(connection_id, safe='')}"

    def _sigv4(self) -> SigV4Auth:
        """One signer per set of credentials; a rotation (refreshable credentials) makes a new one."""
        frozen = self._credentials.get_frozen_credentials()
        signer = self._signer
        if signer is None or signer[0] != frozen:
            from botocore.auth import SigV4Auth

            with self._lock:
                signer = (frozen, SigV4Auth(frozen, SERVICE, self.region))
                self._signer = signer
        return signer[1]

    def signed_headers(self, url: str, data: bytes) -> dict[str, str]:
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=url, data=data)
        self._sigv4().add_auth(request)
        return dict(request.headers.items())

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        headers = self.signed_headers(self.url(ConnectionId), Data)
        response = self._pool.urlopen(
            "POST", self.path(ConnectionId), body=Data, headers=headers, preload_content=True
        )
        status = response.status
        if 200 <= status < 300:
            return {"ResponseMetadata": {"HTTPStatusCode": status}}
        from botocore.exceptions import ClientError

        error_type = (response.headers.get("x-amzn-ErrorType") or "").split(":", 1)[0]
        error: Any = {  # the parts of botocore's parsed error that `error_code`/`error_status` read
            "Error": {
                "Code": error_type or str(status),
                "Message": response.data[:200].decode(errors="replace"),
            },
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        raise ClientError(error, "PostToConnection")

    def close(self) -> None:
        self._pool.close()


class Pusher:
    """Posts bytes to connections; `sleep` and `jitter` are injectable so tests need no waiting.

    The worker threads live as long as the Pusher (one per container), so a page does not pay
    for starting them; at most `window.size` posts are in flight (`max_workers` until a 429
    shrinks it), fewer for a smaller page. The window also lives as long as the container.
    """

    def __init__(
        self,
        client: ManagementClient,
        *,
        max_workers: int = MAX_WORKERS,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
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
        self._window_changed = threading.Condition()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def backoff(self, attempt: int) -> float:
        """The pause before retry number `attempt` (1-based) of a throttled post."""
        return retry_delay(attempt, self._jitter)

    def pace(self, share: int) -> None:
        """Post at most 1/`share` of the account's rate and burst (one shard of `share`)."""
        with self._window_changed:
            self.pacer = self.pacer.shared(share, self._clock())

    def _send(self) -> int:
        with self._window_changed:
            while self.window.full():
                self._window_changed.wait()
            ticket = self.window.sent()
            wait = self.pacer.reserve(self._clock())
        if wait > 0:
            self._sleep(wait)
        return ticket

    def _answered(self, ticket: int, *, throttled: bool) -> None:
        with self._window_changed:
            self.window.answered(ticket, throttled=throttled)
            self._window_changed.notify_all()

    def _attempt(self, connection_id: str, data: bytes) -> BaseException | None:
        """One POST inside the window; the exception it raised, None when delivered."""
        ticket = self._send()
        failure: BaseException | None = None
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except Exception as exc:  # one failing post must never stop the fan-out
            failure = exc
        status = error_status(failure) if failure is not None else None
        code = error_code(failure) if failure is not None else ""
        self._answered(ticket, throttled=status == 429 or code in _THROTTLED)
        return failure

    def post(self, connection_id: str, data: bytes) -> PostResult:
        throttled = 0
        while True:
            exc = self._attempt(connection_id, data)
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
                    self._sleep(self.backoff(throttled))
                    continue
            logger.warning("post failed", extra={"connection_id": connection_id, "code": code})
            return PostResult(connection_id, Outcome.FAILED, throttled, code)

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="tidings-push")
            return self._executor

    def post_many(self, connection_ids: Iterable[str], data: bytes) -> list[PostResult]:
        """Post the same `data` bytes to every id concurrently (bounded pool); results in input order."""
        ids = list(connection_ids)
        if len(ids) <= 1:
            return [self.post(cid, data) for cid in ids]
        pool = self._pool()
        futures = [pool.submit(self.post, cid, data) for cid in ids]
        return [future.result() for future in futures]

    def close(self) -> None:
        """Stop the worker threads (they also end with the process)."""
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
