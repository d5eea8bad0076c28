"""Rendering a watch: the live terminal line, the plain line and the closing summary."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.watch_view import (
    WatchState,
    fold,
    format_duration,
    format_size,
    progress_bar,
    render_json_line,
    render_plain_line,
    render_result,
    render_tty_block,
    render_tty_line,
    segment_bars,
)

SEGMENTS = [
    {"index": 0, "percent": 100, "state": "done"},
    {"index": 1, "percent": 50, "state": "running"},
    {"index": 2, "percent": 0, "state": "pending"},
]


def state_after(**fields: Any) -> WatchState:
    stage = fields.pop("stage", "transcoding")
    message = {"type": "progress", "jobId": "j-1", "seq": fields.pop("seq", 1), "stage": stage, **fields}
    return fold(WatchState("j-1"), message).state


def test_progress_bar_fills_in_proportion() -> None:
    assert progress_bar(50.0, 10, ascii_only=True) == "#####-----"
    assert progress_bar(0.0, 4, ascii_only=True) == "----"
    assert progress_bar(100.0, 4) == "████"
    assert progress_bar(56.25, 4) == "██▎ "  # 2.25 cells: two full, a quarter block
    assert len(progress_bar(33.3, 17)) == 17


def test_segment_bars_show_each_segment_and_failures() -> None:
    views = state_after(segments=[*SEGMENTS, {"index": 3, "percent": 40, "state": "failed"}]).job
    assert views is not None
    assert segment_bars(views.segments) == "█▄ !"
    assert segment_bars(views.segments, ascii_only=True) == "@= !"


def test_tty_line_shows_stage_bar_percent_eta_speed_and_segments() -> None:
    state = state_after(percent=42.5, etaSeconds=75, speed=3.14, fps=92.4, frames=1530, totalFrames=3600,
                        segments=SEGMENTS)  # fmt: skip
    line = render_tty_line(state, width=150, ascii_only=True)
    assert line.startswith("transcoding [")
    assert "42.5%" in line and "ETA 1:15" in line and "3.1x" in line and "92 fps" in line
    assert "1530/3600 frames" in line and line.endswith("[@= ]")
    assert len(line) <= 150


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_tty_line_fits_the_terminal_and_drops_details_first(width: int) -> None:
    state = state_after(percent=42.5, etaSeconds=75, speed=3.1, segments=SEGMENTS)
    line = render_tty_line(state, width=width)
    assert len(line) <= width
    assert "42.5%" in line


def test_tty_line_before_any_job_message() -> None:
    assert render_tty_line(WatchState("j-1")) == "j-1: connecting"
    subscribed = fold(WatchState("j-1"), {"type": "subscribed", "topic": "job:j-1"}).state
    assert render_tty_line(subscribed) == "j-1: subscribed, waiting for the job"


def test_plain_line_is_self_contained() -> None:
    state = state_after(percent=42.5, etaSeconds=14.2, speed=3.1, segments=SEGMENTS)
    assert render_plain_line(state) == (
        "j-1: transcoding 42.5%  ETA 0:14  3.1x  segments 1/3 done (100% 50% 0%)"
    )
    many = [{"index": n, "percent": 10, "state": "running"} for n in range(9)]
    assert render_plain_line(state_after(segments=many)).endswith("segments 0/9 done")
    assert "\r" not in render_plain_line(state) and "\x1b" not in render_plain_line(state)


def test_json_line_is_compact_and_stable() -> None:
    assert render_json_line({"seq": 2, "jobId": "j"}) == '{"jobId":"j","seq":2}'


def test_completed_summary_names_the_output_size_duration_and_elapsed() -> None:
    output = {"bucket": "out", "key": "jobs/j-1/video.mp4", "sizeBytes": 12_345_678, "durationSeconds": 58.4,
              "elapsedSeconds": 11.24, "posterKey": "jobs/j-1/poster.jpg"}  # fmt: skip
    state = state_after(stage="completed", percent=100, output=output, warnings=["audio resampled"])
    lines = render_result(state, watched_seconds=99.0)
    assert lines == [
        "completed: s3://out/jobs/j-1/video.mp4",
        "  12.3 MB, duration 0:58, elapsed 11.2s",
        "  poster: s3://out/jobs/j-1/poster.jpg",
        "  warning: audio resampled",
    ]


def test_completed_without_server_timing_uses_the_watch_time() -> None:
    state = state_after(stage="completed", percent=100, output={"bucket": "b", "key": "k"})
    assert render_result(state, watched_seconds=3.25)[1] == "  elapsed 3.2s"


@pytest.mark.parametrize(
    ("retryable", "hint"), [(True, "submit the file again"), (False, "will fail the same way")]
)
def test_failed_summary_gives_the_code_message_and_a_retry_hint(retryable: bool, hint: str) -> None:
    error = {"code": "ffmpeg_exit", "message": "segment 2: exit status 1", "retryable": retryable}
    lines = render_result(state_after(stage="failed", percent=30, error=error), watched_seconds=1.0)
    assert lines[0] == "failed: ffmpeg_exit: segment 2: exit status 1"
    assert hint in lines[1]


def test_refused_summary() -> None:
    state = fold(WatchState("j-9"), {"type": "error", "code": "forbidden", "message": "not yours"}).state
    assert render_result(state, watched_seconds=0) == ["cannot watch job:j-9: forbidden: not yours"]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (7.4, "0:07"), (754, "12:34"), (3723, "1:02:03")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("size", "text"), [(999, "999 B"), (1500, "1.5 KB"), (2_500_000_000, "2.5 GB")])
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_tty_line_drops_frames_before_the_eta_when_narrow() -> None:
    state = state_after(percent=42.5, etaSeconds=14, speed=3.1, fps=92.4, frames=1530, totalFrames=3600,
                        segments=SEGMENTS)  # fmt: skip
    line = render_tty_line(state, width=80)
    assert "ETA 0:14" in line and "3.1x" in line and "frames" not in line
    assert line.endswith("[█▄ ]")


def test_the_tty_block_has_a_bar_per_segment_within_the_width() -> None:
    state = state_after(percent=50.0, segments=SEGMENTS)
    lines = render_tty_block(state, width=60, height=24)
    assert lines[0] == render_tty_line(state, width=60)
    assert [line.split("[")[0] for line in lines[1:]] == ["  seg  1 ", "  seg  2 ", "  seg  3 "]
    assert lines[2].endswith(" 50.0%  running")
    assert all(len(line) <= 60 for line in lines)


def test_the_tty_block_keeps_to_the_terminal_height_showing_unfinished_segments_first() -> None:
    many = [{"index": n, "percent": 100 if n < 20 else 30, "state": "done" if n < 20 else "running"}
            for n in range(30)]  # fmt: skip
    lines = render_tty_block(state_after(segments=many), width=80, height=8)
    assert len(lines) == 7
    assert [line.split("[")[0] for line in lines[1:-1]] == [f"  seg {n} " for n in (21, 22, 23, 24, 25)]
    assert lines[-1] == "  +25 more segments (20 done)"


def test_the_tty_block_is_one_line_before_the_job_and_once_it_ended() -> None:
    assert render_tty_block(WatchState("j-1")) == ["j-1: connecting"]
    assert len(render_tty_block(state_after(stage="completed", percent=100.0, segments=SEGMENTS))) == 1
