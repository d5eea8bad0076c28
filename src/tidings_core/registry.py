"""The only module that touches DynamoDB (`docs/data-model.md` lists every access pattern).

Every access is a GetItem, a Query (paginated) or a keyed/conditional write; never a Scan.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pynamodb.attributes import MapAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from . import models
from .config import Settings, settings
from .models import Connection, JobState, Subscription

MAX_CONNECTION_SECONDS = 2 * 60 * 60  # API Gateway closes every connection after 2 hours
TTL_MARGIN_SECONDS = 15 * 60  # so a live connection's rows never expire before it closes
JOB_TTL_SECONDS = 7 * 24 * 60 * 60  # jobs are forgotten 7 days after their last update
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
    for key in Subscription.by_connection.query(connection_id, page_size=QUERY_PAGE_SIZE):
        Subscription(key.topic, connection_id).delete()
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
    job_id: str, user_id: str, *, input: dict[str, Any] | None = None, message: dict[str, Any] | None = None
) -> None:
    """Create the job (stage queued, seq 0); `message` becomes the first snapshot. Fails if it exists."""
    _tables()
    updated_at = now_ms()
    job = JobState(
        job_id,
        user_id=user_id,
        updated_at=updated_at,
        ttl=_ttl(job_ttl(updated_at)),
        seq=0,
        stage="queued",
        percent=0,
        message=json.dumps(message) if message is not None else None,
        progress_seq=0,
        segment_percents={},
        input=input,
    )
    job.save(condition=JobState.job_id.does_not_exist())


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
    """Consistent GetItem of the job."""
    _tables()
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
    keys = [
        item.job_id
        for item in JobState.by_user.query(user_id, scan_index_forward=False, limit=limit, page_size=limit)
    ]
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


# --- jobs: notify's conditional writes and the fan-out checkpoint ----------------------------


class Claim(Enum):
    NEW = "new"  # stored; fan out from the start
    RESUME = "resume"  # this seq's fan-out did not finish and its lease expired; go on after the cursor
    BUSY = "busy"  # another invocation is delivering this seq right now (its lease is live)
    DUPLICATE = "duplicate"  # this seq was already delivered
    STALE = "stale"  # an older seq than the stored one
    WRONG_OWNER = "wrong_owner"  # the event names another user than the job's owner


@dataclass(frozen=True, slots=True)
class ClaimResult:
    claim: Claim
    cursor: str | None = None
    stored_seq: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# How long one invocation owns a fan-out without renewing it. Every delivered page renews it; a
# redelivered event that finds it live waits or retries instead of posting a second copy.
FANOUT_LEASE_MS = 20_000


def claim_job_event(
    job_id: str, user_id: str, seq: int, stage: str, percent: float, message: dict[str, Any]
) -> ClaimResult:
    """Store the event as the job's latest state if its seq is newer, and open its fan-out checkpoint.

    A conditional UpdateItem makes at-least-once delivery safe: a duplicate or older event fails
    the condition. A redelivery of the seq whose fan-out never finished resumes from its cursor.
    """
    _tables()
    updated_at = now_ms()
    newer = JobState.seq.does_not_exist() | (JobState.seq < seq)
    owner = JobState.user_id.does_not_exist() | (JobState.user_id == user_id)
    try:
        actions: list[Action] = [
            JobState.user_id.set(user_id),
            JobState.seq.set(seq),
            JobState.stage.set(stage),
            JobState.percent.set(percent),
            JobState.message.set(json.dumps(message, separators=(",", ":"))),
            JobState.updated_at.set(updated_at),
            JobState.ttl.set(_ttl(job_ttl(updated_at))),
            JobState.fanout_seq.set(seq),
            JobState.fanout_done.set(False),
            JobState.fanout_cursor.remove(),
            JobState.fanout_lease_until.set(updated_at + FANOUT_LEASE_MS),
        ]
        JobState(job_id).update(actions=actions, condition=newer & owner)
        return ClaimResult(Claim.NEW)
    except UpdateError as exc:
        if not _conditional_failed(exc):
            raise
    job = get_job(job_id)
    if job is None:  # deleted between the two calls (TTL): nothing to deliver to
        return ClaimResult(Claim.STALE)
    stored = int(job.seq)
    if job.user_id != user_id:
        return ClaimResult(Claim.WRONG_OWNER, stored_seq=stored)
    if stored == seq and job.fanout_seq == seq and not job.fanout_done:
        return _take_over_fanout(job_id, seq, stored)
    return ClaimResult(Claim.DUPLICATE if stored == seq else Claim.STALE, stored_seq=stored)


def _take_over_fanout(job_id: str, seq: int, stored: int) -> ClaimResult:
    """Resume an unfinished fan-out only when its owner's lease has run out (it crashed)."""
    now = now_ms()
    expired = JobState.fanout_lease_until.does_not_exist() | (JobState.fanout_lease_until < now)
    unfinished = (JobState.fanout_seq == seq) & (JobState.fanout_done == False)  # noqa: E712 - a condition
    try:
        JobState(job_id).update(
            actions=[JobState.fanout_lease_until.set(now + FANOUT_LEASE_MS)], condition=unfinished & expired
        )
    except UpdateError as exc:
        if not _conditional_failed(exc):
            raise
        return ClaimResult(Claim.BUSY, stored_seq=stored)
    job = get_job(job_id)
    return ClaimResult(Claim.RESUME, cursor=job.fanout_cursor if job else None, stored_seq=stored)


def _checkpoint(job_id: str, seq: int, actions: list[Any]) -> bool:
    """Apply `actions` only while the checkpoint still belongs to `seq` (a newer event takes it over)."""
    try:
        JobState(job_id).update(actions=actions, condition=JobState.fanout_seq == seq)
    except UpdateError as exc:
        if _conditional_failed(exc):
            return False
        raise
    return True


def save_fanout_cursor(job_id: str, seq: int, cursor: str) -> bool:
    """Record that every recipient up to and including `cursor` received `seq`."""
    _tables()
    lease = JobState.fanout_lease_until.set(now_ms() + FANOUT_LEASE_MS)
    return _checkpoint(job_id, seq, [JobState.fanout_cursor.set(cursor), lease])


def finish_fanout(job_id: str, seq: int) -> bool:
    _tables()
    done = [
        JobState.fanout_done.set(True),
        JobState.fanout_cursor.remove(),
        JobState.fanout_lease_until.remove(),
    ]
    return _checkpoint(job_id, seq, done)
