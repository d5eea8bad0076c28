"""The only module that touches DynamoDB (`docs/data-model.md` lists every access pattern).

Every access is a GetItem, a Query (paginated) or a keyed/conditional write; never a Scan.
"""

from __future__ import annotations

import heapq
import json
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pynamodb.attributes import MapAttribute
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from . import models, ratelimit, shards
from .config import Settings, settings
from .models import Connection, JobSlots, JobState, ShardCheckpoint, Subscription

MAX_CONNECTION_SECONDS = 2 * 60 * 60  # API Gateway closes every connection after 2 hours
TTL_MARGIN_SECONDS = 15 * 60  # so a live connection's rows never expire before it closes
JOB_TTL_SECONDS = 7 * 24 * 60 * 60  # jobs are forgotten 7 days after their last update
# a job nobody uploaded to is hidden after an hour (at read time) and deleted by TTL after it
QUEUED_JOB_SECONDS = 60 * 60
TERMINAL_STAGES = ("completed", "failed")
# Items per Query page. Subscription keys are ~100 bytes, so 1,000 stay far under the 1 MB page
# limit and a 1,000-subscriber fan-out is one round trip; tests lower it to force pagination.
QUERY_PAGE_SIZE = 1000
# plausible epoch-ms window (2001..2286): catches seconds passed where ms are expected
_MIN_EPOCH_MS = 10**12
_MAX_EPOCH_MS = 10**13

_bound_to: Settings | None = None


def configure(value: Settings | None = None) -> None:
    """Bind the models to the table names (once per container; tests pass their own Settings)."""
    global _bound_to
    _bound_to = value or settings()
    models.bind_tables(_bound_to)
    models.share_one_connection()


def _tables() -> None:
    if _bound_to is None:
        configure()


def _conditional_failed(exc: PutError | UpdateError) -> bool:
    return exc.cause_response_code == "ConditionalCheckFailedException"


def _epoch_ms(value: int, what: str) -> int:
    if not _MIN_EPOCH_MS <= value < _MAX_EPOCH_MS:
        raise ValueError(f"{what} must be epoch milliseconds, got {value}")
    return value


def connection_ttl(connected_at_ms: int) -> int:
    """TTL in epoch SECONDS for a connection's rows: its 2-hour maximum life plus a margin."""
    return _epoch_ms(connected_at_ms, "connectedAt") // 1000 + MAX_CONNECTION_SECONDS + TTL_MARGIN_SECONDS


def job_ttl(updated_at_ms: int) -> int:
    return _epoch_ms(updated_at_ms, "updatedAt") // 1000 + JOB_TTL_SECONDS


def _ttl(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)


# --- connections -------------------------------------------------------------------------


def register_connection(connection_id: str, user_id: str, connected_at_ms: int) -> bool:
    """Put the Connection once; False when it already exists (a retried `$connect`)."""
    _tables()
    item = Connection(
        connection_id,
        user_id=user_id,
        connected_at=connected_at_ms,
        ttl=_ttl(connection_ttl(connected_at_ms)),
    )
    try:
        item.save(condition=Connection.connection_id.does_not_exist())
    except PutError as exc:
        if _conditional_failed(exc):
            return False
        raise
    return True


def forget_connection(connection_id: str) -> int:
    """Delete a connection and every subscription of it; idempotent. Returns subscriptions deleted."""
    _tables()
    deleted = 0
    # BatchWriteItem, 25 deletes a call; pynamodb resends unprocessed items with backoff
    with Subscription.batch_write() as batch:
        for key in Subscription.by_connection.query(connection_id, page_size=QUERY_PAGE_SIZE):
            batch.delete(Subscription(key.topic, connection_id))
            deleted += 1
    Connection(connection_id).delete()
    return deleted


# --- subscriptions -----------------------------------------------------------------------


def subscribe(topic: str, connection_id: str, user_id: str, connected_at_ms: int) -> None:
    """Put (or refresh) the subscription; its TTL is its connection's."""
    _tables()
    Subscription(
        topic,
        connection_id,
        user_id=user_id,
        created_at=now_ms(),
        ttl=_ttl(connection_ttl(connected_at_ms)),
    ).save()


