"""The Step Functions steps: plan, segment, audio, merge, fail. `app.py` only wraps these.

State passed between steps (`JobPlan.to_state`) is small JSON: the job, the measured input facts
and the segment windows; intermediate files live under the work prefix, named by segment index,
so the merge step needs no Map results (the Map's output is discarded).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import storage
from .errors import ERRORS_BY_NAME, CorruptInput, InternalError, TranscodeError, WorkerLost
from .media import (
    SourceFacts,
    concat_and_mux,
    encode_audio,
    encode_segment,
    make_poster,
    measure_input,
    verify_output,
)
from .pipeline import POSTER_AT, input_fields
from .plan import PRESETS, SegmentPlan, output_size, plan_segments, segment_weights
from .progress import ProgressBlock, Reporter, Snapshot, eta_seconds, job_percent, work_percent
from .reporting import JobPublisher, JobRef, SegmentPublisher, build_event, error_fields, segment_list
from .sinks import ProgressSink

logger = logging.getLogger(__name__)

UPLOAD_KEY = re.compile(r"^uploads/(?P<user>[A-Za-z0-9_.:@-]{1,128})/(?P<job>[A-Za-z0-9_.:@-]{1,128})/[^/]+$")
# Lambda / Step Functions error names meaning the worker itself died (timeout, out of memory, crash)
WORKER_LOST_ERRORS = frozenset(
    {"Sandbox.Timedout", "States.Timeout", "States.HeartbeatTimeout", "Runtime.ExitError", "Lambda.Unknown"}
)


class InvalidRequest(ValueError):
    """The step's input does not name a job (a misrouted event): nothing to report to."""


def job_from_input(event: Mapping[str, Any], settings: storage.WorkerSettings) -> JobRef:
    """The job from `{bucket, key, jobId, userId}` or from an S3 `Object Created` EventBridge event."""
    detail = event.get("detail")
    if isinstance(detail, Mapping) and "object" in detail:
        bucket = str(detail.get("bucket", {}).get("name", ""))
        key = str(detail["object"].get("key", ""))
    else:
        bucket = str(event.get("bucket") or settings.input_bucket)
        key = str(event.get("key", ""))
    match = UPLOAD_KEY.match(key)
    job_id = str(event.get("jobId") or (match.group("job") if match else ""))
    user_id = str(event.get("userId") or (match.group("user") if match else ""))
    if not (bucket and key and job_id and user_id):
        raise InvalidRequest("expected bucket, key, jobId and userId (or an uploads/{user}/{job}/ key)")
    if match and (match.group("job"), match.group("user")) != (job_id, user_id):
        raise InvalidRequest("the key's user and job do not match jobId/userId")
    return JobRef(job_id, user_id, bucket, key)


@dataclass(frozen=True, slots=True)
class JobPlan:
    job: JobRef
    facts: SourceFacts
    segments: list[SegmentPlan]
    size: tuple[int, int]
    preset: str
    work_bucket: str
    work_prefix: str
    output_bucket: str
    output_key: str
    poster_key: str
    started_at: float  # epoch seconds, for elapsedSeconds

    def segment_key(self, index: int) -> str:
        return f"{self.work_prefix}segments/{index:05d}.mp4"

    @property
    def audio_key(self) -> str:
        return f"{self.work_prefix}audio.m4a"

    def to_state(self) -> dict[str, Any]:
        """The plan step's output; `segments` is what the Map iterates over."""
        job = {
            "jobId": self.job.job_id,
            "userId": self.job.user_id,
            "bucket": self.job.bucket,
            "key": self.job.key,
            "facts": asdict(self.facts),
            "size": list(self.size),
            "preset": self.preset,
            "work": {"bucket": self.work_bucket, "prefix": self.work_prefix},
            "output": {"bucket": self.output_bucket, "key": self.output_key, "posterKey": self.poster_key},
            "segmentFrames": [s.frames for s in self.segments],
            "fps": [self.facts.fps_num, self.facts.fps_den],
            "startedAt": self.started_at,
        }
        return {
            "jobId": self.job.job_id,
            "userId": self.job.user_id,
            "job": job,
            "segments": [s.index for s in self.segments],
            "segmentCount": len(self.segments),
        }

    @classmethod
    def from_job_state(cls, job: Mapping[str, Any]) -> JobPlan:
        fps_num, fps_den = (int(v) for v in job["fps"])
        segments: list[SegmentPlan] = []
        start = 0
        for index, frames in enumerate(job["segmentFrames"]):
            segments.append(SegmentPlan(index, start, int(frames), fps_num, fps_den))
            start += int(frames)
        width, height = (int(v) for v in job["size"])
        return cls(
            job=JobRef(str(job["jobId"]), str(job["userId"]), str(job["bucket"]), str(job["key"])),
            facts=SourceFacts(**job["facts"]),
            segments=segments,
            size=(width, height),
            preset=str(job["preset"]),
            work_bucket=str(job["work"]["bucket"]),
            work_prefix=str(job["work"]["prefix"]),
            output_bucket=str(job["output"]["bucket"]),
            output_key=str(job["output"]["key"]),
            poster_key=str(job["output"]["posterKey"]),
            started_at=float(job["startedAt"]),
        )


