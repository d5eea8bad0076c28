"""Sharded delivery as pure decisions: shard layout, key ranges, sweeps and supersession (no I/O).

A topic's subscribers are sorted by connection id, and API Gateway's connection ids are random
base64, so equal slices of the id space hold about equal numbers of subscribers. A *layout* of
`n` shards (a power of two) cuts the id space at `n - 1` short boundary strings; shard `i` holds
the ids `b_i <= id < b_{i+1}`. Every id falls in exactly one shard whatever the ids look like;
only the balance relies on their randomness.

One invocation at a time *owns* a shard of a job (a lease on the shard's checkpoint item) and
sweeps it page by page in id order, always posting the newest state it knows. When a newer
event arrives while a sweep runs, it is *handed over*: the owner notices at its next page
boundary and goes on from where it is with the newer message, to the shard's end and then
round from its start to that point, so nobody waits for a restart and nobody is posted an older
message after a newer one (one poster per shard, seqs only rising). A subscriber therefore sees
a newer state at most one sweep plus one page after it is stored.

`decide_offer` says what an invocation does with an event for one shard, from the shard's
checkpoint item as read; `registry` applies the decision with a conditional write.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

# The characters of API Gateway connection ids (URL-safe base64 of 11 random bytes, as in
# tidings/local/ids.py), in byte order, which is DynamoDB's order for string sort keys. Any other
# character is placed by byte order among them: every id still has one shard.
ALPHABET = "".join(sorted(string.ascii_letters + string.digits + "-_"))
BOUNDARY_CHARS = 3  # 64**3 points: fine enough for any layout up to MAX_SHARDS

INLINE_MAX = 250  # up to this many recipients, notify posts itself: no extra hop
SHARD_SIZE = 1000  # target recipients per shard invocation (about 0.7 s of posting on one vCPU)
MIN_SHARDS = 2  # a topic past INLINE_MAX gets at least this many shards
MAX_SHARDS = 256
SHRINK_FACTOR = 2  # a layout shrinks only when it is this many times larger than needed


# --- the id space ----------------------------------------------------------------------------


def position(connection_id: str) -> float:
    """Where an id lies in [0, 1): its first characters read as digits of ALPHABET, in order."""
    value = 0.0
    scale = 1.0
    for char in connection_id[:BOUNDARY_CHARS]:
        scale /= len(ALPHABET)
        rank = ALPHABET.find(char)
        if rank < 0:  # outside the alphabet: place it by byte order among the alphabet's characters
            rank = sum(1 for c in ALPHABET if c < char)
            rank = min(rank, len(ALPHABET) - 1)
        value += rank * scale
    return value


def boundary(fraction: float) -> str:
    """The boundary string at `fraction` of the id space ("" at 0: the space's start)."""
    if fraction <= 0:
        return ""
    base = len(ALPHABET)
    point = min(round(fraction * base**BOUNDARY_CHARS), base**BOUNDARY_CHARS - 1)
    chars = []
    for _ in range(BOUNDARY_CHARS):
        point, digit = divmod(point, base)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Connection ids between two bounds; None is unbounded. The DynamoDB Query for it is
    `registry.subscribers_within(topics, range)`."""

    lower: str | None = None
    lower_inclusive: bool = True
    upper: str | None = None
    upper_inclusive: bool = False

    def __contains__(self, connection_id: object) -> bool:
        if not isinstance(connection_id, str):
            return False
        lower, upper = self.lower, self.upper
        below = lower is not None and (
            connection_id < lower or (connection_id == lower and not self.lower_inclusive)
        )
        above = upper is not None and (
            connection_id > upper or (connection_id == upper and not self.upper_inclusive)
        )
        return not (below or above)


EVERYTHING = KeyRange()


def shard_range(count: int, index: int) -> KeyRange:
    """Shard `index` of a layout of `count`: `b_index <= id < b_index+1`."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"no shard {index} in a layout of {count}")
    lower = boundary(index / count) if index > 0 else None
    upper = boundary((index + 1) / count) if index + 1 < count else None
    return KeyRange(lower or None, True, upper, False)


# --- layout ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FirstPage:
    """The first Query page of one topic: its ids (ascending) and whether the topic ended there."""

    ids: Sequence[str]
    complete: bool


def estimate_total(pages: Sequence[FirstPage]) -> int:
    """Recipients of all topics, from their first pages: exact when every topic fit in its page,
    else each truncated topic is extrapolated from how far into the id space its page reached."""
    if all(page.complete for page in pages):
        return len({cid for page in pages for cid in page.ids})
    total = 0.0
    for page in pages:
        if page.complete or not page.ids:
            total += len(page.ids)
        else:
            reached = max(position(page.ids[-1]), 1 / len(ALPHABET) ** BOUNDARY_CHARS)
            total += len(page.ids) / reached
    return math.ceil(total)


def _power_of_two_at_least(value: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(value, 1))))


