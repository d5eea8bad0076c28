"""Large audiences: notify hands shards to the deliver function; per-shard supersession, crash
resume and off-path pruning, judged on the raw posts each connection receives."""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from tidings_core import fanout, push, registry, shards
from tidings_core.config import Settings
from tidings_core.models import Connection, ShardCheckpoint, Subscription

from .conftest import CONNECTED_AT, FakeContext, FakeManagement, bus_event, gone_typed

SUBSCRIBERS = 600


def connection_ids(n: int) -> list[str]:
    rng = random.Random(3)
    return sorted({base64.urlsafe_b64encode(rng.randbytes(11)).decode() for _ in range(n)})


class CollectingInvoker:
    """Stands in for Lambda's asynchronous Invoke: keeps the tasks for the test to run."""

    def __init__(self) -> None:
        self.tasks: list[fanout.ShardTask] = []

    def invoke(self, tasks: Sequence[fanout.ShardTask]) -> None:
        self.tasks.extend(tasks)


@pytest.fixture
def audience(aws: Settings, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(fanout, "PAGE_SIZE", 25)
    monkeypatch.setattr(shards, "INLINE_MAX", 100)
    monkeypatch.setattr(shards, "SHARD_SIZE", 150)  # 600 subscribers: 4 shards
    monkeypatch.setattr(registry, "QUERY_PAGE_SIZE", 50)
    registry.create_job("job-1", "alice")
    ids = connection_ids(SUBSCRIBERS)
    ttl = datetime.fromtimestamp(registry.connection_ttl(CONNECTED_AT), tz=UTC)
    with Connection.batch_write() as connections:
        for cid in ids:
            connections.save(Connection(cid, user_id="alice", connected_at=CONNECTED_AT, ttl=ttl))
    with Subscription.batch_write() as subscriptions:
        for cid in ids:
            subscriptions.save(
                Subscription("job:job-1", cid, user_id="alice", created_at=CONNECTED_AT, ttl=ttl)
            )
    return ids


@pytest.fixture
def invoker(monkeypatch: pytest.MonkeyPatch) -> CollectingInvoker:
    collecting = CollectingInvoker()
    monkeypatch.setattr(fanout, "shard_invoker", lambda: collecting)
    return collecting


def seqs_by_connection(management: FakeManagement) -> dict[str, list[int]]:
    received: dict[str, list[int]] = {}
    for cid, message in management.posted:
        received.setdefault(cid, []).append(message["seq"])
    return received


def run_shard(handlers: dict[str, ModuleType], task: fanout.ShardTask) -> dict[str, Any]:
    result: dict[str, Any] = handlers["deliver"].handler(task.payload(), FakeContext())
    return result


def test_a_large_audience_is_split_into_shards_that_each_reach_their_range_once(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    audience: list[str],
    invoker: CollectingInvoker,
) -> None:
    result = handlers["notify"].handler(bus_event(seq=1), FakeContext())
    assert result == {"outcome": "new", "delivered": 0, "gone": 0}  # notify posts nothing itself
    assert [(t.shards, t.shard, t.seq) for t in invoker.tasks] == [(4, i, 1) for i in range(4)]
    outcomes = [run_shard(handlers, task) for task in invoker.tasks]
    delivered = [o["delivered"] for o in outcomes]
    assert sum(delivered) == SUBSCRIBERS and min(delivered) > SUBSCRIBERS / 4 * 0.6  # balanced
    assert seqs_by_connection(management) == {cid: [1] for cid in audience}
    for task in invoker.tasks:
        assert ShardCheckpoint.get(task.key).done is True
    # a redelivered shard task posts nothing more
    assert run_shard(handlers, invoker.tasks[0])["outcome"] == "duplicate"
    assert len(management.posted) == SUBSCRIBERS


def test_a_newer_event_supersedes_one_shard_mid_sweep_without_restarting_the_others(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    audience: list[str],
    invoker: CollectingInvoker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handlers["notify"].handler(bus_event(seq=1), FakeContext())
    first = list(invoker.tasks)
    pusher = push.pusher()
    real_post_many = pusher.post_many
    pages = {"n": 0}

    def event_two_arrives_during_page_three(ids: list[str], data: bytes) -> list[push.PostResult]:
        pages["n"] += 1
        if pages["n"] == 3:  # notify runs for seq 2 while shard 0 is sweeping seq 1
            invoker.tasks.clear()
            handlers["notify"].handler(bus_event("ev-2", seq=2, percent=60.0), FakeContext())
            outcome = fanout.deliver_shard(invoker.tasks[0])  # shard 0's task for seq 2
            assert outcome.outcome == "hand_over" and outcome.delivered == 0
        return real_post_many(ids, data)

    monkeypatch.setattr(pusher, "post_many", event_two_arrives_during_page_three)
    shard0 = fanout.deliver_shard(first[0])
    monkeypatch.setattr(pusher, "post_many", real_post_many)
    assert shard0.superseded == 1
    second = list(invoker.tasks)
    in_shard0 = [cid for cid in audience if cid in shards.shard_range(4, 0)]
    received = seqs_by_connection(management)
    # shard 0: seq 1 to the first three pages, then seq 2 from there round to the start: each
    # connection's seqs rise, and all end with 2; the first 3 pages got both, the rest only 2
    assert [received[cid] for cid in in_shard0[:75]] == [[1, 2]] * 75
    assert all(received[cid] == [2] for cid in in_shard0[75:])
    # the other shards were not restarted: their seq-1 sweeps run, then their seq-2 tasks
    for task in first[1:]:
        assert fanout.deliver_shard(task).superseded == 0
    for task in second[1:]:
        fanout.deliver_shard(task)
    received = seqs_by_connection(management)
    assert all(received[cid] == [1, 2] for cid in audience if cid not in in_shard0)
    assert run_shard(handlers, second[0])["outcome"] == "duplicate"


def test_a_crash_mid_shard_resumes_from_its_checkpoint_with_no_duplicate_frames(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    audience: list[str],
    invoker: CollectingInvoker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class LambdaTimeout(Exception):
        pass

    handlers["notify"].handler(bus_event(seq=1), FakeContext())
    task = invoker.tasks[1]
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
        run_shard(handlers, task)
    monkeypatch.setattr(pusher, "post_many", real_post_many)
    # a newer event arrives while the dead owner's lease is still live: handed over to nobody...
    invoker.tasks.clear()
    handlers["notify"].handler(bus_event("ev-2", seq=2), FakeContext())
    assert fanout.deliver_shard(invoker.tasks[1]).outcome == "hand_over"
    # ...until Lambda retries the crashed invocation after the lease ran out: it resumes the newest
    later = registry.now_ms() + registry.SHARD_LEASE_MS + 1
    monkeypatch.setattr(registry, "now_ms", lambda: later)
    assert run_shard(handlers, task)["outcome"] == "resume"
    in_shard = [cid for cid in audience if cid in shards.shard_range(4, 1)]
    received = seqs_by_connection(management)
    assert [received[cid] for cid in in_shard[:50]] == [[1, 2]] * 50  # two pages before the crash
    assert all(received[cid] == [2] for cid in in_shard[50:])  # nobody twice, nobody missed


def test_gone_connections_are_deleted_in_batches_off_the_delivery_path(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    audience: list[str],
    invoker: CollectingInvoker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handlers["notify"].handler(bus_event(seq=1), FakeContext())
    task = invoker.tasks[2]
    in_shard = [cid for cid in audience if cid in shards.shard_range(4, 2)]
    dead = in_shard[::4]
    for cid in dead:
        management.script[cid] = [gone_typed()]
    batches: list[list[str]] = []
    real_forget = registry.forget_subscribers

    def recording(topics: list[str], ids: list[str]) -> int:
        batches.append(list(ids))
        return real_forget(topics, ids)

    monkeypatch.setattr(registry, "forget_subscribers", recording)
    monkeypatch.setattr(registry, "forget_connection", None)  # the one-by-one path is not used
    report = fanout.deliver_shard(task)
    assert report.gone == len(dead) and report.delivered == len(in_shard) - len(dead)
    assert sorted(cid for batch in batches for cid in batch) == sorted(dead)
    assert len(batches) < len(dead) / 10  # in batches (of PRUNE_BATCH), not one call per id
    for cid in in_shard:
        alive = cid not in dead
        assert (Connection.count(cid) == 1) is alive
        assert (Subscription.count("job:job-1", Subscription.connection_id == cid) == 1) is alive


@pytest.fixture
def whole_audience_in_a_page(audience: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The audience fits notify's first page: exactly one page, the case DynamoDB's Limit makes
    ambiguous (a LastEvaluatedKey comes back whenever the Limit is reached)."""
    monkeypatch.setattr(registry, "QUERY_PAGE_SIZE", SUBSCRIBERS)
    return audience


def test_when_notify_read_the_whole_audience_each_shard_posts_its_ids_without_a_query(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    whole_audience_in_a_page: list[str],
    invoker: CollectingInvoker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audience = whole_audience_in_a_page
    handlers["notify"].handler(bus_event(seq=1), FakeContext())
    assert len(invoker.tasks) == 4
    for task in invoker.tasks:
        within = shards.shard_range(4, task.shard)
        assert task.ids == tuple(cid for cid in audience if cid in within)
        assert fanout.ShardTask.from_payload(task.payload()) == task  # what Lambda carries
    queried: list[str] = []
    monkeypatch.setattr(registry, "subscribers_within", lambda *args: queried.append("query") or iter(()))
    for task in invoker.tasks:
        run_shard(handlers, task)
    assert queried == []
    assert seqs_by_connection(management) == {cid: [1] for cid in audience}


def test_a_newer_seq_handed_over_to_a_shard_with_ids_reaches_a_subscriber_they_lack(
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    whole_audience_in_a_page: list[str],
    invoker: CollectingInvoker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ids a task carries were read for its seq; a newcomer that subscribed after that read
    (and whose snapshot predates seq 2) must get seq 2 from the sweep seq 2 was handed over to."""
    audience = whole_audience_in_a_page
    handlers["notify"].handler(bus_event(seq=1), FakeContext())
    first = list(invoker.tasks)
    within = shards.shard_range(4, 0)
    newcomer = next(cid for cid in connection_ids(SUBSCRIBERS + 50) if cid in within and cid not in audience)
    pusher = push.pusher()
    real_post_many = pusher.post_many
    pages = {"n": 0}

    def newcomer_and_event_two_during_page_two(ids: list[str], data: bytes) -> list[push.PostResult]:
        pages["n"] += 1
        if pages["n"] == 2:
            ttl = datetime.fromtimestamp(registry.connection_ttl(CONNECTED_AT), tz=UTC)
            Connection(newcomer, user_id="alice", connected_at=CONNECTED_AT, ttl=ttl).save()
            Subscription("job:job-1", newcomer, user_id="alice", created_at=CONNECTED_AT, ttl=ttl).save()
            # another leaves, so the audience keeps its size and its layout of 4 shards
            Subscription("job:job-1", audience[-1]).delete()
            invoker.tasks.clear()
            handlers["notify"].handler(bus_event("ev-2", seq=2, percent=60.0), FakeContext())
            assert invoker.tasks[0].ids is not None and newcomer in invoker.tasks[0].ids
            assert fanout.deliver_shard(invoker.tasks[0]).outcome == "hand_over"
        return real_post_many(ids, data)

    monkeypatch.setattr(pusher, "post_many", newcomer_and_event_two_during_page_two)
    shard0 = fanout.deliver_shard(first[0])
    assert shard0.superseded == 1
    received = seqs_by_connection(management)
    assert received[newcomer] == [2]
    in_shard0 = [cid for cid in audience if cid in within]
    assert all(received[cid][-1] == 2 and received[cid] == sorted(set(received[cid])) for cid in in_shard0)


def test_a_task_too_large_for_an_asynchronous_invoke_carries_no_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = connection_ids(2_000)
    tasks = fanout.shard_tasks("job-1", "alice", 1, 2, "x" * 1000, ids)
    assert [len(task.ids or ()) for task in tasks] == [
        sum(cid in shards.shard_range(2, i) for cid in ids) for i in range(2)
    ]
    monkeypatch.setattr(fanout, "MAX_TASK_BYTES", 5_000)  # a shard holds about 1,000 ids of 19 bytes
    assert [task.ids for task in fanout.shard_tasks("job-1", "alice", 1, 2, "x" * 1000, ids)] == [None, None]
    assert fanout.shard_tasks("job-1", "alice", 1, 2, "m", None)[0].ids is None


@pytest.mark.parametrize(
    "ids",
    [["not", 3], "a-string", [None]],
)
def test_a_shard_task_with_malformed_ids_is_invalid(ids: Any) -> None:
    payload = fanout.ShardTask("job-1", "alice", 1, 2, 0, "m").payload() | {"ids": ids}
    with pytest.raises(fanout.InvalidShardTask):
        fanout.ShardTask.from_payload(payload)


def test_a_shard_task_with_ids_outside_its_range_is_invalid() -> None:
    ids = connection_ids(50)
    outside = next(cid for cid in ids if cid not in shards.shard_range(2, 0))
    payload = fanout.ShardTask("job-1", "alice", 1, 2, 0, "m").payload() | {"ids": [outside]}
    with pytest.raises(fanout.InvalidShardTask):
        fanout.ShardTask.from_payload(payload)