def _event_now(sink: ProgressSink, job: JobRef, snapshot: Snapshot) -> None:
    JobPublisher(sink, job)(snapshot, False)


def plan_step(
    event: Mapping[str, Any], settings: storage.WorkerSettings, sink: ProgressSink
) -> dict[str, Any]:
    """Download and probe the input, publish `probing`, and split it into segment windows."""
    job = job_from_input(event, settings)
    started = time.time()
    _event_now(sink, job, Snapshot("probing", 0.0, fields=input_fields(job, None)))
    with tempfile.TemporaryDirectory(prefix="plan-") as scratch:
        local = storage.download(job.bucket, job.key, Path(scratch) / "input")
        facts = measure_input(local)
    preset = PRESETS.get(settings.preset, PRESETS["720p"])
    segments = plan_segments(
        facts.frames,
        facts.fps,
        target_seconds=settings.segment_seconds,
        max_segments=settings.max_segments,
        split=facts.constant_frame_rate,
    )
    stem = PurePosixPath(job.key).stem or "video"
    out_prefix = f"{settings.output_prefix}{job.user_id}/{job.job_id}/"
    plan = JobPlan(
        job=job,
        facts=facts,
        segments=segments,
        size=output_size(facts.width, facts.height, preset),
        preset=preset.name,
        work_bucket=settings.work_bucket,
        work_prefix=f"{settings.work_prefix}{job.job_id}/",
        output_bucket=settings.output_bucket,
        output_key=f"{out_prefix}{stem}-{preset.name}.mp4",
        poster_key=f"{out_prefix}{stem}-poster.jpg",
        started_at=started,
    )
    warnings = [] if facts.constant_frame_rate else ["variable frame rate: encoded as one segment"]
    if not facts.has_audio:
        warnings.append("the input has no audio track")
    tick = sink.next_tick(job.job_id, segment_count=len(segments))
    fields = input_fields(job, facts) | {
        "totalFrames": facts.frames,
        "warnings": warnings or None,
        "segments": segment_list({}, len(segments)),
    }
    sink.publish(build_event(job, tick.seq, Snapshot("probing", job_percent("probing", 100), fields=fields)))
    return plan.to_state()


