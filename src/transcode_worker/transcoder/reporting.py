"""Turning reporter snapshots into `JobEvent`s: seq from the sink, overall percent, segment list."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tidings_core.events import JobEvent, parse_job_event

from .errors import TranscodeError
from .progress import Snapshot, job_percent, weighted_percent
from .sinks import ProgressSink


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class JobRef:
    job_id: str
    user_id: str
    bucket: str = "local"
    key: str = ""


def build_event(
    job: JobRef, seq: int, snapshot: Snapshot, *, wall_ms: Callable[[], int] = now_ms
) -> JobEvent:
    detail: dict[str, Any] = {
        "version": 1,
        "jobId": job.job_id,
        "userId": job.user_id,
        "seq": seq,
        "stage": snapshot.stage,
        "percent": round(min(max(snapshot.percent, 0.0), 100.0), 2),
        "emittedAt": wall_ms(),
    }
    detail.update({k: v for k, v in snapshot.fields.items() if v is not None})
    return parse_job_event(detail)


class JobPublisher:
    """Publishes job-level snapshots: the seq comes from the sink, the percent is the snapshot's."""

    def __init__(self, sink: ProgressSink, job: JobRef) -> None:
        self.sink = sink
        self.job = job

    def __call__(self, snapshot: Snapshot, final: bool) -> None:
        tick = self.sink.next_tick(self.job.job_id)
        self.sink.publish(build_event(self.job, tick.seq, snapshot))


def segment_list(
    percents: Mapping[int, float], count: int, *, failed: int | None = None
) -> list[dict[str, Any]]:
    rows = []
    for index in range(count):
        percent = round(min(max(percents.get(index, 0.0), 0.0), 100.0), 2)
        state = "done" if percent >= 100 else "running" if percent > 0 else "pending"
        if index == failed:
            state = "failed"
        rows.append({"index": index, "percent": percent, "state": state})
    return rows


class SegmentPublisher:
    """For one parallel worker: records its segment percent and takes the seq in one atomic step,
    then reports the job's overall percent from every segment's recorded percent (duration-weighted),
    so events from different workers agree and rise with seq."""

    def __init__(self, sink: ProgressSink, job: JobRef, segment: int, weights: Mapping[int, float]) -> None:
        self.sink = sink
        self.job = job
        self.segment = segment
        self.weights = dict(weights)

    def __call__(self, snapshot: Snapshot, final: bool) -> None:
        tick = self.sink.next_tick(
            self.job.job_id,
            segment=self.segment,
            segment_percent=round(min(max(snapshot.percent, 0.0), 100.0), 2),
            segment_count=len(self.weights),
        )
        percents = dict(tick.segment_percents)
        overall = job_percent("transcoding", weighted_percent(percents, self.weights))
        fields = dict(snapshot.fields)
        fields["segments"] = segment_list(percents, len(self.weights))
        self.sink.publish(
            build_event(self.job, tick.seq, Snapshot("transcoding", overall, snapshot.work, fields))
        )


def error_fields(error: TranscodeError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message[:500], "retryable": error.retryable}}