def unsubscribe(topic: str, connection_id: str) -> None:
    _tables()
    Subscription(topic, connection_id).delete()


def topic_subscribers(topic: str, *, after: str | None = None) -> Iterator[str]:
    """Connection ids subscribed to `topic`, ascending, strictly after `after` (paginated Query)."""
    _tables()
    condition = Subscription.connection_id > after if after else None
    for item in Subscription.query(
        topic, range_key_condition=condition, page_size=QUERY_PAGE_SIZE, attributes_to_get=["connectionId"]
    ):
        yield item.connection_id


def subscribers(topics: Iterable[str], *, after: str | None = None) -> Iterator[str]:
    """Connection ids of all `topics`, merged in ascending order without duplicates.

    Each topic's Query already returns its ids sorted, so a merge keeps memory bounded and makes
    the last id of a delivered page a resume cursor valid for every topic at once.
    """
    previous: str | None = None
    for connection_id in heapq.merge(*(topic_subscribers(t, after=after) for t in topics)):
        if connection_id != previous:
            yield connection_id
            previous = connection_id


# --- jobs: creation and worker progress ----------------------------------------------------


class JobNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ProgressTick:
    """One worker progress step: the seq its event must carry, and the aggregated percent."""

    seq: int
    segment_percents: dict[int, float]
    segment_count: int | None
    percent: float


