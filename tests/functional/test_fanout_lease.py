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


def _no_read(key: str) -> registry.ShardState | None:
    raise AssertionError(f"shard {key} read before the offer was written")


def test_a_free_shard_is_taken_with_one_write_and_no_read(job: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No item yet, or a sweep of an older seq that ran to its end: TAKE without a GetItem, the
    new sweep starting where the last one began (as `shards.sweep_after_offer` says)."""
    monkeypatch.setattr(registry, "read_shard", _no_read)
    first = offer(1, "a")
    assert (first.offer, first.sweep, first.message) == (shards.Offer.TAKE, shards.Sweep(1), '{"seq":1}')
    # the sweep of seq 1 was superseded mid-way at conn-040, then swept to its end as seq 2
    ShardCheckpoint(KEY).update(
        actions=[ShardCheckpoint.seq.set(2), ShardCheckpoint.message.set('{"seq":2}')]
    )
    assert registry.checkpoint_shard(KEY, "a", shards.Sweep(2, origin="conn-040"), done=True) is None
    stored = ShardCheckpoint.get(KEY)
    taken = offer(3, "b")
    item = shards.ShardItem(2, shards.Sweep(2, origin="conn-040"), True, "a", 0, int(stored.version))
    assert taken.offer is shards.Offer.TAKE
    assert (
        taken.sweep
        == shards.sweep_after_offer(item, shards.Offer.TAKE, 3)
        == shards.Sweep(3, origin="conn-040")
    )
    row = ShardCheckpoint.get(KEY)
    assert (row.seq, row.sweep_seq, row.origin, row.cursor, row.done, row.owner) == (
        3,
        3,
        "conn-040",
        None,
        False,
        "b",
    )
    assert row.version == stored.version + 1 and row.lease_until > registry.now_ms()


def test_the_one_write_take_leaves_every_other_shard_state_to_the_read_and_decide_path(
    job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live owners, redeliveries, crashed sweeps and a done sweep that is not older are decided
    from the item as read, exactly as before: the one-write take's condition refuses them."""
    assert offer(2, "a").offer is shards.Offer.TAKE
    assert offer(1, "b").offer is shards.Offer.BUSY  # live owner, older seq: nothing taken
    assert offer(3, "b").offer is shards.Offer.HAND_OVER  # live owner keeps its lease
    assert ShardCheckpoint.get(KEY).owner == "a"
    assert registry.checkpoint_shard(KEY, "a", shards.Sweep(3), done=True) is None
    assert offer(3, "c").offer is shards.Offer.DUPLICATE
    assert offer(2, "c").offer is shards.Offer.STALE
    # a done item whose sweep seq is not below the offer (never written by this code, but
    # the condition covers every field the decision reads): decided from the read
    ShardCheckpoint(KEY).update(actions=[ShardCheckpoint.sweep_seq.set(9)])
    reads: list[str] = []
    read = registry.read_shard
    monkeypatch.setattr(registry, "read_shard", lambda key: reads.append(key) or read(key))
    assert offer(4, "d").offer is shards.Offer.TAKE and reads == [KEY]
    assert offer(4, "e").offer is shards.Offer.BUSY


def test_a_checkpoint_deleted_by_ttl_and_written_again_is_taken_by_its_state_not_its_version(
    job: str,
) -> None:
    """TTL removes an item and a later write re-creates it with a low version: the one-write
    take's condition reads its state (live here), never a remembered version."""
    assert offer(1, "a").offer is shards.Offer.TAKE
    assert registry.checkpoint_shard(KEY, "a", shards.Sweep(1), done=True) is None
    ShardCheckpoint(KEY).delete()  # DynamoDB's TTL
    assert offer(2, "b").offer is shards.Offer.TAKE  # re-created: version 1, owner b, live
    assert offer(3, "c").offer is shards.Offer.HAND_OVER
    assert ShardCheckpoint.get(KEY).owner == "b"
