"""shards.py: layout, key ranges, sweeps with supersession, and offer decisions, fed values."""

from __future__ import annotations

import base64
import itertools
import random

import pytest

from tidings_core import shards
from tidings_core.shards import KeyRange, Offer, ShardItem, Sweep


def random_ids(n: int, seed: int = 1, *, urlsafe: bool = True) -> list[str]:
    """Connection ids as API Gateway makes them: base64 of 11 random bytes (URL-safe locally)."""
    rng = random.Random(seed)
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return sorted({encode(rng.randbytes(11)).decode() for _ in range(n)})


@pytest.mark.parametrize("urlsafe", [True, False])
@pytest.mark.parametrize("count", [1, 2, 4, 16, 256])
def test_every_id_falls_in_exactly_one_shard_and_shards_are_balanced(count: int, urlsafe: bool) -> None:
    ids = [*random_ids(20000, urlsafe=urlsafe), "", "+", "zzzz", "j001", "~tilde", "AAA", "aaa"]
    ranges = [shards.shard_range(count, i) for i in range(count)]
    sizes = [0] * count
    for cid in ids:
        homes = [i for i, r in enumerate(ranges) if cid in r]
        assert len(homes) == 1, (cid, homes)
        sizes[homes[0]] += 1
    if count <= 16 and urlsafe:  # 20,000 random ids: every shard within 25 % of the mean
        mean = 20_000 / count
        assert all(abs(size - mean) < 0.25 * mean + 2 for size in sizes), sizes


def test_boundaries_ascend_and_positions_follow_byte_order() -> None:
    bounds = [shards.boundary(i / 64) for i in range(1, 64)]
    assert bounds == sorted(bounds) and len(set(bounds)) == 63
    ids = random_ids(2_000)
    positions = [shards.position(cid) for cid in ids]
    assert positions == sorted(positions)


def test_a_bad_shard_is_refused() -> None:
    with pytest.raises(ValueError, match="no shard 4"):
        shards.shard_range(4, 4)


@pytest.mark.parametrize("urlsafe", [True])
def test_estimate_is_exact_for_complete_pages_and_close_for_truncated_ones(urlsafe: bool) -> None:
    ids = random_ids(100_000, urlsafe=urlsafe)
    both = [shards.FirstPage(ids[:10], True), shards.FirstPage(ids[5:12], True)]
    assert shards.estimate_total(both) == 12
    truncated = shards.estimate_total([shards.FirstPage(ids[:1000], False), shards.FirstPage([], True)])
    assert 0.8 * len(ids) < truncated < 1.25 * len(ids)


@pytest.mark.parametrize(
    ("estimate", "current", "expected"),
    [
        (3, None, 1),
        (shards.INLINE_MAX, None, 1),
        (shards.INLINE_MAX + 1, None, shards.MIN_SHARDS),
        (100_000, None, 128),
        (10**9, None, shards.MAX_SHARDS),
        (100_000, 64, 128),  # grows at once
        (40_000, 64, 64),  # shrinks only past the hysteresis factor
        (20_000, 64, 32),
        (10, 4, 1),
        (300, 2, 2),  # kept: not SHRINK_FACTOR times too many
    ],
)
def test_layout_grows_at_once_and_shrinks_with_hysteresis(
    estimate: int, current: int | None, expected: int
) -> None:
    assert shards.choose_layout(estimate, current) == expected


def sweep_all(ids: list[str], shard: KeyRange, sweep: Sweep, page: int) -> list[str]:
    """Run a sweep to its end with no newer event: the ids it delivers, in order."""
    out: list[str] = []
    current: Sweep | None = sweep
    while current is not None:
        window = shards.next_range(current, shard)
        todo = [cid for cid in ids if cid in window][:page]
        if not todo:
            current = shards.part_exhausted(current)
            continue
        out += todo
        current = shards.delivered(current, todo[-1])
    return out


@pytest.mark.parametrize("origin_index", [None, 0, 7, 49])
def test_a_sweep_delivers_each_id_of_its_shard_once_starting_after_its_origin(
    origin_index: int | None,
) -> None:
    ids = random_ids(400)
    shard = shards.shard_range(4, 1)
    mine = [cid for cid in ids if cid in shard]
    origin = mine[origin_index] if origin_index is not None else None
    delivered = sweep_all(ids, shard, Sweep(1, origin=origin), page=9)
    assert sorted(delivered) == mine and len(delivered) == len(mine)
    if origin is not None:
        assert delivered[0] == mine[(origin_index or 0) + 1] and delivered[-1] == origin


