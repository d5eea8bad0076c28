"""Where progress goes: the `ProgressSink` protocol, the real bus + registry sink and an in-memory one.

A sink does two things: hand out the job's next seq together with the aggregated per-segment
percents (atomic across parallel workers), and publish one event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from tidings_core.events import JobEvent, publish_job_event

logger = logging.getLogger(__name__)


class Tick(Protocol):
    """What `tidings_core.registry.next_progress` returns (its `ProgressTick`)."""

    @property
    def seq(self) -> int: ...

    @property
    def segment_percents(self) -> Mapping[int, float]: ...


class ProgressSink(Protocol):
    def next_tick(
        self,
        job_id: str,
        *,
        segment: int | None = None,
        segment_percent: float | None = None,
        segment_count: int | None = None,
    ) -> Tick: ...

    def publish(self, event: JobEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class MemoryTick:
    seq: int
    segment_percents: Mapping[int, float]


class InMemorySink:
    """Thread-safe sink with the registry's semantics: seq +1 per tick, segment percents only rise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._percents: dict[str, dict[int, float]] = {}
        self.events: list[JobEvent] = []

    def next_tick(
        self,
        job_id: str,
        *,
        segment: int | None = None,
        segment_percent: float | None = None,
        segment_count: int | None = None,
    ) -> MemoryTick:
        if (segment is None) != (segment_percent is None):
            raise ValueError("segment and segment_percent go together")
        with self._lock:
            seq = self._seq.get(job_id, 0) + 1
            self._seq[job_id] = seq
            percents = self._percents.setdefault(job_id, {})
            if segment is not None and segment_percent is not None:
                percents[segment] = max(percents.get(segment, 0.0), segment_percent)
            return MemoryTick(seq, dict(percents))

    def publish(self, event: JobEvent) -> None:
        with self._lock:
            self.events.append(event)

    def for_job(self, job_id: str) -> list[JobEvent]:
        with self._lock:
            return [e for e in self.events if e.jobId == job_id]


class BusSink:
    """The deployed sink: seq from DynamoDB (`next_progress`), events to EventBridge.

    A progress event that cannot be published is logged and skipped (notifications must not fail
    the transcode); a terminal one is retried and then raised, so Step Functions retries the step.
    """

    def __init__(
        self,
        *,
        publish: Callable[[JobEvent], object] = publish_job_event,
        attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._publish = publish
        self._attempts = attempts
        self._sleep = sleep

    def next_tick(
        self,
        job_id: str,
        *,
        segment: int | None = None,
        segment_percent: float | None = None,
        segment_count: int | None = None,
    ) -> Tick:
        from tidings_core import registry  # DynamoDB only where the real sink is used

        return registry.next_progress(
            job_id, segment=segment, segment_percent=segment_percent, segment_count=segment_count
        )

    def publish(self, event: JobEvent) -> None:
        terminal = event.stage in ("completed", "failed")
        for attempt in range(1, self._attempts + 1):
            try:
                self._publish(event)
                return
            except Exception:
                if attempt == self._attempts and terminal:
                    raise
                if attempt == self._attempts:
                    logger.warning(
                        "progress event %s/%s not published", event.jobId, event.seq, exc_info=True
                    )
                    return
                self._sleep(0.2 * 2**attempt)
