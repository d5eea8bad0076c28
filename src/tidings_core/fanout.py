"""Job event → every subscriber of `job:<id>` and `user:<owner>`, in shards (calls registry and push).

notify (`deliver_job_event`): validate; store the event as the job's latest state only if its
seq is newer (conditional write); then read the first Query page of both topics at once (two
threads); choose the job's shard layout (`shards.choose_layout`; a job's first event records
the inline layout in the claim itself).
A small audience (the common case) is delivered right here as a single shard, with the ids
already read: no extra hop. A large one is handed to one asynchronous invocation of the deliver
function per shard (`ShardInvoker`), all at once; when the first pages held the whole audience
(up to a page, `registry.QUERY_PAGE_SIZE`), each task carries its range's ids, so the shards
post without a Query of their own. Before notify's first post to a small audience: the claim,
the two Queries at once, then one write taking the shard.

A shard (`deliver_shard`): offer the event to the shard's checkpoint item (take it, resume it,
hand it over to the live owner, or drop it: `shards.decide_offer`; a shard free to take, the
common case, is taken with one conditional write, `registry.offer_shard`); as its owner, post
page by page in id order (the next Query page is fetched while one posts), and after each page
write the checkpoint (after the last page, the sweep's end in the same write), which also tells
whether a newer event was handed over: then the sweep goes on from there with the newer message.
Gone connections are deleted on a side thread in batches.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

from . import protocol, push, registry, shards
from .events import InvalidJobEvent, parse_job_event
from .push import Outcome, Pusher

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

logger = logging.getLogger(__name__)

PAGE_SIZE = 100  # recipients per delivery page (= per checkpoint write, = supersession latency)
PRUNE_BATCH = 25  # gone connections per batch delete (BatchWriteItem takes 25 items)
BUSY_WAIT_S = 5.0  # how long a redelivered event waits for a live sweep before asking for a retry
BUSY_POLL_S = 0.25
INVOKE_THREADS = 16
SHARD_TASK = "tidings.shard"  # the `kind` of a deliver function's payload
# An asynchronous Invoke's payload limit was 256 KB until Lambda raised it to 1 MB (2025); a task
# carries its ids only when it stays within the older limit (the message is up to 128 KB)
MAX_TASK_BYTES = 256 * 1024


@dataclass(slots=True)
class FanOutReport:
    event_id: str
    outcome: str  # new | duplicate | stale | wrong_owner | invalid | too_large; shards: an Offer value
    job_id: str | None = None
    seq: int | None = None
    shards: int = 0  # the layout: 1 = delivered inline by notify
    recipients: int = 0
    delivered: int = 0
    gone: int = 0
    throttled: int = 0
    failed: int = 0
    pages: int = 0
    superseded: int = 0  # newer events taken over mid-sweep
    duration_ms: float = 0.0
    publish_to_post_ms: float | None = None

    @property
    def dropped(self) -> bool:
        return self.outcome in ("stale", "wrong_owner", "invalid", "too_large")


class FanOutInProgress(RuntimeError):
    """Another invocation is still sweeping this seq; raised so Lambda retries the event later,
    when that sweep has either finished (the retry is then dropped) or lost its lease (resumed)."""


class InvalidShardTask(ValueError):
    """A deliver function payload that is not a shard task."""


@dataclass(frozen=True, slots=True)
class ShardTask:
    """One shard of one event: what notify sends to the deliver function."""

    job_id: str
    user_id: str
    seq: int
    shards: int
    shard: int
    message: str  # the encoded server message
    # the recipients within this shard's range, read by notify for this seq (its first pages held
    # the whole audience); None: the shard reads its range itself
    ids: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return shards.shard_key(self.job_id, self.shards, self.shard)

    @property
    def topics(self) -> list[str]:
        return [protocol.job_topic(self.job_id), protocol.user_topic(self.user_id)]

    def payload(self) -> dict[str, Any]:
        return {
            "kind": SHARD_TASK,
            "jobId": self.job_id,
            "userId": self.user_id,
            "seq": self.seq,
            "shards": self.shards,
            "shard": self.shard,
            "message": self.message,
        } | ({} if self.ids is None else {"ids": list(self.ids)})

    @classmethod
    def from_payload(cls, payload: Any) -> ShardTask:
        if not isinstance(payload, dict) or payload.get("kind") != SHARD_TASK:
            raise InvalidShardTask("not a shard task")
        try:
            task = cls(
                str(payload["jobId"]),
                str(payload["userId"]),
                int(payload["seq"]),
                int(payload["shards"]),
                int(payload["shard"]),
                str(payload["message"]),
                _ids(payload.get("ids")),
            )
            within = shards.shard_range(task.shards, task.shard)  # raises outside its layout
            if task.ids is not None and not all(cid in within for cid in task.ids):
                raise ValueError("ids outside the shard's range")
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidShardTask(f"bad shard task: {exc}") from None
        return task


def _ids(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(cid, str) for cid in value):
        raise TypeError("ids must be a list of connection ids")
    return tuple(value)


def shard_tasks(
    job_id: str, user_id: str, seq: int, layout: int, message: str, known: Sequence[str] | None
) -> list[ShardTask]:
    """One task per shard of `layout`; with `known` (the whole audience, sorted), each task
    carries its range's ids when its payload stays within MAX_TASK_BYTES."""
    tasks = []
    for index in range(layout):
        task = ShardTask(job_id, user_id, seq, layout, index, message)
        if known is not None:
            within = shards.shard_range(layout, index)
            with_ids = dataclasses.replace(task, ids=tuple(cid for cid in known if cid in within))
            if len(json.dumps(with_ids.payload(), separators=(",", ":"))) <= MAX_TASK_BYTES:
                task = with_ids
        tasks.append(task)
    return tasks