def test_supersession_keeps_every_connections_seqs_rising_and_ends_with_the_latest() -> None:
    """A shard worker switching to newer events at random page boundaries, as fanout does."""
    rng = random.Random(7)
    ids = random_ids(300)
    page_size = 17
    pages_per_sweep = -(-len(ids) // page_size)
    received: dict[str, list[tuple[int, int]]] = {cid: [] for cid in ids}  # (page number, seq)
    sweep: Sweep | None = Sweep(1)
    latest = 1
    page = 0
    while sweep is not None:
        window = shards.next_range(sweep, shards.EVERYTHING)
        todo = [cid for cid in ids if cid in window][:page_size]
        if todo:
            page += 1
            for cid in todo:
                received[cid].append((page, sweep.seq))
            sweep = shards.delivered(sweep, todo[-1])
            if latest < 40 and rng.random() < 0.3:  # a newer event handed over at this checkpoint
                latest += 1
                sweep = shards.supersede(sweep, latest)
            continue
        following = shards.part_exhausted(sweep)
        if following is None and latest > sweep.seq:
            following = shards.supersede(sweep, latest, finished=True)
        sweep = following
    assert latest == 40
    for cid, got in received.items():
        seqs = [seq for _, seq in got]
        assert seqs == sorted(set(seqs)), (cid, seqs)  # strictly rising: never older after newer
        assert seqs[-1] == latest, cid
        # no starvation: everybody gets a newer state at least once per sweep (plus a page),
        # where restarting from the first page on each event would starve the last ids
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(got)]
        assert max(gaps, default=0) <= pages_per_sweep + 1, (cid, gaps)
        assert got[0][0] <= pages_per_sweep


def item(
    seq: int = 3, *, done: bool = False, lease_until: int = 0, sweep_seq: int | None = None
) -> ShardItem:
    return ShardItem(seq, Sweep(sweep_seq or seq, origin="m"), done, "owner-a", lease_until, 1)


@pytest.mark.parametrize(
    ("stored", "seq", "expected"),
    [
        (None, 1, Offer.TAKE),
        (item(3, lease_until=10_000), 4, Offer.HAND_OVER),
        (item(3, lease_until=500), 4, Offer.TAKE),  # the owner's lease ran out
        (item(3, done=True), 4, Offer.TAKE),
        (item(3, done=True), 3, Offer.DUPLICATE),
        (item(3, done=True), 2, Offer.STALE),
        (item(3, lease_until=10_000), 3, Offer.BUSY),
        (item(3, lease_until=10_000), 2, Offer.BUSY),
        (item(3, lease_until=500), 3, Offer.RESUME),
        (item(3, lease_until=500), 1, Offer.RESUME),  # a retry of an older event revives the newest
    ],
)
def test_offer_decisions(stored: ShardItem | None, seq: int, expected: Offer) -> None:
    assert shards.decide_offer(stored, seq, now_ms=1_000) is expected


def test_a_new_owner_goes_on_from_where_the_last_sweep_was() -> None:
    crashed = ShardItem(3, Sweep(3, origin="b", cursor="k"), False, "x", 0, 4)
    assert shards.sweep_after_offer(crashed, Offer.TAKE, 5) == Sweep(5, origin="k")
    assert shards.sweep_after_offer(crashed, Offer.RESUME, 3) == Sweep(3, origin="b", cursor="k")
    handed = ShardItem(6, Sweep(3, origin="b", cursor="k"), False, "x", 0, 4)
    assert shards.sweep_after_offer(handed, Offer.RESUME, 3) == Sweep(6, origin="k")
    finished = ShardItem(3, Sweep(3, origin="b", wrapped=True, cursor="b"), True, None, 0, 4)
    assert shards.sweep_after_offer(finished, Offer.TAKE, 4) == Sweep(4, origin="b")
    assert shards.sweep_after_offer(None, Offer.TAKE, 1) == Sweep(1)
    with pytest.raises(ValueError):
        shards.supersede(Sweep(4), 4)


def test_range_membership_honours_inclusive_ends() -> None:
    window = KeyRange("b", False, "d", True)
    assert [c in window for c in ("b", "ba", "c", "d", "da")] == [False, True, True, True, False]
