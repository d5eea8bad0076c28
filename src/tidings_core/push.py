"""The only module that calls the API Gateway Management API: concurrent posts, Gone, 429 retries.

One botocore client per container (thread-safe, connection pool sized to the thread pool),
with botocore's own retries off so a 429 is retried here with jittered backoff and a 410 is
reported at once. A failing post never stops the others; the caller deletes what is Gone.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

logger = logging.getLogger(__name__)

MAX_WORKERS = 32
MAX_ATTEMPTS = 5  # 1 post + 4 retries on 429
BASE_DELAY_S = 0.05
MAX_DELAY_S = 1.0
_GONE = {"GoneException", "410"}
_THROTTLED = {"LimitExceededException", "TooManyRequestsException", "429"}
_TOO_LARGE = {"PayloadTooLargeException", "413"}


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


def error_code(exc: BaseException) -> str:
    """The service error code of a botocore ClientError ("" for anything else)."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(code or status or "")


@functools.cache
def management_client(
    endpoint_url: str, max_pool_connections: int = MAX_WORKERS
) -> ApiGatewayManagementApiClient:
    """The container's one management client for `endpoint_url` (the callback URL, stage included)."""
    import botocore.config
    import botocore.session  # lazy and without boto3: less import time on cold start

    config = botocore.config.Config(
        max_pool_connections=max_pool_connections,
        retries={"max_attempts": 1, "mode": "standard"},  # 429s are retried below, with jitter
        connect_timeout=2,
        read_timeout=5,
    )
    client = botocore.session.get_session().create_client(
        "apigatewaymanagementapi", endpoint_url=endpoint_url, config=config
    )
    return cast("ApiGatewayManagementApiClient", client)


class Pusher:
    """Posts bytes to connections; `sleep` and `jitter` are injectable so tests need no waiting."""

    def __init__(
        self,
        client: ApiGatewayManagementApiClient,
        *,
        max_workers: int = MAX_WORKERS,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.client = client
        self.max_workers = max_workers
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._jitter = jitter

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number `attempt` (1-based)."""
        return self._jitter(0.0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt))

    def post(self, connection_id: str, data: bytes) -> PostResult:
        throttled = 0
        while True:
            try:
                self.client.post_to_connection(ConnectionId=connection_id, Data=data)
                return PostResult(connection_id, Outcome.DELIVERED, throttled)
            except Exception as exc:  # one failing post must never stop the fan-out
                code = error_code(exc) or type(exc).__name__
                if code in _GONE:
                    return PostResult(connection_id, Outcome.GONE, throttled, code)
                if code in _TOO_LARGE:
                    logger.warning("too large", extra={"connection_id": connection_id, "n": len(data)})
                    return PostResult(connection_id, Outcome.TOO_LARGE, throttled, code)
                if code in _THROTTLED:
                    throttled += 1
                    if throttled < self.max_attempts:
                        self._sleep(self.backoff(throttled))
                        continue
                logger.warning("post failed", extra={"connection_id": connection_id, "code": code})
                return PostResult(connection_id, Outcome.FAILED, throttled, code)

    def post_many(self, connection_ids: Iterable[str], data: bytes) -> list[PostResult]:
        """Post `data` to every id concurrently (bounded pool); results in the input order."""
        ids = list(connection_ids)
        if len(ids) <= 1:
            return [self.post(cid, data) for cid in ids]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(ids))) as pool:
            return list(pool.map(lambda cid: self.post(cid, data), ids))


@functools.cache
def _default_pusher(endpoint_url: str) -> Pusher:
    return Pusher(management_client(endpoint_url))


def pusher() -> Pusher:
    """The container's Pusher for the configured CALLBACK_URL."""
    from .config import settings

    return _default_pusher(settings().require("callback_url"))
