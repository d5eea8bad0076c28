"""The local split-and-parallel pipeline on real ffmpeg: exact output, truthful events, failures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from transcoder.pipeline import PipelineResult, run_local_pipeline, run_single_pass
from transcoder.sinks import InMemorySink

from tidings_core.events import JobEvent

from .conftest import Clips, decode_gray, decode_pcm, frame_distance

STAGE_ORDER = {"queued": 0, "probing": 1, "transcoding": 2, "merging": 3, "completed": 4, "failed": 4}


def run(clip: Path, tmp_path: Path, **kwargs: object) -> tuple[PipelineResult, list[JobEvent]]:
    sink = InMemorySink()
    options: dict[str, object] = {"parallelism": 2, "segment_seconds": 1.0} | kwargs
    result = run_local_pipeline(clip, tmp_path / "out.mp4", sink=sink, work_dir=tmp_path, **options)  # type: ignore[arg-type]
    return result, sink.for_job(result.job_id)


def assert_truthful_sequence(events: list[JobEvent], terminal: str) -> None:
    assert events, "no events"
    assert [e.seq for e in events] == sorted({e.seq for e in events}), "seq must strictly increase"
    percents = [e.percent for e in events]
    assert percents == sorted(percents), f"percent went backwards: {percents}"
    stages = [STAGE_ORDER[e.stage] for e in events]
    assert stages == sorted(stages)
    assert events[-1].stage == terminal
    assert [e.stage for e in events].count(terminal) == 1
    assert all(e.percent < 100 for e in events[:-1])


def test_split_output_is_frame_exact_with_continuous_audio(ffmpeg: str, clips: Clips, tmp_path: Path) -> None:
    result, events = run(clips.main, tmp_path)
    assert result.ok, result.error
    assert result.segments == 4

    _, _, source_frames = decode_gray(ffmpeg, clips.main)
    width, height, output_frames = decode_gray(ffmpeg, result.output_path)  # type: ignore[arg-type]
    assert (width, height) == (320, 240)
    assert len(output_frames) == len(source_frames) == 100
    # around each segment boundary, output frame i looks most like input frame i (no shift, no dup)
    for boundary in (25, 50, 75):
        for index in (boundary - 1, boundary, boundary + 1):
            distances = {
                j: frame_distance(output_frames[index], source_frames[j])
                for j in (index - 1, index, index + 1)
            }
            assert min(distances, key=distances.__getitem__) == index, (index, distances)

    source_audio = decode_pcm(ffmpeg, clips.main, 48000)
    output_audio = decode_pcm(ffmpeg, result.output_path, 48000)  # type: ignore[arg-type]
    assert abs(len(output_audio) - len(source_audio)) <= 48000 // 25  # within one video frame
    peak = max(abs(s) for s in output_audio)
    window = 240  # 5 ms: a 16-49 ms per-segment AAC gap would show as near-silent windows
    edge = 48000 // 20
    quiet = [
        start / 48000
        for start in range(edge, len(output_audio) - edge - window, window)
        if max(abs(s) for s in output_audio[start : start + window]) < peak * 0.3
    ]
    assert quiet == [], f"silent windows at {quiet[:5]} s"

    assert_truthful_sequence(events, "completed")
    completed = events[-1]
    assert completed.percent == 100
    assert completed.output is not None
    assert completed.output.durationSeconds == pytest.approx(4.0, abs=1 / 25)
    assert completed.output.sizeBytes == result.output_path.stat().st_size  # type: ignore[union-attr]
    assert completed.frames == completed.totalFrames == 100
    # every event that lists segments lists all 4; a 1 s segment can finish before its first
    # progress snapshot on a fast machine (no transcoding event at all), and the completed event
    # carries the segments whatever the timing
    listed = [e for e in events if e.segments]
    assert all(len(e.segments or []) == 4 for e in listed)
    assert all(e.segments and len(e.segments) == 4 for e in events if e.stage == "transcoding")
    assert completed.segments is not None and [s.state for s in completed.segments] == ["done"] * 4
    assert result.poster_path is not None and result.poster_path.read_bytes()[:3] == b"\xff\xd8\xff"


def test_ntsc_rate_and_downscale(ffmpeg: str, clips: Clips, tmp_path: Path) -> None:
    result, events = run(clips.ntsc, tmp_path, segment_seconds=0.7)
    assert result.ok, result.error
    assert result.verified is not None and result.verified.frames == 99
    width, height, frames = decode_gray(ffmpeg, result.output_path)  # type: ignore[arg-type]
    assert (width, height, len(frames)) == (640, 360, 99)
    assert events[-1].input is not None and events[-1].input.fps == pytest.approx(29.97, abs=0.01)
    assert_truthful_sequence(events, "completed")


def test_video_without_audio_completes_with_a_warning(clips: Clips, tmp_path: Path) -> None:
    result, events = run(clips.silent, tmp_path)
    assert result.ok, result.error
    assert result.verified is not None and result.verified.audio_duration_s is None
    assert "the input has no audio track" in (events[-1].warnings or [])


def test_single_pass_gives_the_same_frames(ffmpeg: str, clips: Clips, tmp_path: Path) -> None:
    sink = InMemorySink()
    result = run_single_pass(clips.main, tmp_path / "single.mp4", sink=sink)
    assert result.ok, result.error
    _, _, frames = decode_gray(ffmpeg, tmp_path / "single.mp4")
    assert len(frames) == 100
    assert_truthful_sequence(sink.for_job(result.job_id), "completed")


@pytest.mark.parametrize(
    ("clip", "code", "fragment"),
    [
        ("corrupt", "corrupt_input", "not a readable media file"),
        ("truncated", "corrupt_input", "not a readable media file"),
        ("empty", "empty_input", "empty"),
        ("audio_only", "unsupported_input", "no video stream (audio only)"),
        ("image", "unsupported_input", "still image"),
    ],
)
def test_bad_inputs_fail_with_clear_codes(
    clips: Clips, tmp_path: Path, clip: str, code: str, fragment: str
) -> None:
    result, events = run(getattr(clips, clip), tmp_path)
    assert not result.ok
    assert not (tmp_path / "out.mp4").exists()
    assert_truthful_sequence(events, "failed")
    error = events[-1].error
    assert error is not None and error.code == code and not error.retryable
    assert fragment in error.message


def kill_segment(index: int, times: int) -> tuple[list[int], object]:
    killed: list[int] = []

    def hook(segment: int, process: subprocess.Popen[str]) -> None:
        if segment == index and len(killed) < times:
            killed.append(process.pid)
            process.kill()

    return killed, hook


def test_a_killed_segment_encoder_is_retried(ffmpeg: str, clips: Clips, tmp_path: Path) -> None:
    killed, hook = kill_segment(1, times=1)
    result, events = run(clips.main, tmp_path, on_process_start=hook)
    assert len(killed) == 1
    assert result.ok, result.error
    _, _, frames = decode_gray(ffmpeg, result.output_path)  # type: ignore[arg-type]
    assert len(frames) == 100
    assert any("segment 1 attempt 1 failed (worker_lost)" in w for w in events[-1].warnings or [])
    assert_truthful_sequence(events, "completed")


def test_a_segment_that_keeps_dying_fails_the_job(clips: Clips, tmp_path: Path) -> None:
    killed, hook = kill_segment(2, times=10)
    result, events = run(clips.main, tmp_path, on_process_start=hook, max_attempts=2)
    assert len(killed) == 2
    assert not result.ok
    assert_truthful_sequence(events, "failed")
    error = events[-1].error
    assert error is not None and error.code == "worker_lost" and error.retryable
    assert "killed by signal" in error.message


def test_seq_is_gapless_per_job(clips: Clips, tmp_path: Path) -> None:
    result, events = run(clips.main, tmp_path)
    assert result.ok
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