def segment_step(
    event: Mapping[str, Any],
    sink: ProgressSink,
    *,
    concurrency: int,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Encode one segment from a presigned URL (ffmpeg range-reads its window) to the work prefix."""
    plan = JobPlan.from_job_state(event["job"])
    segment = plan.segments[int(event["segment"])]
    weights = segment_weights(plan.segments)
    # the job's budget of 4 events/s is shared by the workers running at once
    interval = 0.25 * max(1, min(concurrency, len(plan.segments)))
    reporter = Reporter(
        SegmentPublisher(sink, plan.job, segment.index, weights),
        clock,
        min_interval=interval,
        heartbeat=max(2.0, interval),
    )

    def report(block: ProgressBlock) -> None:
        percent = work_percent(block, total_frames=segment.frames, duration_s=segment.duration_s) or 0.0
        remaining = segment.duration_s * (1 - percent / 100)
        fields: dict[str, object] = {
            "frames": block.frame,
            "totalFrames": plan.facts.frames,
            "fps": block.fps,
            "speed": block.speed,
            "etaSeconds": eta_seconds(remaining, block.speed),
        }
        reporter.offer(Snapshot("transcoding", percent, float(block.frame or 0), fields))

    source = storage.presigned_get(plan.job.bucket, plan.job.key)
    with tempfile.TemporaryDirectory(prefix="segment-") as scratch:
        path = Path(scratch) / "segment.mp4"
        frames = encode_segment(
            source,
            segment,
            path,
            size=plan.size,
            preset=PRESETS[plan.preset],
            on_progress=report,
        )
        storage.upload(path, plan.work_bucket, plan.segment_key(segment.index), content_type="video/mp4")
    reporter.close()  # the verified 100 below is the segment's last word
    SegmentPublisher(sink, plan.job, segment.index, weights)(
        Snapshot("transcoding", 100.0, float(frames), {"frames": frames, "totalFrames": plan.facts.frames}),
        False,
    )
    return {"index": segment.index, "frames": frames}


def audio_step(event: Mapping[str, Any]) -> dict[str, Any]:
    """Encode the whole audio track once (no progress events: it is a small share of the work)."""
    plan = JobPlan.from_job_state(event["job"])
    if not plan.facts.has_audio:
        return {"audio": False}
    source = storage.presigned_get(plan.job.bucket, plan.job.key)
    with tempfile.TemporaryDirectory(prefix="audio-") as scratch:
        path = Path(scratch) / "audio.m4a"
        encode_audio(source, path, preset=PRESETS[plan.preset])
        storage.upload(path, plan.work_bucket, plan.audio_key, content_type="audio/mp4")
    return {"audio": True}


def merge_step(event: Mapping[str, Any], sink: ProgressSink) -> dict[str, Any]:
    """Concatenate, mux, verify against the input, upload output and poster, publish `completed`."""
    plan = JobPlan.from_job_state(event["job"])
    job, facts = plan.job, plan.facts
    base = input_fields(job, facts) | {"frames": facts.frames, "totalFrames": facts.frames}
    done = segment_list(dict.fromkeys(range(len(plan.segments)), 100.0), len(plan.segments))
    _event_now(sink, job, Snapshot("merging", job_percent("merging", 0), fields=base | {"segments": done}))
    with tempfile.TemporaryDirectory(prefix="merge-") as scratch_dir:
        scratch = Path(scratch_dir)
        paths = []
        for segment in plan.segments:
            path = scratch / f"segment-{segment.index:05d}.mp4"
            storage.s3().download_file(plan.work_bucket, plan.segment_key(segment.index), str(path))
            paths.append(path)
        audio: Path | None = None
        if facts.has_audio:
            audio = scratch / "audio.m4a"
            storage.s3().download_file(plan.work_bucket, plan.audio_key, str(audio))
        output = scratch / "output.mp4"
        poster = scratch / "poster.jpg"
        concat_and_mux(paths, audio, output, scratch)
        _event_now(sink, job, Snapshot("merging", job_percent("merging", 30), fields=base))
        verified = verify_output(output, facts)
        make_poster(output, poster, at_s=facts.duration_s * POSTER_AT)
        _event_now(sink, job, Snapshot("merging", job_percent("merging", 80), fields=base))
        storage.upload(output, plan.output_bucket, plan.output_key, content_type="video/mp4")
        storage.upload(poster, plan.output_bucket, plan.poster_key, content_type="image/jpeg")
    storage.delete_prefix(plan.work_bucket, plan.work_prefix)
    output_info = {
        "bucket": plan.output_bucket,
        "key": plan.output_key,
        "posterKey": plan.poster_key,
        "durationSeconds": round(verified.duration_s, 3),
        "sizeBytes": verified.size_bytes,
        "elapsedSeconds": round(max(time.time() - plan.started_at, 0.0), 3),
    }
    tick = sink.next_tick(job.job_id)
    sink.publish(
        build_event(
            job,
            tick.seq,
            Snapshot("completed", 100.0, fields=base | {"output": output_info, "segments": done}),
        )
    )
    return {"jobId": job.job_id, "output": output_info}


def error_from_catch(error: Mapping[str, Any] | None) -> TranscodeError:
    """The `TranscodeError` a Step Functions Catch (`{"Error", "Cause"}`) stands for."""
    name = str((error or {}).get("Error", ""))
    cause_text = str((error or {}).get("Cause", ""))
    try:
        cause = json.loads(cause_text) if cause_text else {}
    except json.JSONDecodeError:
        cause = {"errorMessage": cause_text}
    message = str(cause.get("errorMessage", "") if isinstance(cause, dict) else cause_text)[:500]
    if name in ERRORS_BY_NAME:
        return ERRORS_BY_NAME[name](message or name)
    if name in WORKER_LOST_ERRORS:
        return WorkerLost(f"a worker stopped before finishing ({name})")
    if name == InvalidRequest.__name__:
        return CorruptInput(message or "invalid job input")
    return InternalError(f"{name or 'unknown error'}" + (f": {message}" if message else ""))


def fail_step(
    event: Mapping[str, Any], settings: storage.WorkerSettings, sink: ProgressSink
) -> dict[str, Any]:
    """Publish `failed` for the Catch's error; keeps the job's last percent (it never goes back)."""
    from tidings_core import registry

    job_state = event.get("job") if isinstance(event.get("job"), Mapping) else None
    try:
        job = (
            JobRef(
                str(job_state["jobId"]),
                str(job_state["userId"]),
                str(job_state["bucket"]),
                str(job_state["key"]),
            )
            if job_state
            else job_from_input(event, settings)
        )
    except InvalidRequest:
        logger.error("fail step without a job: %s", json.dumps(event.get("error"))[:500])
        return {"published": False}
    error = error_from_catch(event.get("error"))
    stored = registry.get_job(job.job_id)
    if stored is None or stored.user_id != job.user_id:
        logger.error("fail step for an unknown job %s: %s", job.job_id, error.code)
        return {"published": False}
    if stored.stage in ("completed", "failed"):  # terminal states are final
        logger.warning("fail step for a finished job %s (%s): %s", job.job_id, stored.stage, error.code)
        return {"published": False}
    last_percent = float(stored.percent or 0) if stored is not None and stored.percent is not None else 0.0
    if last_percent >= 100:
        last_percent = 99.9  # a failed job never reads 100
    tick = sink.next_tick(job.job_id)
    snapshot = Snapshot("failed", last_percent, fields=input_fields(job, None) | error_fields(error))
    sink.publish(build_event(job, tick.seq, snapshot))
    return {"published": True, "jobId": job.job_id, "error": error_fields(error)["error"]}
