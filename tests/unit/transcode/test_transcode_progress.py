"""ffmpeg -progress parsing traps and the job percent arithmetic."""

from __future__ import annotations

import pytest
from transcoder.progress import (
    MAX_RUNNING_PERCENT,
    STAGE_BANDS,
    ProgressBlock,
    ProgressParser,
    block_from_fields,
    eta_seconds,
    job_percent,
    parse_blocks,
    weighted_percent,
    work_percent,
)


def lines(text: str) -> list[str]:
    return [line + "\n" for line in text.strip().splitlines()]


def test_out_time_ms_is_microseconds() -> None:
    block = block_from_fields({"out_time_ms": "2500000", "progress": "continue"})
    assert block.out_time_s == pytest.approx(2.5)


def test_out_time_us_wins_and_clock_form_is_the_fallback() -> None:
    assert block_from_fields({"out_time_us": "1000000", "out_time_ms": "9"}).out_time_s == pytest.approx(1.0)
    assert block_from_fields({"out_time": "00:01:02.500000"}).out_time_s == pytest.approx(62.5)


def test_na_and_negative_values_mean_unknown() -> None:
    block = block_from_fields(
        {"frame": "0", "fps": "N/A", "out_time_us": "N/A", "out_time": "-00:00:00.023220", "speed": "N/A"}
    )
    assert block == ProgressBlock(frame=0, fps=None, out_time_s=None, speed=None, ended=False)
    assert block_from_fields({"out_time_ms": "-23220"}).out_time_s is None


def test_speed_and_fps_parse_with_their_units() -> None:
    block = block_from_fields({"speed": " 1.53x", "fps": "48.2", "frame": "120"})
    assert (block.speed, block.fps, block.frame) == (1.53, 48.2, 120)


def test_parser_splits_blocks_and_ignores_noise() -> None:
    text = """
frame=10
fps=0.00
out_time_ms=N/A
speed=N/A
progress=continue
garbage line without equals
frame=25
out_time_ms=1000000
speed=2.0x
progress=end
"""
    blocks = parse_blocks(lines(text))
    assert [b.frame for b in blocks] == [10, 25]
    assert blocks[0].out_time_s is None
    assert blocks[1].out_time_s == pytest.approx(1.0)
    assert [b.ended for b in blocks] == [False, True]


def test_fields_do_not_leak_between_blocks() -> None:
    parser = ProgressParser()
    for line in ("frame=5", "speed=1x", "progress=continue"):
        parser.feed(line)
    block = None
    for line in ("out_time_us=10", "progress=continue"):
        block = parser.feed(line) or block
    assert block is not None and block.frame is None and block.speed is None


def test_last_block_reads_under_100_and_end_is_not_completion() -> None:
    last = ProgressBlock(frame=993, out_time_s=9.93, ended=False)
    assert work_percent(last, total_frames=1000, duration_s=10.0) == pytest.approx(99.3)
    ended = ProgressBlock(frame=1000, out_time_s=10.0, ended=True)
    assert work_percent(ended, total_frames=1000, duration_s=10.0) == MAX_RUNNING_PERCENT


def test_frames_beat_out_time_when_audio_runs_ahead() -> None:
    block = ProgressBlock(frame=50, out_time_s=3.9)  # audio muxed ahead of the video
    assert work_percent(block, total_frames=100, duration_s=4.0) == pytest.approx(50.0)


def test_out_time_is_used_without_frames_and_unknown_is_none() -> None:
    assert work_percent(ProgressBlock(out_time_s=1.0), total_frames=None, duration_s=4.0) == pytest.approx(
        25.0
    )
    assert work_percent(ProgressBlock(), total_frames=100, duration_s=4.0) is None


def test_weighted_percent_follows_durations() -> None:
    weights = {0: 30.0, 1: 10.0}
    assert weighted_percent({0: 100.0}, weights) == pytest.approx(75.0)
    assert weighted_percent({1: 100.0}, weights) == pytest.approx(25.0)
    assert weighted_percent({0: 100.0, 1: 100.0}, weights) == pytest.approx(100.0)
    assert weighted_percent({}, {}) == 0.0


def test_stage_bands_rise_and_only_completed_is_100() -> None:
    order = ["queued", "probing", "transcoding", "merging", "completed"]
    ends = [job_percent(stage, 100) for stage in order]
    starts = [job_percent(stage, 0) for stage in order]
    assert all(a <= b for a, b in zip(ends, starts[1:], strict=False))
    assert job_percent("merging", 100) < 100 == job_percent("completed", 0)
    assert set(STAGE_BANDS) == set(order)


def test_eta_needs_an_observed_speed() -> None:
    assert eta_seconds(30.0, 2.0) == 15.0
    assert eta_seconds(30.0, None) is None
    assert eta_seconds(30.0, 0.0) is None