def choose_layout(estimate: int, current: int | None) -> int:
    """How many shards to deliver `estimate` recipients with, given the job's current layout.

    1 (notify posts itself) up to INLINE_MAX; beyond, a power of two giving about SHARD_SIZE per
    shard. A layout grows at once and shrinks only when SHRINK_FACTOR times larger than needed,
    so a topic near a boundary does not flip between layouts from one event to the next.
    """
    if estimate <= INLINE_MAX:
        wanted = 1
    else:
        wanted = min(MAX_SHARDS, max(MIN_SHARDS, _power_of_two_at_least(estimate / SHARD_SIZE)))
    if current is None or wanted > current:
        return wanted
    if current > 1 and current >= wanted * SHRINK_FACTOR:
        return wanted
    return current


# --- a sweep of one shard ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sweep:
    """Delivery of `seq` to one shard: from just after `origin` (None: the shard's start) to the
    shard's end, then, if `origin` is set, from the shard's start up to and including `origin`."""

    seq: int
    origin: str | None = None
    wrapped: bool = False  # in the second part (start .. origin)
    cursor: str | None = None  # the last id delivered in the current part

    @property
    def position(self) -> str | None:
        """The last id this sweep delivered, in circular order (None: the shard's start/end)."""
        if self.cursor is not None:
            return self.cursor
        return None if self.wrapped else self.origin


def next_range(sweep: Sweep, shard: KeyRange) -> KeyRange:
    """The ids the sweep has still to deliver in its current part, ascending."""
    if not sweep.wrapped:
        after = sweep.cursor if sweep.cursor is not None else sweep.origin
        if after is None:
            return shard
        return KeyRange(after, False, shard.upper, shard.upper_inclusive)
    lower = (sweep.cursor, False) if sweep.cursor is not None else (shard.lower, shard.lower_inclusive)
    return KeyRange(lower[0], lower[1], sweep.origin, True)


def delivered(sweep: Sweep, last_id: str) -> Sweep:
    return replace(sweep, cursor=last_id)


def part_exhausted(sweep: Sweep) -> Sweep | None:
    """The sweep after its current part ran out of ids; None when the whole sweep is done."""
    if sweep.wrapped or sweep.origin is None:
        return None
    return replace(sweep, wrapped=True, cursor=None)


def supersede(sweep: Sweep, seq: int, *, finished: bool = False) -> Sweep:
    """A sweep of the newer `seq` that starts where `sweep` is (or ended, when `finished`)."""
    if seq <= sweep.seq:
        raise ValueError(f"seq {seq} does not supersede {sweep.seq}")
    origin = sweep.origin if finished else sweep.position
    return Sweep(seq, origin=origin)


# --- offers: what an invocation does with an event for one shard --------------------------------


@dataclass(frozen=True, slots=True)
class ShardItem:
    """A shard's checkpoint item as read from DynamoDB."""

    seq: int
    sweep: Sweep
    done: bool
    owner: str | None
    lease_until: int  # epoch ms
    version: int


class Offer(Enum):
    TAKE = "take"  # nobody is delivering: own the shard and sweep the new seq
    RESUME = "resume"  # the owner died mid-sweep (lease ran out): own it and go on from its checkpoint
    HAND_OVER = "hand_over"  # a live owner is sweeping an older seq: leave it the newer one
    BUSY = "busy"  # a live owner is sweeping this seq (or newer): a redelivery; retry later if it dies
    DUPLICATE = "duplicate"  # this seq was swept to the end
    STALE = "stale"  # a newer seq was swept to the end


def decide_offer(item: ShardItem | None, seq: int, now_ms: int) -> Offer:
    if item is None:
        return Offer.TAKE
    live = not item.done and item.lease_until > now_ms
    if seq > item.seq:
        return Offer.HAND_OVER if live else Offer.TAKE
    if item.done:
        return Offer.DUPLICATE if seq == item.seq else Offer.STALE
    return Offer.BUSY if live else Offer.RESUME


def sweep_after_offer(item: ShardItem | None, offer: Offer, seq: int) -> Sweep:
    """The sweep the new owner starts: a new seq goes on from where the shard's last sweep was
    (so a crashed or finished sweep's subscribers are not always served last); a resume goes on
    from the checkpoint."""
    if offer is Offer.RESUME:
        assert item is not None
        if item.seq > item.sweep.seq:  # handed a newer seq before it died: go on with that one
            return supersede(item.sweep, item.seq)
        return item.sweep
    if offer is not Offer.TAKE:
        raise ValueError(f"{offer} does not start a sweep")
    if item is None:
        return Sweep(seq)
    return supersede(item.sweep, seq, finished=item.done) if seq > item.sweep.seq else Sweep(seq)


def shard_key(job_id: str, count: int, index: int) -> str:
    """The checkpoint item's key: one per job, layout and shard."""
    return f"{job_id}/{count}/{index}"
