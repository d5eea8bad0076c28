"""Job event → every subscriber of `job:<id>` and `user:<owner>`, exactly resumable (calls registry and push).

Order of work: validate; store the event as the job's latest state only if its seq is newer
(conditional write); stream the recipients of both topics in connection-id order; post one page
at a time (the next page's Query runs meanwhile); after each page, prune Gone connections and
move the checkpoint cursor past it. A retry after a crash resumes after the last completed page.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from . import protocol, push, registry
from .events import InvalidJobEvent, parse_job_event
from .push import Outcome, Pusher

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

logger = logging.getLogger(__name__)

PAGE_SIZE = 100  # recipients per delivery page (= per checkpoint write)


@dataclass(slots=True)
class FanOutReport:
    event_id: str
    outcome: str  # new | resume | duplicate | stale | wrong_owner | invalid | too_large
    job_id: str | None = None
    seq: int | None = None
    recipients: int = 0
    delivered: int = 0
    gone: int = 0
    throttled: int = 0
    failed: int = 0
    pages: int = 0
    duration_ms: float = 0.0
    publish_to_post_ms: float | None = None

    @property
    def dropped(self) -> bool:
        return self.outcome in ("duplicate", "stale", "wrong_owner", "invalid", "too_large")


@functools.cache
def _tracer() -> Tracer:
    """Created on first use, after the handler's own Tracer: Powertools shares one configuration
    between instances, and this one (which patches nothing) must not change what the handler patches."""
    from aws_lambda_powertools import Tracer

    return Tracer(auto_patch=False)


def _pages(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(ids)
    while page := list(islice(iterator, size)):
        yield page


class FanOutInProgress(RuntimeError):
    """Another invocation is still delivering this event; raised so the bus retries it later, when
    that fan-out has either finished (the retry is then dropped) or lost its lease (then resumed)."""


BUSY_WAIT_S = 5.0  # how long a redelivered event waits for a live fan-out before asking for a retry
BUSY_POLL_S = 0.25


def _claim(job_id: str, event: Any, message: dict[str, Any]) -> registry.ClaimResult:
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        claim = registry.claim_job_event(job_id, event.userId, event.seq, event.stage, event.percent, message)
        if claim.claim is not registry.Claim.BUSY:
            return claim
        if time.monotonic() >= deadline:
            raise FanOutInProgress(f"job {job_id} seq {event.seq} is being delivered by another invocation")
        time.sleep(BUSY_POLL_S)


def deliver_job_event(
    detail: Any, *, event_id: str, via: Pusher | None = None, page_size: int | None = None
) -> FanOutReport:
    """Deliver one bus event. Returns normally for poison events so the bus does not retry them;
    raises only on infrastructure failures (DynamoDB), which the bus should retry."""
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
    claim = _claim(job_id, event, message)
    report.outcome = claim.claim.value
    if claim.claim not in (registry.Claim.NEW, registry.Claim.RESUME):
        logger.info(
            "job event dropped",
            extra={"event_id": event_id, "job_id": job_id, "seq": event.seq, "stored_seq": claim.stored_seq},
        )
        return report
    report.publish_to_post_ms = float(message["sentAt"] - event.emittedAt)
    poster = via or push.pusher()
    topics = [protocol.job_topic(event.jobId), protocol.user_topic(event.userId)]
    pages = _pages(registry.subscribers(topics, after=claim.cursor), page_size or PAGE_SIZE)
    # One thread fetches the next Query page while this page posts; it is awaited before this
    # page's writes, so reads and writes of one fan-out never run at once.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidings-query") as fetcher:
        page = next(pages, None)
        while page is not None:
            upcoming = fetcher.submit(next, pages, None)
            with _tracer().provider.in_subsegment("## post page") as subsegment:
                subsegment.put_metadata("recipients", len(page), namespace="tidings")
                results = poster.post_many(page, data)
            wait([upcoming])  # a Query failure is raised below, after this page's checkpoint
            for result in results:
                report.throttled += result.throttled
                if result.outcome is Outcome.DELIVERED:
                    report.delivered += 1
                elif result.outcome is Outcome.GONE:
                    report.gone += 1
                    registry.forget_connection(result.connection_id)  # that id only
                else:
                    report.failed += 1
            report.recipients += len(page)
            report.pages += 1
            if not registry.save_fanout_cursor(event.jobId, event.seq, page[-1]):
                logger.info(
                    "newer event took over the fan-out", extra={"event_id": event_id, "job_id": job_id}
                )
                break
            page = upcoming.result()
        else:
            registry.finish_fanout(event.jobId, event.seq)
    report.duration_ms = (time.perf_counter() - started) * 1000
    return report