class ShardInvoker(Protocol):
    """Starts the deliver function once per task, asynchronously (what notify needs of Lambda)."""

    def invoke(self, tasks: Sequence[ShardTask]) -> None: ...


class LambdaShardInvoker:
    """`Invoke` with `InvocationType=Event` per shard, from a small thread pool (docs/benchmarks.md
    compares asynchronous invokes with SQS and EventBridge for this hop)."""

    def __init__(self, function_name: str, client: Any | None = None) -> None:
        self.function_name = function_name
        self._client = client

    def _lambda(self) -> Any:
        if self._client is None:  # only large audiences get here: keep it out of every cold start
            import botocore.session

            self._client = botocore.session.get_session().create_client("lambda")
        return self._client

    def _invoke(self, task: ShardTask) -> None:
        body = json.dumps(task.payload(), separators=(",", ":")).encode()
        self._lambda().invoke(FunctionName=self.function_name, InvocationType="Event", Payload=body)

    def invoke(self, tasks: Sequence[ShardTask]) -> None:
        self._lambda()
        with ThreadPoolExecutor(min(INVOKE_THREADS, len(tasks)) or 1) as pool:
            for future in [pool.submit(self._invoke, task) for task in tasks]:
                future.result()  # a failed invoke fails notify: Lambda retries it, offers are idempotent


@functools.cache
def _default_invoker(function_name: str) -> LambdaShardInvoker:
    return LambdaShardInvoker(function_name)


def shard_invoker() -> ShardInvoker:
    from .config import settings

    return _default_invoker(settings().require("deliver_function"))


@functools.cache
def _tracer() -> Tracer:
    """Created on first use, after the handler's own Tracer: Powertools shares one configuration
    between instances, and this one (which patches nothing) must not change what the handler patches."""
    from . import tracing

    return tracing.tracer(auto_patch=False)


# --- notify ---------------------------------------------------------------------------------------


def deliver_job_event(
    detail: Any, *, event_id: str, via: Pusher | None = None, invoker: ShardInvoker | None = None
) -> FanOutReport:
    """Deliver one bus event. Returns normally for poison events so the bus does not retry them;
    raises only on infrastructure failures (DynamoDB, Lambda), which should be retried."""
    started = time.perf_counter()
    try:
        event = parse_job_event(detail)
    except InvalidJobEvent as exc:
        logger.error("invalid job event dropped", extra={"event_id": event_id, "reason": exc.reason})
        return FanOutReport(event_id, "invalid")
    report = FanOutReport(event_id, "new", job_id=event.jobId, seq=event.seq)
    try:
        data = protocol.encode(protocol.job_message(event))
    except protocol.MessageTooLarge as exc:
        logger.error("too large", extra={"event_id": event_id, "job_id": event.jobId, "why": f"{exc}"})
        report.outcome = "too_large"
        return report
    message = json.loads(data)
    job_id = event.jobId
    claim = registry.claim_job_event(job_id, event.userId, event.seq, event.stage, event.percent, message)
    report.outcome = claim.claim.value
    if claim.claim not in (registry.Claim.NEW, registry.Claim.DUPLICATE):
        logger.info(
            "job event dropped",
            extra={"event_id": event_id, "job_id": job_id, "seq": event.seq, "stored_seq": claim.stored_seq},
        )
        if claim.claim is registry.Claim.STALE and claim.layout:
            # the retry of an invocation that died: a newer seq may have been handed over to it
            # (HAND_OVER), and waits in the shard's checkpoint for whoever finds the lease run out
            text = data.decode()
            for index in range(claim.layout):
                task = ShardTask(job_id, event.userId, event.seq, claim.layout, index, text)
                resumed = resume_orphaned_shard(task, via=via)
                if resumed is not None:
                    _add(report, resumed)
        return report
    report.publish_to_post_ms = float(message["sentAt"] - event.emittedAt)
    topics = [protocol.job_topic(job_id), protocol.user_topic(event.userId)]
    first = first_pages(topics)
    layout = shards.choose_layout(shards.estimate_total(first), claim.layout)
    if layout != claim.layout:
        registry.set_layout(job_id, event.seq, layout)
    report.shards = layout
    text = data.decode()
    known = _merged(first) if all(page.complete for page in first) else None
    if layout == 1:
        task = ShardTask(job_id, event.userId, event.seq, 1, 0, text)
        inline = deliver_shard(task, via=via, known_ids=known)
        _add(report, inline)
    else:
        (invoker or shard_invoker()).invoke(shard_tasks(job_id, event.userId, event.seq, layout, text, known))
    report.duration_ms = (time.perf_counter() - started) * 1000
    return report


