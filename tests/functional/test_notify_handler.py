"""notify, small audience (one shard, delivered inline): paginated fan-out, Gone pruning, 429
retries, at-least-once safety and crash resume. tests/functional/test_sharded_delivery.py covers
large audiences."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from tidings_core import fanout, push, registry, shards
from tidings_core.config import Settings
from tidings_core.models import Connection, JobState, ShardCheckpoint, Subscription

from .conftest import CONNECTED_AT, FakeContext, FakeManagement, bus_event, gone_bare, gone_typed, throttled

JOB_SUBSCRIBERS = [f"j{n:03d}" for n in range(130)]
USER_SUBSCRIBERS = [f"j{n:03d}" for n in range(100, 130)] + [f"u{n:03d}" for n in range(120)]
EVERYONE = sorted(set(JOB_SUBSCRIBERS) | set(USER_SUBSCRIBERS))  # 250 distinct, 30 on both topics


@pytest.fixture
def audience(aws: Settings, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(fanout, "PAGE_SIZE", 40)  # several delivery pages and checkpoints
    registry.create_job("job-1", "alice")
    ttl = datetime.fromtimestamp(registry.connection_ttl(CONNECTED_AT), tz=UTC)
    # batch writes only to set the scene quickly; the code under test writes one item at a time
    with Connection.batch_write() as connections:
        for connection_id in EVERYONE:
            connections.save(Connection(connection_id, user_id="alice", connected_at=CONNECTED_AT, ttl=ttl))
    with Subscription.batch_write() as subscriptions:
        for topic, ids in (("job:job-1", JOB_SUBSCRIBERS), ("user:alice", USER_SUBSCRIBERS)):
            for connection_id in ids:
                subscriptions.save(
                    Subscription(topic, connection_id, user_id="alice", created_at=CONNECTED_AT, ttl=ttl)
                )
    return EVERYONE


def _notify(handlers: dict[str, ModuleType], event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = handlers["notify"].handler(event, FakeContext())
    return result


def _checkpoint() -> ShardCheckpoint:
    return ShardCheckpoint.get(shards.shard_key("job-1", 1, 0), consistent_read=True)


def _delivery_counts(management: FakeManagement) -> Counter[str]:
    return Counter(cid for cid, _ in management.posted)


def test_fan_out_reaches_every_subscriber_of_both_topics_exactly_once(
    handlers: dict[str, ModuleType], management: FakeManagement, audience: list[str]
) -> None:
    result = _notify(handlers, bus_event(seq=1))
    assert result == {"outcome": "new", "delivered": len(audience), "gone": 0}
    counts = _delivery_counts(management)
    assert sorted(counts) == audience and set(counts.values()) == {1}
    message = management.posted[0][1]
    assert (message["type"], message["jobId"], message["seq"], message["stage"]) == (
        "progress",
        "job-1",
        1,
        "transcoding",
    )
    assert message["segments"][0]["state"] == "done" and message["sentAt"] >= message["emittedAt"]
    assert JobState.get("job-1").seq == 1 and JobState.get("job-1").fanout_shards == 1  # inline
    checkpoint = _checkpoint()
    assert (checkpoint.seq, checkpoint.sweep_seq, checkpoint.done, checkpoint.cursor) == (
        1,
        1,
        True,
        audience[-1],
    )


def test_each_page_is_checkpointed_once_and_the_last_checkpoint_ends_the_sweep(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    audience: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[tuple[str | None, bool]] = []
    real_checkpoint = registry.checkpoint_shard

    def counted(key: str, owner: str, sweep: shards.Sweep, *, done: bool = False) -> Any:
        written.append((sweep.cursor, done))
        return real_checkpoint(key, owner, sweep, done=done)

    monkeypatch.setattr(registry, "checkpoint_shard", counted)
    assert _notify(handlers, bus_event(seq=1))["delivered"] == len(audience)
    pages = [audience[i : i + fanout.PAGE_SIZE] for i in range(0, len(audience), fanout.PAGE_SIZE)]
    # one write per page, no separate write for the end: the last page's write is the end
    assert written == [(page[-1], page is pages[-1]) for page in pages]
    assert _checkpoint().done


def test_gone_connections_are_pruned_whether_typed_or_bare_and_only_they(
    handlers: dict[str, ModuleType], management: FakeManagement, audience: list[str]
) -> None:
    typed, bare = ["j010", "j120", "u005"], ["j011", "u119"]
    for connection_id in typed:
        management.script[connection_id] = [gone_typed()]
    for connection_id in bare:
        management.script[connection_id] = [gone_bare()]
    result = _notify(handlers, bus_event(seq=1))
    dead = set(typed + bare)
    assert result["gone"] == len(dead) and result["delivered"] == len(audience) - len(dead)
    for connection_id in audience:
        alive = connection_id not in dead
        assert (Connection.count(connection_id) == 1) is alive, connection_id
        assert bool(list(Subscription.by_connection.query(connection_id))) is alive, connection_id
    _notify(handlers, bus_event("ev-2", seq=2))  # pruned ids are no longer posted to
    assert all(management.calls[cid] == 1 for cid in dead)


def test_throttled_posts_are_retried_and_delivered(
    handlers: dict[str, ModuleType], management: FakeManagement, audience: list[str]
) -> None:
    for connection_id in ("j001", "u050"):
        management.script[connection_id] = [throttled(), throttled()]
    _notify(handlers, bus_event(seq=1))
    assert management.calls["j001"] == 3 and len(management.to("j001")) == 1
    assert len(management.to("u050")) == 1


def test_duplicate_and_older_events_are_dropped(
    handlers: dict[str, ModuleType], management: FakeManagement, audience: list[str]
) -> None:
    _notify(handlers, bus_event("ev-5", seq=5, percent=50.0))
    delivered = len(management.posted)
    assert _notify(handlers, bus_event("ev-5", seq=5, percent=50.0))["outcome"] == "duplicate"
    assert _notify(handlers, bus_event("ev-3", seq=3, percent=30.0))["outcome"] == "stale"
    assert len(management.posted) == delivered
    job = JobState.get("job-1")
    assert (job.seq, job.percent) == (5, 50.0)  # the older event did not overwrite the state


def test_a_retry_after_a_crash_mid_fan_out_resumes_after_the_last_completed_page(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    audience: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class LambdaTimeout(Exception):
        pass

    pusher = push.pusher()
    real_post_many = pusher.post_many
    pages = {"n": 0}

    def crash_on_third_page(ids: list[str], data: bytes) -> list[push.PostResult]:
        pages["n"] += 1
        if pages["n"] == 3:
            raise LambdaTimeout
        return real_post_many(ids, data)

    monkeypatch.setattr(pusher, "post_many", crash_on_third_page)
    with pytest.raises(LambdaTimeout):
        _notify(handlers, bus_event(seq=1))
    first_run = _delivery_counts(management)
    assert len(first_run) == 2 * fanout.PAGE_SIZE
    checkpoint = _checkpoint()
    assert (checkpoint.sweep_seq, checkpoint.done, checkpoint.cursor) == (1, False, max(first_run))

    monkeypatch.setattr(pusher, "post_many", real_post_many)
    # the bus retries a failed invocation after the crashed one's lease has run out
    later = registry.now_ms() + registry.SHARD_LEASE_MS + 1
    monkeypatch.setattr(registry, "now_ms", lambda: later)
    # at the job item it is the stored seq (duplicate); its shard resumes from the checkpoint
    assert _notify(handlers, bus_event(seq=1))["outcome"] == "duplicate"
    counts = _delivery_counts(management)
    assert sorted(counts) == audience and set(counts.values()) == {1}  # nobody twice, nobody missed
    assert _checkpoint().done is True
    assert _notify(handlers, bus_event(seq=1))["delivered"] == 0


def test_a_newer_event_supersedes_an_unfinished_fan_out(
    handlers: dict[str, ModuleType], management: FakeManagement, audience: list[str]
) -> None:
    registry.claim_job_event("job-1", "alice", 1, "transcoding", 10.0, {"seq": 1})  # crashed before offering
    assert _notify(handlers, bus_event("ev-2", seq=2))["outcome"] == "new"
    assert _notify(handlers, bus_event("ev-1", seq=1))["outcome"] == "stale"
    assert {m["seq"] for _, m in management.posted} == {2}


@pytest.mark.parametrize(
    "detail",
    [{"seq": -1}, {"stage": "dancing"}, {"percent": 200}, {"version": 2}, {"jobId": None}],
)
def test_poison_events_return_normally_and_post_nothing(
    handlers: dict[str, ModuleType], management: FakeManagement, audience: list[str], detail: dict[str, Any]
) -> None:
    assert _notify(handlers, bus_event(**detail))["outcome"] == "invalid"
    assert management.posted == []


def test_an_event_naming_another_owner_is_dropped(
    handlers: dict[str, ModuleType], management: FakeManagement, audience: list[str]
) -> None:
    assert _notify(handlers, bus_event(userId="mallory", seq=9))["outcome"] == "wrong_owner"
    assert management.posted == [] and JobState.get("job-1").user_id == "alice"


def test_terminal_events_are_typed_by_stage(
    handlers: dict[str, ModuleType], management: FakeManagement, audience: list[str]
) -> None:
    _notify(
        handlers,
        bus_event(
            seq=2, stage="failed", error={"code": "ffmpeg_exit", "message": "exit 1", "retryable": False}
        ),
    )
    message = management.to("u000")[0]
    assert message["type"] == "failed" and message["error"]["code"] == "ffmpeg_exit"


def test_a_query_failure_on_the_next_page_is_raised_after_the_current_page_is_checkpointed(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    audience: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The next page is fetched while the current one posts; its failure must not lose that page."""

    class QueryFailed(Exception):
        pass

    real_subscribers = registry.subscribers_within
    cut = 2 * fanout.PAGE_SIZE + 5  # fails while fetching the third page

    def failing_subscribers(topics: list[str], within: shards.KeyRange) -> Any:
        for n, connection_id in enumerate(real_subscribers(topics, within)):
            if n == cut:
                raise QueryFailed
            yield connection_id

    monkeypatch.setattr(registry, "subscribers_within", failing_subscribers)
    monkeypatch.setattr(registry, "QUERY_PAGE_SIZE", 100)  # the first pages do not hold everyone: Query
    with pytest.raises(QueryFailed):
        _notify(handlers, bus_event(seq=1))
    first_run = _delivery_counts(management)
    assert sorted(first_run) == audience[: 2 * fanout.PAGE_SIZE]  # both fetched pages were posted
    checkpoint = _checkpoint()
    assert (checkpoint.sweep_seq, checkpoint.done, checkpoint.cursor) == (
        1,
        False,
        audience[2 * fanout.PAGE_SIZE - 1],
    )

    monkeypatch.setattr(registry, "subscribers_within", real_subscribers)
    later = registry.now_ms() + registry.SHARD_LEASE_MS + 1  # the failed invocation's lease ran out
    monkeypatch.setattr(registry, "now_ms", lambda: later)
    assert _notify(handlers, bus_event(seq=1))["outcome"] == "duplicate"
    counts = _delivery_counts(management)
    assert sorted(counts) == audience and set(counts.values()) == {1}


def test_a_small_audience_is_reached_with_the_layout_recorded_by_the_claim(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    audience: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job's first event records the inline layout in its claim: no separate layout write,
    no shard read before the post (the claim, the two Queries, one write taking the shard)."""

    def forbidden(*args: object) -> None:
        raise AssertionError(f"not on notify's path to a small audience: {args}")

    monkeypatch.setattr(registry, "set_layout", forbidden)
    monkeypatch.setattr(registry, "read_shard", forbidden)
    assert _notify(handlers, bus_event(seq=1))["delivered"] == len(audience)
    assert _notify(handlers, bus_event("ev-2", seq=2))["delivered"] == len(audience)
    assert JobState.get("job-1").fanout_shards == 1
    assert sorted(m["seq"] for _, m in management.posted) == [1] * len(audience) + [2] * len(audience)
