"""A shard's checkpoint item under concurrent offers: one owner at a time, leases, hand-overs."""

from __future__ import annotations

import pytest

from tidings_core import fanout, registry, shards
from tidings_core.config import Settings
from tidings_core.models import ShardCheckpoint

from .conftest import bus_event

KEY = shards.shard_key("job-1", 1, 0)


@pytest.fixture
def job(aws: Settings) -> str:
    registry.create_job("job-1", "alice")
    return "job-1"


def offer(seq: int = 1, owner: str = "a") -> registry.OfferResult:
    return registry.offer_shard(KEY, seq, f'{{"seq":{seq}}}', owner)


def test_a_concurrent_redelivery_is_busy_not_a_second_sweep(job: str) -> None:
    assert offer(owner="a").offer is shards.Offer.TAKE
    assert offer(owner="b").offer is shards.Offer.BUSY  # the first invocation's lease is live
    assert registry.checkpoint_shard(KEY, "a", shards.Sweep(1), done=True) is None
    assert offer(owner="b").offer is shards.Offer.DUPLICATE


def test_a_newer_event_is_handed_over_to_the_live_owner_which_learns_it_at_its_checkpoint(job: str) -> None:
    assert offer(1, "a").offer is shards.Offer.TAKE
    assert offer(2, "b").offer is shards.Offer.HAND_OVER
    now = registry.checkpoint_shard(KEY, "a", shards.Sweep(1, cursor="conn-040"))
    assert now is not None and (now.item.seq, now.item.owner, now.message) == (2, "a", '{"seq":2}')
    # the owner switches to seq 2 from where it is; its next checkpoint is accepted
    assert registry.checkpoint_shard(KEY, "a", shards.Sweep(2, origin="conn-040")) is None


def test_a_crashed_sweep_is_resumed_once_its_lease_runs_out(
    job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert offer(owner="a").offer is shards.Offer.TAKE
    registry.checkpoint_shard(KEY, "a", shards.Sweep(1, cursor="conn-040"))
    later = registry.now_ms() + registry.SHARD_LEASE_MS + 1
    monkeypatch.setattr(registry, "now_ms", lambda: later)
    resumed = offer(owner="b")
    assert (resumed.offer, resumed.sweep) == (shards.Offer.RESUME, shards.Sweep(1, cursor="conn-040"))
    assert offer(owner="c").offer is shards.Offer.BUSY  # the resuming invocation now holds the lease
    row = ShardCheckpoint.get(KEY)
    assert (row.owner, row.lease_until) == ("b", later + registry.SHARD_LEASE_MS)
    # the crashed owner, had it only been slow, can no longer write: it lost the shard
    lost = registry.checkpoint_shard(KEY, "a", shards.Sweep(1, cursor="conn-080"))
    assert lost is not None and lost.item.owner == "b"


def test_each_delivered_page_renews_the_lease(job: str, monkeypatch: pytest.MonkeyPatch) -> None:
    offer()
    first = ShardCheckpoint.get(KEY).lease_until
    later = registry.now_ms() + 5_000
    monkeypatch.setattr(registry, "now_ms", lambda: later)
    registry.checkpoint_shard(KEY, "a", shards.Sweep(1, cursor="conn-100"))
    assert ShardCheckpoint.get(KEY).lease_until == later + registry.SHARD_LEASE_MS > first


def test_notify_asks_lambda_to_retry_when_the_shard_stays_busy(
    job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.claim_job_event("job-1", "alice", 1, "transcoding", 10.0, {"seq": 1})
    offer()  # another invocation is sweeping seq 1 and keeps its lease
    monkeypatch.setattr(fanout, "BUSY_WAIT_S", 0.3)
    monkeypatch.setattr(fanout, "BUSY_POLL_S", 0.05)
    with pytest.raises(fanout.FanOutInProgress):
        fanout.deliver_job_event(bus_event(seq=1)["detail"], event_id="ev-retry")


def test_a_newer_seq_handed_over_to_an_owner_that_died_is_delivered_by_the_stale_retry(
    job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notify posts seq 1 to everyone and is killed before it marks the shard done; seq 2 arrives
    while the dead owner's lease still runs, so it is handed over to it; the retry of seq 1 is
    stale for the job, yet it must resume the shard, or seq 2 would never be delivered."""
    registry.claim_job_event("job-1", "alice", 1, "transcoding", 10.0, {"seq": 1})
    assert offer(1, "dead").offer is shards.Offer.TAKE  # the invocation that is then killed
    handed = fanout.deliver_job_event(bus_event(seq=2)["detail"], event_id="ev-2")
    assert handed.outcome == "new" and handed.recipients == 0  # left to the (dead) owner
    assert (ShardCheckpoint.get(KEY).seq, ShardCheckpoint.get(KEY).done) == (2, False)

    later = registry.now_ms() + registry.SHARD_LEASE_MS + 1
    monkeypatch.setattr(registry, "now_ms", lambda: later)
    retry = fanout.deliver_job_event(bus_event(seq=1)["detail"], event_id="ev-1")
    assert retry.outcome == "stale"
    row = ShardCheckpoint.get(KEY)
    assert (row.seq, row.done) == (2, True)  # seq 2 swept to the end by the retry
    # a second stale retry finds nothing left to do
    assert fanout.resume_orphaned_shard(fanout.ShardTask("job-1", "alice", 1, 1, 0, "{}")) is None