def resume_orphaned_shard(task: ShardTask, *, via: Pusher | None = None) -> FanOutReport | None:
    """Deliver what a dead owner left in `task`'s shard (its lease ran out before it was done),
    whatever seq it had reached or been handed; None when the shard is done, live or absent."""
    state = registry.read_shard(task.key)
    if state is None:
        return None
    if shards.decide_offer(state.item, task.seq, registry.now_ms()) is not shards.Offer.RESUME:
        return None
    return deliver_shard(task, via=via)


@functools.cache
def _reads() -> ThreadPoolExecutor:
    """A thread for notify's second first-page Query, kept for the container's life (a pool per
    event would start its thread on every event's critical path)."""
    return ThreadPoolExecutor(1, thread_name_prefix="tidings-first-page")


def first_pages(topics: Sequence[str]) -> list[shards.FirstPage]:
    """The first Query page of each topic, all at once: the last on this thread, the others on
    `_reads()`. Only after the claim: a subscriber writes its subscription before it reads the
    job's state, so either its snapshot has the event or these Queries find it
    (docs/data-model.md, "Subscribe vs. notify")."""
    *others, last = topics
    reading = [_reads().submit(contextvars.copy_context().run, registry.first_page, t) for t in others]
    try:
        here = registry.first_page(last)
    finally:
        pages = [future.result() for future in reading]
    return [*pages, here]


def _merged(pages: Iterable[shards.FirstPage]) -> list[str]:
    return sorted({cid for page in pages for cid in page.ids})


def _add(total: FanOutReport, part: FanOutReport) -> None:
    for name in ("recipients", "delivered", "gone", "throttled", "failed", "pages", "superseded"):
        setattr(total, name, getattr(total, name) + getattr(part, name))


# --- one shard ------------------------------------------------------------------------------------


def _offer(task: ShardTask, owner: str) -> registry.OfferResult:
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        result = registry.offer_shard(task.key, task.seq, task.message, owner)
        if result.offer is not shards.Offer.BUSY:
            return result
        if time.monotonic() >= deadline:
            raise FanOutInProgress(
                f"shard {task.key} seq {task.seq} is being delivered by another invocation"
            )
        time.sleep(BUSY_POLL_S)