def create_job(
    job_id: str,
    user_id: str,
    *,
    input: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    max_unfinished: int | None = None,
) -> None:
    """Create the job (stage queued, seq 0); `message` becomes the first snapshot. Fails if it exists.

    With `max_unfinished`, the job takes one of the user's slots in the same transaction, or is
    not created at all: `TooManyJobs` when every slot holds an unfinished job (`_create_in_a_slot`).
    """
    _tables()
    updated_at = now_ms()
    job = JobState(
        job_id,
        user_id=user_id,
        updated_at=updated_at,
        ttl=_ttl(updated_at // 1000 + QUEUED_JOB_SECONDS),  # the first progress extends it to 7 days
        seq=0,
        stage="queued",
        percent=0,
        message=json.dumps(message) if message is not None else None,
        progress_seq=0,
        segment_percents={},
        input=input,
    )
    if max_unfinished is None:
        job.save(condition=JobState.job_id.does_not_exist())
    else:
        _create_in_a_slot(job, user_id, max_unfinished)


def _tick(item: JobState) -> ProgressTick:
    raw = item.segment_percents
    values = raw.as_dict() if isinstance(raw, MapAttribute) else dict(raw or {})  # type: ignore[no-untyped-call]
    percents = {int(k): float(v) for k, v in values.items()}
    count = int(item.segment_count) if item.segment_count is not None else None
    denominator = count or len(percents)
    overall = sum(percents.values()) / denominator if denominator else 0.0
    return ProgressTick(int(item.progress_seq), percents, count, round(min(overall, 100.0), 2))


def next_progress(
    job_id: str,
    *,
    segment: int | None = None,
    segment_percent: float | None = None,
    segment_count: int | None = None,
) -> ProgressTick:
    """Take the job's next seq and record a segment's percent (only ever raised), atomically.

    One UpdateItem ADDs 1 to `progressSeq` and sets `segmentPercents.<segment>` under the
    condition that it only rises. When a worker reports a lower percent (a retried segment),
    the condition fails and a second UpdateItem takes the seq alone, leaving the percent as is.
    """
    _tables()
    if (segment is None) != (segment_percent is None):
        raise ValueError("segment and segment_percent go together")
    if segment_percent is not None and not 0 <= segment_percent <= 100:
        raise ValueError("segment_percent must be within 0..100")
    updated_at = now_ms()
    base: list[Action] = [
        JobState.progress_seq.add(1),
        JobState.updated_at.set(updated_at),
        JobState.ttl.set(_ttl(job_ttl(updated_at))),
    ]
    if segment_count is not None:
        base.append(JobState.segment_count.set(segment_count))
    exists: Condition = JobState.job_id.exists()
    job = JobState(job_id)
    try:
        if segment is None or segment_percent is None:
            job.update(actions=base, condition=exists)
        else:
            path = JobState.segment_percents[str(segment)]
            rises = path.does_not_exist() | (path < segment_percent)
            try:
                job.update(actions=[*base, path.set(segment_percent)], condition=exists & rises)
            except UpdateError as exc:
                if not _conditional_failed(exc):
                    raise
                job.update(actions=base, condition=exists)
    except UpdateError as exc:
        if _conditional_failed(exc):
            raise JobNotFound(job_id) from None
        raise
    return _tick(job)


# --- jobs: reads for subscribers ------------------------------------------------------------


def get_job(job_id: str) -> JobState | None:
    """Consistent GetItem of the job (None for a user's slots item, which is no job)."""
    _tables()
    if job_id.startswith(SLOTS_PREFIX):
        return None
    try:
        return JobState.get(job_id, consistent_read=True)
    except JobState.DoesNotExist:
        return None


def recent_jobs(user_id: str, *, limit: int) -> list[JobState]:
    """The user's `limit` most recently updated jobs, newest first.

    The ByUser index lists them (Query, backwards); the items are then read with a consistent
    BatchGetItem because an index lags its table and a snapshot must not be older than the row.
    """
    _tables()
    now = now_ms()
    keys: list[str] = []
    for item in JobState.by_user.query(user_id, scan_index_forward=False, page_size=limit):
        if not is_ghost(item, now):  # never-uploaded jobs are hidden after an hour (TTL lags days)
            keys.append(item.job_id)
            if len(keys) >= limit:
                break
    fresh = {job.job_id: job for job in JobState.batch_get(keys, consistent_read=True)}
    jobs = [fresh[k] for k in keys if k in fresh and fresh[k].user_id == user_id]
    return sorted(jobs, key=lambda job: job.updated_at, reverse=True)


def snapshot_message(job: JobState) -> dict[str, Any]:
    """The job's latest server message; built from its fields when no event has been stored yet."""
    if job.message:
        stored: dict[str, Any] = json.loads(job.message)
        return stored
    stage = job.stage or "queued"
    updated_at = int(job.updated_at)
    return {
        "type": stage if stage in ("completed", "failed") else "progress",
        "jobId": job.job_id,
        "userId": job.user_id,
        "seq": int(job.seq),
        "stage": stage,
        "percent": float(job.percent or 0),
        "emittedAt": updated_at,
        "sentAt": updated_at,
    }


# --- jobs: notify's conditional write of the latest state ---------------------------------------


class Claim(Enum):
    NEW = "new"  # stored as the job's latest state
    DUPLICATE = "duplicate"  # this seq is the stored one already (a redelivery): its delivery is re-offered
    STALE = "stale"  # an older seq than the stored one
    WRONG_OWNER = "wrong_owner"  # the event names another user than the job's owner


@dataclass(frozen=True, slots=True)
class ClaimResult:
    claim: Claim
    stored_seq: int | None = None
    # the job's shard layout as this event found it (a NEW claim records 1 on a job's first event);
    # None: a job stored before layouts were recorded, or gone
    layout: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def claim_job_event(
    job_id: str, user_id: str, seq: int, stage: str, percent: float, message: dict[str, Any]
) -> ClaimResult:
    """Store the event as the job's latest state if its seq is newer (one conditional UpdateItem).

    At-least-once delivery is safe: an older event fails the condition, and a redelivery of the
    stored seq is reported as DUPLICATE so that its delivery is offered again to the shards, whose
    checkpoints (`offer_shard`) drop what was already delivered.
    """
    _tables()
    updated_at = now_ms()
    newer = JobState.seq.does_not_exist() | (JobState.seq < seq)
    owner = JobState.user_id.does_not_exist() | (JobState.user_id == user_id)
    open_job = JobState.stage.does_not_exist() | ~JobState.stage.is_in(*TERMINAL_STAGES)  # terminal is final
    job = JobState(job_id)
    try:
        actions: list[Action] = [
            JobState.user_id.set(user_id),
            JobState.seq.set(seq),
            JobState.stage.set(stage),
            JobState.percent.set(percent),
            JobState.message.set(json.dumps(message, separators=(",", ":"))),
            JobState.updated_at.set(updated_at),
            JobState.ttl.set(_ttl(job_ttl(updated_at))),
            # a job's first event records the inline layout, which notify chooses for any audience
            # of up to shards.INLINE_MAX whatever the layout was (`shards.choose_layout`): a small
            # topic never needs a second write for it (`set_layout` grows a large one)
            JobState.fanout_shards.set(JobState.fanout_shards | 1),
        ]
        job.update(actions=actions, condition=newer & owner & open_job)  # ALL_NEW: fanoutShards comes back
        if stage in TERMINAL_STAGES:
            release_slot(user_id, job_id)
        return ClaimResult(Claim.NEW, layout=_layout(job))
    except UpdateError as exc:
        if not _conditional_failed(exc):
            raise
    stored_job = get_job(job_id)
    if stored_job is None:  # deleted between the two calls (TTL): nothing to deliver to
        return ClaimResult(Claim.STALE)
    stored = int(stored_job.seq)
    if stored_job.user_id != user_id:
        return ClaimResult(Claim.WRONG_OWNER, stored_seq=stored)
    claim = Claim.DUPLICATE if stored == seq else Claim.STALE
    if claim is Claim.DUPLICATE and stored_job.stage in TERMINAL_STAGES:
        release_slot(user_id, job_id)  # a retry after a crash between the claim and the release
    return ClaimResult(claim, stored_seq=stored, layout=_layout(stored_job))


def _layout(job: JobState) -> int | None:
    return int(job.fanout_shards) if job.fanout_shards is not None else None


def set_layout(job_id: str, seq: int, shard_count: int) -> None:
    """Record the job's shard layout, unless a newer event has been stored meanwhile."""
    _tables()
    try:
        JobState(job_id).update(
            actions=[JobState.fanout_shards.set(shard_count)], condition=JobState.seq <= seq
        )
    except UpdateError as exc:
        if not _conditional_failed(exc):
            raise


# --- recipients by key range (sharded delivery) ----------------------------------------------------


def first_page(topic: str) -> shards.FirstPage:
    """One Query page of `topic` (QUERY_PAGE_SIZE ids): enough to deliver a small topic, and to
    estimate a large one's size (`shards.estimate_total`).

    The Query asks for one item more than a page: DynamoDB returns a LastEvaluatedKey whenever
    the Limit is reached, even with nothing after it, so a topic of exactly a page would otherwise
    never be known complete. The extra id, if any, is dropped (the page is then incomplete)."""
    _tables()
    limit = QUERY_PAGE_SIZE + 1
    query = Subscription.query(topic, limit=limit, page_size=limit, attributes_to_get=["connectionId"])
    ids = [item.connection_id for item in query]
    if len(ids) > QUERY_PAGE_SIZE:
        return shards.FirstPage(ids[:QUERY_PAGE_SIZE], complete=False)
    return shards.FirstPage(ids, complete=query.last_evaluated_key is None)


def _range_condition(within: shards.KeyRange) -> Condition | None:
    """DynamoDB allows one sort-key condition: BETWEEN for two bounds (ends filtered exactly after)."""
    key = Subscription.connection_id
    if within.lower is not None and within.upper is not None:
        return key.between(within.lower, within.upper)
    if within.lower is not None:
        return key >= within.lower if within.lower_inclusive else key > within.lower
    if within.upper is not None:
        return key <= within.upper if within.upper_inclusive else key < within.upper
    return None


def topic_range(topic: str, within: shards.KeyRange) -> Iterator[str]:
    """Connection ids of `topic` inside `within`, ascending (paginated Query)."""
    _tables()
    query = Subscription.query(
        topic,
        range_key_condition=_range_condition(within),
        page_size=QUERY_PAGE_SIZE,
        attributes_to_get=["connectionId"],
    )
    for item in query:
        if item.connection_id in within:
            yield item.connection_id


def subscribers_within(topics: Iterable[str], within: shards.KeyRange) -> Iterator[str]:
    """Connection ids of all `topics` inside `within`, merged ascending without duplicates."""
    previous: str | None = None
    for connection_id in heapq.merge(*(topic_range(t, within) for t in topics)):
        if connection_id != previous:
            yield connection_id
            previous = connection_id


def forget_subscribers(topics: Iterable[str], connection_ids: Iterable[str]) -> int:
    """Delete gone connections and their subscriptions to `topics` with BatchWriteItem (25 per
    call, unprocessed items retried by pynamodb). Their other topics' rows go when those topics
    meet the same 410, or by TTL. Returns connections deleted."""
    _tables()
    ids = list(dict.fromkeys(connection_ids))
    if not ids:
        return 0
    topics = list(topics)
    with Subscription.batch_write() as batch:
        for connection_id in ids:
            for topic in topics:
                batch.delete(Subscription(topic, connection_id))
    with Connection.batch_write() as connection_batch:
        for connection_id in ids:
            connection_batch.delete(Connection(connection_id))
    return len(ids)


# --- shard checkpoints (docs/data-model.md: the Fanout table) ---------------------------------------

# How long an invocation owns a shard without renewing it. Every delivered page renews it; an
# offer that finds it live hands its event over (newer) or waits (same seq) instead of posting.
SHARD_LEASE_MS = 20_000
OFFER_ATTEMPTS = 8  # conditional writes lost to concurrent writers before giving up


def _shard_tables() -> None:
    _tables()
    assert _bound_to is not None
    _bound_to.require("fanout_table")


def _shard_item(row: ShardCheckpoint) -> shards.ShardItem:
    sweep = shards.Sweep(int(row.sweep_seq), origin=row.origin, wrapped=bool(row.wrapped), cursor=row.cursor)
    return shards.ShardItem(
        seq=int(row.seq),
        sweep=sweep,
        done=bool(row.done),
        owner=row.owner,
        lease_until=int(row.lease_until or 0),
        version=int(row.version or 0),
    )


@dataclass(frozen=True, slots=True)
class ShardState:
    """A shard checkpoint as read: the decision-relevant item and the newest message."""

    item: shards.ShardItem
    message: str


def read_shard(key: str) -> ShardState | None:
    _shard_tables()
    try:
        row = ShardCheckpoint.get(key, consistent_read=True)
    except ShardCheckpoint.DoesNotExist:
        return None
    return ShardState(_shard_item(row), row.message)


@dataclass(frozen=True, slots=True)
class OfferResult:
    offer: shards.Offer
    sweep: shards.Sweep | None = None  # set when this invocation now owns the shard
    message: str | None = None  # the message of sweep.seq


def _sweep_actions(sweep: shards.Sweep) -> list[Action]:
    return [
        ShardCheckpoint.sweep_seq.set(sweep.seq),
        ShardCheckpoint.origin.set(sweep.origin)
        if sweep.origin is not None
        else ShardCheckpoint.origin.remove(),
        ShardCheckpoint.wrapped.set(sweep.wrapped),
        ShardCheckpoint.cursor.set(sweep.cursor)
        if sweep.cursor is not None
        else ShardCheckpoint.cursor.remove(),
    ]


def _take_at_once(key: str, seq: int, message: str, owner: str) -> OfferResult | None:
    """The common offer in one UpdateItem, without reading the item first: TAKE the shard when it
    has no item yet or its last sweep, of an older seq, ran to the end. Its condition holds exactly
    when `shards.decide_offer` would say TAKE for what it covers (no item; or `done`, `seq` and
    `sweepSeq` below this seq: a done item has no live lease), whatever the item's history (a
    TTL-deleted item re-created holds just as well), and the write depends on nothing else: the
    new sweep starts where the last one began (`shards.sweep_after_offer`: `origin` kept as it is,
    read back from ALL_NEW). None when the condition fails: the caller decides from a read."""
    now = now_ms()
    sweep = shards.Sweep(seq)
    fresh = ShardCheckpoint.shard.does_not_exist()
    swept_to_its_end = ShardCheckpoint.done == True  # noqa: E712 (a condition expression, not a test)
    swept_older = swept_to_its_end & (ShardCheckpoint.seq < seq) & (ShardCheckpoint.sweep_seq < seq)
    actions: list[Action] = [
        ShardCheckpoint.version.add(1),
        ShardCheckpoint.ttl.set(_ttl(job_ttl(now))),
        ShardCheckpoint.seq.set(seq),
        ShardCheckpoint.message.set(message),
        ShardCheckpoint.sweep_seq.set(sweep.seq),
        ShardCheckpoint.wrapped.set(False),
        ShardCheckpoint.cursor.remove(),
        ShardCheckpoint.done.set(False),
        ShardCheckpoint.owner.set(owner),
        ShardCheckpoint.lease_until.set(now + SHARD_LEASE_MS),
    ]
    row = ShardCheckpoint(key)
    try:
        row.update(actions=actions, condition=fresh | swept_older)
    except UpdateError as exc:
        if not _conditional_failed(exc):
            raise
        return None
    return OfferResult(shards.Offer.TAKE, shards.Sweep(seq, origin=row.origin), message)


def offer_shard(key: str, seq: int, message: str, owner: str) -> OfferResult:
    """Offer event `seq` to one shard (`shards.decide_offer`). The common case, a shard free to
    take, is one conditional write (`_take_at_once`); otherwise the item is read, decided on, and
    the decision applied with a write conditional on the item's version, so concurrent offers and
    checkpoints are serialised; retried when lost."""
    _shard_tables()
    taken = _take_at_once(key, seq, message, owner)
    if taken is not None:
        return taken
    for _ in range(OFFER_ATTEMPTS):
        now = now_ms()
        state = read_shard(key)
        item = state.item if state else None
        offer = shards.decide_offer(item, seq, now)
        if offer in (shards.Offer.BUSY, shards.Offer.DUPLICATE, shards.Offer.STALE):
            return OfferResult(offer)
        same: Condition = (
            ShardCheckpoint.shard.does_not_exist()
            if item is None
            else ShardCheckpoint.version == item.version
        )
        actions: list[Action] = [ShardCheckpoint.version.add(1), ShardCheckpoint.ttl.set(_ttl(job_ttl(now)))]
        result = OfferResult(offer)
        if offer is shards.Offer.HAND_OVER or offer is shards.Offer.TAKE:
            actions += [ShardCheckpoint.seq.set(seq), ShardCheckpoint.message.set(message)]
        if offer is shards.Offer.TAKE or offer is shards.Offer.RESUME:
            sweep = shards.sweep_after_offer(item, offer, seq)
            newest = message if offer is shards.Offer.TAKE else (state.message if state else message)
            actions += [
                *_sweep_actions(sweep),
                ShardCheckpoint.done.set(False),
                ShardCheckpoint.owner.set(owner),
                ShardCheckpoint.lease_until.set(now + SHARD_LEASE_MS),
            ]
            result = OfferResult(offer, sweep, newest)
        try:
            ShardCheckpoint(key).update(actions=actions, condition=same)
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise
            continue
        return result
    raise RuntimeError(f"shard {key}: offer lost {OFFER_ATTEMPTS} races in a row")


def checkpoint_shard(key: str, owner: str, sweep: shards.Sweep, *, done: bool = False) -> ShardState | None:
    """Record the sweep's progress (and renew the lease), or its end when `done`, while this
    invocation owns the shard and no newer seq has been handed over. None when written; else the
    item as it is now: a newer seq to switch to, or another owner (this one lost its lease)."""
    _shard_tables()
    now = now_ms()
    actions: list[Action] = [*_sweep_actions(sweep), ShardCheckpoint.version.add(1)]
    if done:
        actions += [ShardCheckpoint.done.set(True), ShardCheckpoint.lease_until.set(0)]
    else:
        actions.append(ShardCheckpoint.lease_until.set(now + SHARD_LEASE_MS))
    mine = (ShardCheckpoint.owner == owner) & (ShardCheckpoint.seq == sweep.seq)
    try:
        ShardCheckpoint(key).update(actions=actions, condition=mine)
    except UpdateError as exc:
        if not _conditional_failed(exc):
            raise
        return read_shard(key)
    return None


# --- jobs: one transcode per job, limits per user (issues 10 and 13) -------------------------


class TranscodeClaim(Enum):
    CLAIMED = "claimed"  # this execution owns the job (first claim, or a retry of the same one)
    TAKEN = "taken"  # another execution already owns it: a second upload or a redelivered event


def claim_transcode(job_id: str, user_id: str, execution_id: str) -> TranscodeClaim:
    """Record `execution_id` as the job's one transcode, unless another execution holds it.

    The S3-to-bus rule cannot name executions after jobs, so the plan step claims the job with a
    conditional UpdateItem before any work: one winner per job, idempotent for its own retries.
    """
    _tables()
    free = JobState.transcode_execution.does_not_exist() | (JobState.transcode_execution == execution_id)
    condition = JobState.job_id.exists() & (JobState.user_id == user_id) & free
    try:
        JobState(job_id).update(actions=[JobState.transcode_execution.set(execution_id)], condition=condition)
    except UpdateError as exc:
        if _conditional_failed(exc):
            return TranscodeClaim.TAKEN
        raise
    return TranscodeClaim.CLAIMED


def is_ghost(job: JobState, now: int) -> bool:
    """A job still queued an hour after creation: its upload never came (hidden, then TTL-deleted)."""
    return (job.stage or "queued") == "queued" and int(job.updated_at) < now - QUEUED_JOB_SECONDS * 1000


# --- jobs: at most N unfinished per user (issue 14, item 13) --------------------------------

SLOTS_PREFIX = "slots#"  # the JobSlots key; job ids are hex, and event and topic ids have no '#'
SLOT_ATTEMPTS = 8  # transactions lost to concurrent ones (TransactionConflict) before giving up


class TooManyJobs(Exception):
    """Every slot of the user holds an unfinished job."""


def _slots(user_id: str) -> JobSlots:
    return JobSlots(SLOTS_PREFIX + user_id)


def _transaction() -> TransactWrite:
    return TransactWrite(connection=JobState._get_connection().connection)


def _cancelled(exc: TransactWriteError) -> list[str | None]:
    """The cancellation reason code of each item of the transaction, in the order pynamodb sent
    them (condition checks, deletes, puts, updates); DynamoDB's "None" for items that did not
    cancel it."""
    reasons = getattr(exc.cause, "cancellation_reasons", None) or []
    return [reason.code if reason is not None else None for reason in reasons]


def _create_in_a_slot(job: JobState, user_id: str, limit: int) -> None:
    """Put the job and its slot in one TransactWriteItems: the slot entry is added under the
    condition `size(held) < limit`, so concurrent creations cannot overshoot the limit."""
    for attempt in range(SLOT_ATTEMPTS):
        now = int(job.updated_at)
        try:
            with _transaction() as transaction:
                transaction.save(job, condition=JobState.job_id.does_not_exist())
                transaction.update(
                    _slots(user_id),
                    actions=[JobSlots.held[job.job_id].set(now), JobSlots.ttl.set(_ttl(job_ttl(now)))],
                    # exists() first: DynamoDB finds size() of a missing map false, moto raises
                    condition=JobSlots.held.exists() & (size(JobSlots.held) < limit),  # type: ignore[no-untyped-call]
                )
            return
        except TransactWriteError as exc:
            reasons = _cancelled(exc)
            if reasons[1:2] == ["ConditionalCheckFailed"]:  # [job put, slot update]
                if not _make_room(user_id, limit, now_ms()):
                    raise TooManyJobs(f"{user_id} has {limit} unfinished jobs") from None
                continue
            if "TransactionConflict" in reasons:  # another transaction on the slots item: retry
                time.sleep(random.uniform(0, 0.02 * 2**attempt))
                continue
            raise
    raise RuntimeError(f"job {job.job_id}: lost {SLOT_ATTEMPTS} transactions in a row")


def releasable(job: JobState | None, now: int) -> bool:
    """Whether a slot held by `job` may be taken back: the job is gone (TTL), finished, or has
    not been updated for an hour (a ghost nobody uploaded to, or a run that died unreported:
    a live run updates `updatedAt` with every progress step)."""
    if job is None:
        return True
    if job.stage in TERMINAL_STAGES:
        return True
    return int(job.updated_at) < now - QUEUED_JOB_SECONDS * 1000


def _make_room(user_id: str, limit: int, now: int) -> bool:
    """After the slot condition failed: create the user's slots item if it is missing, or take
    back the slots of releasable jobs. True when a retry may find a free slot."""
    try:
        row = JobSlots.get(SLOTS_PREFIX + user_id, consistent_read=True)
    except JobSlots.DoesNotExist:
        try:
            JobSlots(SLOTS_PREFIX + user_id, held={}, ttl=_ttl(job_ttl(now))).save(
                condition=JobSlots.key.does_not_exist()
            )
        except PutError as exc:
            if not _conditional_failed(exc):
                raise
        return True
    held = _as_dict(row.held)
    if len(held) < limit:  # a slot was released meanwhile
        return True
    jobs = {job.job_id: job for job in JobState.batch_get(list(held), consistent_read=True)}
    freed = False
    for job_id in held:
        if releasable(jobs.get(job_id), now) and _reclaim(user_id, job_id, now):
            freed = True
    return freed


def _reclaim(user_id: str, job_id: str, now: int) -> bool:
    """Take back one slot, atomically with a check that its job is still releasable (it may have
    started meanwhile); False when the check fails or another request took it back first."""
    cutoff = now - QUEUED_JOB_SECONDS * 1000
    still = (
        JobState.job_id.does_not_exist()
        | JobState.stage.is_in(*TERMINAL_STAGES)
        | (JobState.updated_at < cutoff)
    )
    try:
        with _transaction() as transaction:
            transaction.condition_check(JobState, job_id, condition=still)
            transaction.update(
                _slots(user_id),
                actions=[JobSlots.held[job_id].remove(), JobSlots.ttl.set(_ttl(job_ttl(now)))],
                condition=JobSlots.held[job_id].exists(),
            )
    except TransactWriteError as exc:
        if "ConditionalCheckFailed" in _cancelled(exc) or "TransactionConflict" in _cancelled(exc):
            return False
        raise
    return True


def release_slot(user_id: str, job_id: str) -> bool:
    """Free the job's slot (its terminal event was stored). Idempotent: a slot is the job's own
    entry, removed under the condition that it is there, so a replay releases nothing more."""
    _tables()
    try:
        _slots(user_id).update(
            actions=[JobSlots.held[job_id].remove(), JobSlots.ttl.set(_ttl(job_ttl(now_ms())))],
            condition=JobSlots.held[job_id].exists(),
        )
    except UpdateError as exc:
        if _conditional_failed(exc):
            return False
        raise
    return True


def held_slots(user_id: str) -> list[str]:
    """The ids of the user's jobs that hold a slot (consistent read)."""
    _tables()
    try:
        return list(_as_dict(JobSlots.get(SLOTS_PREFIX + user_id, consistent_read=True).held))
    except JobSlots.DoesNotExist:
        return []


def _as_dict(raw: Any) -> dict[str, Any]:
    return raw.as_dict() if isinstance(raw, MapAttribute) else dict(raw or {})  # type: ignore[no-untyped-call]


# --- connections: the frame rate limit (issue 13) --------------------------------------------

FRAME_TOKEN_ATTEMPTS = 3


def take_frame_token(connection_id: str) -> bool:
    """Take one frame from the connection's token bucket (in its Connections row); False when empty.

    GetItem, then an UpdateItem conditioned on the values read: concurrent invocations for one
    connection (every function instance counts against the same row) retry on a lost race. A
    connection still contended after FRAME_TOKEN_ATTEMPTS is sending far faster than the limit
    and is refused. A connection without a row ($connect never stored it) is not limited here.
    """
    _tables()
    for _ in range(FRAME_TOKEN_ATTEMPTS):
        try:
            row = Connection.get(connection_id, consistent_read=True)
        except Connection.DoesNotExist:
            return True
        current = (
            ratelimit.Bucket(int(row.bucket_tokens), int(row.bucket_at))
            if row.bucket_tokens is not None and row.bucket_at is not None
            else None
        )
        taken = ratelimit.take(current, now_ms())
        if taken is None:
            return False
        unchanged = (
            Connection.bucket_at.does_not_exist()
            if current is None
            else (Connection.bucket_at == current.at_ms) & (Connection.bucket_tokens == current.milli_tokens)
        )
        try:
            Connection(connection_id).update(
                actions=[
                    Connection.bucket_tokens.set(taken.milli_tokens),
                    Connection.bucket_at.set(taken.at_ms),
                ],
                condition=Connection.connection_id.exists() & unchanged,
            )
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise
            continue
        return True
    return False
