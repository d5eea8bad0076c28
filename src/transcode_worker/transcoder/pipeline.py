"""The whole job in one process: `run_local_pipeline` (split and parallel) and `run_single_pass`.

Used by the tests, the benchmarks and `tidings` locally; the Lambda steps call the same media
functions one at a time. Every outcome ends in exactly one terminal event (completed or failed).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InternalError, TranscodeError
from .ffmpeg import ProcessHook, check, run_ffmpeg
from .media import (
    PROGRESS_ARGS,
    SourceFacts,
    Verified,
    concat_and_mux,
    encode_audio,
    encode_segment,
    encoder_threads,
    make_poster,
    measure_input,
    verify_output,
)
from .plan import PRESETS, Preset, SegmentPlan, output_size, plan_segments, segment_weights
from .progress import (
    ProgressBlock,
    Reporter,
    Snapshot,
    eta_seconds,
    job_percent,
    weighted_percent,
    work_percent,
)
from .reporting import JobPublisher, JobRef, error_fields, segment_list
from .sinks import ProgressSink

logger = logging.getLogger(__name__)

POSTER_AT = 0.1  # poster frame at 10% of the duration


@dataclass(frozen=True, slots=True)
class PipelineResult:
    job_id: str
    ok: bool
    output_path: Path | None = None
    poster_path: Path | None = None
    verified: Verified | None = None
    error: TranscodeError | None = None
    segments: int = 0
    elapsed_s: float = 0.0
    warnings: list[str] = field(default_factory=list)


def input_fields(job: JobRef, facts: SourceFacts | None) -> dict[str, Any]:
    info: dict[str, Any] = {"bucket": job.bucket, "key": job.key}
    if facts is not None:
        info.update(
            durationSeconds=round(facts.duration_s, 3),
            width=facts.width,
            height=facts.height,
            fps=round(float(facts.fps), 3),
        )
    return {"input": info}


@dataclass
class _SegmentState:
    plan: SegmentPlan
    percent: float = 0.0
    frames: int = 0
    speed: float | None = None
    fps: float | None = None
    running: bool = False
    failed: bool = False


class _Tracker:
    """Per-segment progress of one local job; thread-safe; percents only rise."""

    def __init__(self, segments: list[SegmentPlan], facts: SourceFacts, started: float) -> None:
        self.lock = threading.Lock()
        self.states = {s.index: _SegmentState(s) for s in segments}
        self.weights = segment_weights(segments)
        self.facts = facts
        self.started = started

    def update(self, index: int, block: ProgressBlock) -> None:
        with self.lock:
            state = self.states[index]
            state.running = True
            percent = work_percent(block, total_frames=state.plan.frames, duration_s=state.plan.duration_s)
            if percent is not None:
                state.percent = max(state.percent, percent)
            if block.frame is not None:
                state.frames = max(state.frames, min(block.frame, state.plan.frames))
            state.speed, state.fps = block.speed, block.fps

    def done(self, index: int) -> None:
        with self.lock:
            state = self.states[index]
            state.percent, state.frames, state.running = 100.0, state.plan.frames, False

    def snapshot(self, clock: float, *, failed: int | None = None) -> Snapshot:
        with self.lock:
            percents = {i: s.percent for i, s in self.states.items()}
            overall = weighted_percent(percents, self.weights)
            frames = sum(s.frames for s in self.states.values())
            running = [s for s in self.states.values() if s.running]
            speed = sum(s.speed for s in running if s.speed) or None
            fps = sum(s.fps for s in running if s.fps) or None
        remaining_s = self.facts.duration_s * (1 - overall / 100)
        elapsed = clock - self.started
        # observed throughput (media seconds per wall second) over the whole run, else ffmpeg's
        observed = (self.facts.duration_s * overall / 100) / elapsed if elapsed > 0 and overall > 0 else speed
        fields: dict[str, Any] = {
            "frames": frames,
            "totalFrames": self.facts.frames,
            "speed": round(speed, 3) if speed else None,
            "fps": round(fps, 2) if fps else None,
            "etaSeconds": eta_seconds(remaining_s, observed),
            "segments": segment_list(percents, len(self.states), failed=failed),
        }
        return Snapshot("transcoding", job_percent("transcoding", overall), float(frames), fields)


class _Processes:
    """The live ffmpeg processes of a job, so a failure elsewhere can stop them."""

    def __init__(self, hook: ProcessHook | None) -> None:
        self.lock = threading.Lock()
        self.live: set[subprocess.Popen[str]] = set()
        self.hook = hook
        self.cancelled = False

    def started(self, process: subprocess.Popen[str]) -> None:
        with self.lock:
            self.live.add(process)
            if self.cancelled:
                process.kill()
        if self.hook is not None:
            self.hook(process)

    def kill_all(self) -> None:
        with self.lock:
            self.cancelled = True
            for process in self.live:
                if process.poll() is None:
                    process.kill()


def run_local_pipeline(
    input_path: str | Path,
    output_path: str | Path,
    *,
    sink: ProgressSink,
    parallelism: int = 2,
    job_id: str | None = None,
    user_id: str = "local",
    preset: Preset = PRESETS["720p"],
    segment_seconds: float = 10.0,
    poster_path: str | Path | None = None,
    max_attempts: int = 2,
    on_process_start: Callable[[int, subprocess.Popen[str]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    work_dir: str | Path | None = None,
) -> PipelineResult:
    """Split the video into segments, encode them `parallelism` at a time with the audio alongside,
    merge, verify, and report every step to `sink`. A segment whose encoder dies is retried up to
    `max_attempts` times. `on_process_start(segment_index, process)` sees each encoder (-1: audio).
    """
    job = JobRef(job_id or f"local-{uuid.uuid4().hex[:12]}", user_id, "local", Path(input_path).name)
    reporter = Reporter(JobPublisher(sink, job), clock)
    started = clock()
    output = Path(output_path)
    poster = Path(poster_path) if poster_path else output.with_suffix(".jpg")
    scratch = Path(tempfile.mkdtemp(prefix="transcode-", dir=work_dir))
    facts: SourceFacts | None = None
    segments: list[SegmentPlan] = []
    warnings: list[str] = []
    reporter.offer(Snapshot("probing", 0.0, fields=input_fields(job, None)))
    try:
        facts = measure_input(input_path)
        split = facts.constant_frame_rate
        if not split:
            warnings.append("variable frame rate: encoded as one segment")
        segments = plan_segments(facts.frames, facts.fps, target_seconds=segment_seconds, split=split)
        if not facts.has_audio:
            warnings.append("the input has no audio track")
        base = input_fields(job, facts) | {"warnings": warnings or None}
        reporter.offer(Snapshot("probing", 100.0 * 0.02, fields=base | {"totalFrames": facts.frames}))
        size = output_size(facts.width, facts.height, preset)
        tracker = _Tracker(segments, facts, clock())
        processes = _Processes(None)
        paths = _encode_parallel(
            input_path,
            segments,
            facts,
            scratch,
            size=size,
            preset=preset,
            parallelism=parallelism,
            max_attempts=max_attempts,
            tracker=tracker,
            reporter=reporter,
            base=base,
            processes=processes,
            on_process_start=on_process_start,
            clock=clock,
            warnings=warnings,
        )
        audio_path = scratch / "audio.m4a" if facts.has_audio else None
        merging = base | {"frames": facts.frames, "totalFrames": facts.frames}
        reporter.offer(Snapshot("merging", job_percent("merging", 0), float(facts.frames), merging))
        concat_and_mux(paths, audio_path, output, scratch)
        reporter.offer(Snapshot("merging", job_percent("merging", 30), float(facts.frames) + 1, merging))
        verified = verify_output(output, facts)
        reporter.offer(Snapshot("merging", job_percent("merging", 85), float(facts.frames) + 2, merging))
        make_poster(output, poster, at_s=facts.duration_s * POSTER_AT)
        elapsed = clock() - started
        reporter.finish(
            Snapshot(
                "completed",
                100.0,
                fields=merging
                | {
                    "warnings": list(warnings) or None,
                    "segments": segment_list(dict.fromkeys(range(len(segments)), 100.0), len(segments)),
                    "output": {
                        "bucket": "local",
                        "key": output.name,
                        "posterKey": poster.name,
                        "durationSeconds": round(verified.duration_s, 3),
                        "sizeBytes": verified.size_bytes,
                        "elapsedSeconds": round(elapsed, 3),
                    },
                },
            )
        )
        return PipelineResult(
            job.job_id, True, output, poster, verified, None, len(segments), elapsed, warnings
        )
    except Exception as exc:  # every outcome must end the job: a failed event, never silence
        error = exc if isinstance(exc, TranscodeError) else InternalError.wrap(exc)
        failed = input_fields(job, facts) | error_fields(error) | {"warnings": list(warnings) or None}
        reporter.finish(Snapshot("failed", 0.0, fields=failed))
        return PipelineResult(
            job.job_id, False, error=error, segments=len(segments), elapsed_s=clock() - started
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _encode_parallel(
    input_path: str | Path,
    segments: list[SegmentPlan],
    facts: SourceFacts,
    scratch: Path,
    *,
    size: tuple[int, int],
    preset: Preset,
    parallelism: int,
    max_attempts: int,
    tracker: _Tracker,
    reporter: Reporter,
    base: dict[str, Any],
    processes: _Processes,
    on_process_start: Callable[[int, subprocess.Popen[str]], None] | None,
    clock: Callable[[], float],
    warnings: list[str],
) -> list[Path]:
    """Encode every segment and the audio; returns the segment files in order. Raises the first failure."""
    threads = encoder_threads(parallelism)

    def starter(index: int) -> ProcessHook:
        def started(process: subprocess.Popen[str]) -> None:
            processes.started(process)
            if on_process_start is not None:
                on_process_start(index, process)

        return started

    def report(index: int, block: ProgressBlock) -> None:
        tracker.update(index, block)
        reporter.offer(_with_base(tracker.snapshot(clock()), base))

    def encode(segment: SegmentPlan) -> Path:
        path = scratch / f"segment-{segment.index:05d}.mp4"
        for attempt in range(1, max_attempts + 1):
            try:
                encode_segment(
                    input_path,
                    segment,
                    path,
                    size=size,
                    preset=preset,
                    threads=threads,
                    on_progress=lambda block: report(segment.index, block),
                    on_start=starter(segment.index),
                )
                break
            except TranscodeError as error:
                if processes.cancelled or not error.retryable or attempt == max_attempts:
                    raise
                warnings.append(f"segment {segment.index} attempt {attempt} failed ({error.code}); retried")
                logger.warning("segment %s attempt %s failed: %s", segment.index, attempt, error)
        tracker.done(segment.index)
        reporter.offer(_with_base(tracker.snapshot(clock()), base))
        return path

    def audio() -> None:
        for attempt in range(1, max_attempts + 1):
            try:
                encode_audio(input_path, scratch / "audio.m4a", preset=preset, on_start=starter(-1))
                return
            except TranscodeError as error:
                if processes.cancelled or not error.retryable or attempt == max_attempts:
                    raise

    with ThreadPoolExecutor(max_workers=max(1, parallelism) + (1 if facts.has_audio else 0)) as pool:
        futures: list[Future[Any]] = [pool.submit(encode, segment) for segment in segments]
        if facts.has_audio:
            futures.append(pool.submit(audio))
        pending: set[Future[Any]] = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            reporter.poll()  # flush a held snapshot while encoders are quiet
            failure = next((f.exception() for f in finished if f.exception() is not None), None)
            if failure is not None:
                processes.kill_all()
                for future in pending:
                    future.cancel()
                raise failure
        return [future.result() for future in futures[: len(segments)]]


def _with_base(snapshot: Snapshot, base: dict[str, Any]) -> Snapshot:
    return Snapshot(snapshot.stage, snapshot.percent, snapshot.work, base | snapshot.fields)


def run_single_pass(
    input_path: str | Path,
    output_path: str | Path,
    *,
    sink: ProgressSink,
    job_id: str | None = None,
    user_id: str = "local",
    preset: Preset = PRESETS["720p"],
    clock: Callable[[], float] = time.monotonic,
) -> PipelineResult:
    """One ffmpeg run for video and audio (the baseline the split pipeline is benchmarked against)."""
    job = JobRef(job_id or f"single-{uuid.uuid4().hex[:12]}", user_id, "local", Path(input_path).name)
    reporter = Reporter(JobPublisher(sink, job), clock)
    started = clock()
    output = Path(output_path)
    facts: SourceFacts | None = None
    reporter.offer(Snapshot("probing", 0.0, fields=input_fields(job, None)))
    try:
        facts = measure_input(input_path)
        base = input_fields(job, facts)
        width, height = output_size(facts.width, facts.height, preset)
        args = ["-i", str(input_path), "-map", "0:v:0"]
        if facts.has_audio:
            args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", preset.audio_bitrate]
        args += [
            "-vf",
            f"scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p",
            "-fps_mode",
            "passthrough",
        ]
        args += ["-c:v", "libx264", "-preset", preset.x264_preset, "-crf", str(preset.crf)]
        args += ["-movflags", "+faststart", *PROGRESS_ARGS, "-y", str(output)]
        known = facts

        def report(block: ProgressBlock) -> None:
            # frames, not out_time: the audio runs ahead of the video in a muxed run
            percent = work_percent(block, total_frames=known.frames, duration_s=known.duration_s) or 0.0
            fields = base | {
                "frames": block.frame,
                "totalFrames": known.frames,
                "speed": block.speed,
                "fps": block.fps,
                "etaSeconds": eta_seconds(known.duration_s * (1 - percent / 100), block.speed),
            }
            reporter.offer(
                Snapshot("transcoding", job_percent("transcoding", percent), block.frame or 0, fields)
            )

        check(run_ffmpeg(args, on_progress=report), "transcode")
        reporter.offer(Snapshot("merging", job_percent("merging", 50), float(facts.frames) + 1, base))
        verified = verify_output(output, facts)
        elapsed = clock() - started
        output_info = {
            "bucket": "local",
            "key": output.name,
            "durationSeconds": round(verified.duration_s, 3),
            "sizeBytes": verified.size_bytes,
            "elapsedSeconds": round(elapsed, 3),
        }
        reporter.finish(Snapshot("completed", 100.0, fields=base | {"output": output_info}))
        return PipelineResult(job.job_id, True, output, None, verified, None, 1, elapsed)
    except Exception as exc:  # every outcome must end the job: a failed event, never silence
        error = exc if isinstance(exc, TranscodeError) else InternalError.wrap(exc)
        reporter.finish(Snapshot("failed", 0.0, fields=input_fields(job, facts) | error_fields(error)))
        return PipelineResult(job.job_id, False, error=error, elapsed_s=clock() - started)
