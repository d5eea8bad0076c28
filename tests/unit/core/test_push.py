"""push.Pusher with a fake management client: Gone in both shapes, 429 retries, isolation of failures."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tidings_core.push import Outcome, Pacer, Pusher, SendWindow, error_code, retry_delay


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


# --- SendWindow: AIMD on the posts in flight -----------------------------------------------------


def test_a_429_halves_the_window_once_per_round_of_posts() -> None:
    window = SendWindow(32)
    tickets = [window.sent() for _ in range(32)]
    assert window.full() and window.size == 32
    for ticket in tickets[:10]:  # ten 429s from posts sent into the same congestion
        window.answered(ticket, throttled=True)
    assert window.size == 16 and window.shrinks == 1
    later = window.sent()  # sent after the shrink: its 429 is news
    window.answered(later, throttled=True)
    assert window.size == 8 and window.shrinks == 2


def test_the_window_grows_by_about_one_per_round_and_stops_at_its_ceiling() -> None:
    window = SendWindow(8)
    window.answered(window.sent(), throttled=True)
    assert window.size == 4
    for _ in range(4):  # one round of answered posts
        window.answered(window.sent(), throttled=False)
    assert window.size == 4 and window.limit > 4.9
    window.answered(window.sent(), throttled=False)
    assert window.size == 5
    for _ in range(200):
        window.answered(window.sent(), throttled=False)
    assert window.size == 8 and window.limit == 8.0


def test_the_window_never_closes() -> None:
    window = SendWindow(4)
    for _ in range(10):
        window.answered(window.sent(), throttled=True)
    assert window.size == 1 and not window.full()
    window.sent()
    assert window.full()
    with pytest.raises(ValueError):
        SendWindow(4, floor=5)


def test_retry_delay_is_full_jitter_and_short() -> None:
    assert [retry_delay(n, lambda lo, hi: hi) for n in (1, 2, 3, 10)] == [0.1, 0.2, 0.2, 0.2]
    assert retry_delay(3, lambda lo, hi: lo) == 0.0


def test_a_burst_of_429s_makes_the_pusher_send_fewer_posts_at_once() -> None:
    """Eight posts in flight meet 429s together: the window halves once, and the retries go out
    at most about half as many at a time (without the window all eight would go again)."""
    throttle = _client_error("LimitExceededException", 429)
    lock = threading.Lock()
    first_wave = threading.Barrier(8, timeout=10)
    state = {"now": 0, "most": 0}

    class Congested(FakeManagement):
        def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
            with lock:
                retry = bool(self.script.get(ConnectionId) == [])
                state["now"] += 1
                if retry:
                    state["most"] = max(state["most"], state["now"])
            try:
                if not retry:
                    first_wave.wait()  # all eight are in flight before any is answered
                time.sleep(0.02)
                return super().post_to_connection(ConnectionId=ConnectionId, Data=Data)
            finally:
                with lock:
                    state["now"] -= 1

    ids = [f"c{i}" for i in range(8)]
    client = Congested({cid: [throttle] for cid in ids})
    pusher = Pusher(client, max_workers=8, sleep=lambda _: None)  # type: ignore[arg-type]
    results = pusher.post_many(ids, b"m")
    assert all(r.outcome is Outcome.DELIVERED and r.throttled == 1 for r in results)
    assert pusher.window.shrinks == 1
    assert 1 <= state["most"] <= 5


# --- Pacer: a shard's share of the account's throttle --------------------------------------------


def test_the_pacer_spends_its_burst_then_spaces_reservations_at_its_rate() -> None:
    pacer = Pacer(10.0, 2.0, 0.0)
    assert [pacer.reserve(0.0) for _ in range(4)] == [0.0, 0.0, pytest.approx(0.1), pytest.approx(0.2)]
    assert pacer.reserve(1.0) == 0.0  # a second later the bucket has refilled (up to its burst)
    assert pacer.tokens == pytest.approx(1.0)


def test_the_shards_of_a_layout_split_the_rate_and_the_burst() -> None:
    whole = Pacer(10_000.0, 5_000.0, 0.0)
    one_of_16 = whole.shared(16, 0.0)
    assert (one_of_16.rate, one_of_16.burst, one_of_16.share) == (625.0, 312.5, 16)
    assert one_of_16.shared(16, 5.0) is one_of_16  # same share: the same bucket goes on
    again = one_of_16.shared(1, 5.0)
    assert (again.rate, again.burst) == (10_000.0, 5_000.0)
    assert Pacer(1.0, 0.1, 0.0).burst == 1.0  # always room for one post
    with pytest.raises(ValueError):
        Pacer(0.0, 1.0, 0.0)


def test_a_paced_pusher_waits_its_turn_before_posting() -> None:
    sleeps: list[float] = []
    client = FakeManagement({})
    pusher = Pusher(client, rate=400.0, burst=4.0, clock=lambda: 0.0, sleep=sleeps.append)  # type: ignore[arg-type]
    pusher.pace(4)  # one shard of four: 100 posts/s, a burst of 1
    results = pusher.post_many(["a", "b", "c"], b"m")
    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert sorted(sleeps) == [pytest.approx(0.01), pytest.approx(0.02)]
    assert sorted(cid for cid, _ in client.posted) == ["a", "b", "c"]
