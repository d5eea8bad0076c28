"""push.Pusher with a fake management client: Gone in both shapes, 429 retries, isolation of failures."""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import ClientError

from tidings_core.push import Outcome, Pusher, error_code


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PostToConnection",
    )


class GoneException(ClientError):
    """What botocore raises when the 410 carries `x-amzn-ErrorType: GoneException`."""


class FakeManagement:
    def __init__(self, script: dict[str, list[BaseException | None]]) -> None:
        self.script = {cid: list(steps) for cid, steps in script.items()}
        self.posted: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        with self.lock:
            steps = self.script.get(ConnectionId) or []
            step = steps.pop(0) if steps else None
            if step is None:
                self.posted.append((ConnectionId, Data))
        if step is not None:
            raise step
        return {}


def _pusher(client: FakeManagement, sleeps: list[float] | None = None, attempts: int = 5) -> Pusher:
    recorded = sleeps if sleeps is not None else []
    return Pusher(client, max_attempts=attempts, sleep=recorded.append, jitter=lambda lo, hi: hi)  # type: ignore[arg-type]


def test_typed_gone_and_bare_410_are_both_gone_and_only_for_their_ids() -> None:
    typed = GoneException(
        {"Error": {"Code": "GoneException"}, "ResponseMetadata": {"HTTPStatusCode": 410}}, "Post"
    )
    bare = _client_error("410", 410)
    client = FakeManagement({"dead-typed": [typed], "dead-bare": [bare]})
    results = _pusher(client).post_many(["a", "dead-typed", "b", "dead-bare", "c"], b"m")
    by_id = {r.connection_id: r.outcome for r in results}
    assert by_id == {
        "a": Outcome.DELIVERED, "dead-typed": Outcome.GONE, "b": Outcome.DELIVERED,
        "dead-bare": Outcome.GONE, "c": Outcome.DELIVERED,
    }  # fmt: skip
    assert sorted(cid for cid, _ in client.posted) == ["a", "b", "c"]


def test_bare_410_without_a_code_is_recognised_by_status() -> None:
    exc = ClientError({"Error": {}, "ResponseMetadata": {"HTTPStatusCode": 410}}, "PostToConnection")
    assert error_code(exc) == "410"
    assert _pusher(FakeManagement({"x": [exc]})).post("x", b"m").outcome is Outcome.GONE


def test_429_is_retried_with_growing_backoff_then_delivered() -> None:
    throttle = _client_error("LimitExceededException", 429)
    client = FakeManagement({"busy": [throttle, _client_error("429", 429), throttle]})
    sleeps: list[float] = []
    result = _pusher(client, sleeps).post("busy", b"m")
    assert result.outcome is Outcome.DELIVERED and result.throttled == 3
    assert client.posted == [("busy", b"m")]
    assert sleeps == sorted(sleeps) and len(sleeps) == 3 and sleeps[0] > 0


def test_429_gives_up_after_the_bounded_attempts() -> None:
    client = FakeManagement({"busy": [_client_error("LimitExceededException", 429)] * 10})
    sleeps: list[float] = []
    result = _pusher(client, sleeps, attempts=4).post("busy", b"m")
    assert result.outcome is Outcome.FAILED and result.throttled == 4 and len(sleeps) == 3
    assert client.posted == []


def test_one_failure_does_not_stop_the_others() -> None:
    script: dict[str, list[BaseException | None]] = {
        "boom": [RuntimeError("socket closed")],
        "forbidden": [_client_error("ForbiddenException", 403)],
        "big": [_client_error("PayloadTooLargeException", 413)],
    }
    client = FakeManagement(script)
    ids = [f"c{i}" for i in range(40)] + list(script)
    results = _pusher(client).post_many(ids, b"m")
    assert [r.connection_id for r in results] == ids
    outcomes = {r.connection_id: r.outcome for r in results}
    assert outcomes["boom"] is Outcome.FAILED and outcomes["forbidden"] is Outcome.FAILED
    assert outcomes["big"] is Outcome.TOO_LARGE
    assert sorted(cid for cid, _ in client.posted) == sorted(f"c{i}" for i in range(40))


def test_posts_run_concurrently_up_to_the_pool_size() -> None:
    barrier = threading.Barrier(4, timeout=10)

    class Waiting(FakeManagement):
        def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
            barrier.wait()  # only passes when 4 posts are in flight at once
            return super().post_to_connection(ConnectionId=ConnectionId, Data=Data)

    client = Waiting({})
    results = Pusher(client, max_workers=4).post_many(["a", "b", "c", "d"], b"m")  # type: ignore[arg-type]
    assert all(r.outcome is Outcome.DELIVERED for r in results)