class _Pruner:
    """Deletes gone connections on one side thread, in batches, while the posts go on."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self._pending: list[str] = []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tidings-prune")
        self._jobs: list[Future[int]] = []

    def add(self, connection_ids: Iterable[str]) -> None:
        self._pending.extend(connection_ids)
        if len(self._pending) >= PRUNE_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._jobs.append(self._pool.submit(registry.forget_subscribers, self.topics, batch))

    def close(self) -> None:
        """Delete what is left and wait (a Lambda is frozen after it returns)."""
        self._flush()
        try:
            for job in self._jobs:
                job.result()
        finally:
            self._pool.shutdown(wait=True)


class _Pages:
    """Pages of `ids`; the next page is read on `fetcher` while the caller posts this one, and
    `last()` tells whether the page just taken was the final one (its checkpoint is then the end)."""

    def __init__(self, ids: Iterator[str], size: int, fetcher: ThreadPoolExecutor) -> None:
        self._take = lambda: list(islice(ids, size))
        self._fetcher = fetcher
        self._upcoming = fetcher.submit(self._take)

    def __iter__(self) -> Iterator[list[str]]:
        while page := self._upcoming.result():
            self._upcoming = self._fetcher.submit(self._take)
            yield page

    def last(self) -> bool:
        """No page after the one taken (waits for the read started while it was posted). A read
        that failed is not the end: its error is raised by the next iteration, once the page taken
        has been checkpointed."""
        return self._upcoming.exception() is None and not self._upcoming.result()


def deliver_shard(
    task: ShardTask,
    *,
    via: Pusher | None = None,
    known_ids: Sequence[str] | None = None,
    owner: str | None = None,
) -> FanOutReport:
    """Deliver `task` to its shard as the shard's owner, or leave it to the owner there is.

    `known_ids` (or the task's `ids`): every recipient of the topics within reach, as read for
    the task's seq (notify's first pages held them all), so no Query. They serve that seq's sweep
    only: a sweep of another seq (taken over, resumed, or handed over mid-sweep) reads its ranges,
    since a subscriber that arrived after this read may be in that seq's audience and not in this
    one's (docs/data-model.md, "Subscribe vs. notify").
    """
    if known_ids is None:
        known_ids = task.ids
    started = time.perf_counter()
    owner = owner or uuid.uuid4().hex
    report = FanOutReport(task.key, "", job_id=task.job_id, seq=task.seq, shards=task.shards)
    offer = _offer(task, owner)
    report.outcome = offer.offer.value
    if offer.sweep is None or offer.message is None:
        return report
    sweep, data = offer.sweep, offer.message.encode()
    shard = shards.shard_range(task.shards, task.shard)
    poster = via or push.pusher()
    poster.pace(task.shards)  # this shard's share of the account's throttle
    pruner = _Pruner(task.topics)

    def recipients(within: shards.KeyRange, seq: int) -> Iterator[str]:
        if known_ids is not None and seq == task.seq:
            return (cid for cid in known_ids if cid in within)
        return registry.subscribers_within(task.topics, within)

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-query") as fetcher:
            while True:
                switched = finished = False
                pages = _Pages(recipients(shards.next_range(sweep, shard), sweep.seq), PAGE_SIZE, fetcher)
                for page in pages:
                    with _tracer().provider.in_subsegment("## post page") as subsegment:
                        subsegment.put_metadata("recipients", len(page), namespace="tidings")
                        results = poster.post_many(page, data)
                    pruner.add(_tally(report, results))
                    report.recipients += len(page)
                    report.pages += 1
                    sweep = shards.delivered(sweep, page[-1])
                    # the sweep's last page: its checkpoint is the end (one write, not two)
                    final = pages.last() and shards.part_exhausted(sweep) is None
                    now = registry.checkpoint_shard(task.key, owner, sweep, done=final)
                    if now is None:
                        finished = final
                        continue
                    if now.item.owner != owner:
                        report.outcome = "lost_lease"
                        return report
                    sweep, data = shards.supersede(sweep, now.item.seq, finished=final), now.message.encode()
                    report.superseded += 1
                    switched = True
                    break
                if finished:
                    break
                if switched:
                    continue
                following = shards.part_exhausted(sweep)
                if following is not None:
                    sweep = following
                    continue
                now = registry.checkpoint_shard(task.key, owner, sweep, done=True)
                if now is None:
                    break
                if now.item.owner != owner:
                    report.outcome = "lost_lease"
                    return report
                sweep, data = shards.supersede(sweep, now.item.seq, finished=True), now.message.encode()
                report.superseded += 1
    finally:
        pruner.close()
        report.duration_ms = (time.perf_counter() - started) * 1000
    return report


def _tally(report: FanOutReport, results: Iterable[push.PostResult]) -> list[str]:
    gone = []
    for result in results:
        report.throttled += result.throttled
        if result.outcome is Outcome.DELIVERED:
            report.delivered += 1
        elif result.outcome is Outcome.GONE:
            report.gone += 1
            gone.append(result.connection_id)
        else:
            report.failed += 1
    return gone


def deliver_shard_task(payload: Any, *, via: Pusher | None = None) -> FanOutReport:
    """The deliver function's work: one shard of one event. A malformed payload is dropped."""
    try:
        task = ShardTask.from_payload(payload)
    except InvalidShardTask as exc:
        logger.error("invalid shard task dropped", extra={"reason": f"{exc}"})
        return FanOutReport("", "invalid")
    return deliver_shard(task, via=via)
