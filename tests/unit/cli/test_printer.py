"""WatchPrinter: a redrawn line on a terminal, one line per update elsewhere, JSON lines for scripts."""

from __future__ import annotations

import io
import json

from tidings.client import WatchPrinter, backoff_delay
from tidings.watch_view import WatchState, fold

PROGRESS = {"type": "progress", "jobId": "j-1", "seq": 3, "stage": "transcoding", "percent": 25.0}


def advanced() -> tuple[WatchState, tuple[object, ...]]:
    folded = fold(WatchState("j-1"), PROGRESS)
    return folded.state, folded.accepted


def test_tty_mode_redraws_one_line_in_place_and_ends_it_before_the_summary() -> None:
    stream = io.StringIO()
    printer = WatchPrinter(stream, "tty")
    state, accepted = advanced()
    printer.update(state, accepted)
    printer.update(state, ())
    printer.finish(["completed: s3://b/k"])
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.count("\x1b[K") == 2
    assert text.startswith("\x1b[?25l")  # the cursor is hidden while the bar is live...
    assert text.endswith("\x1b[K\x1b[J\n\x1b[?25hcompleted: s3://b/k\n")  # ...and shown after
    assert "25.0%" in text


SEGMENTED = {
    **PROGRESS,
    "seq": 4,
    "etaSeconds": 12,
    "speed": 2.5,
    "segments": [
        {"index": 0, "percent": 100, "state": "done"},
        {"index": 1, "percent": 60, "state": "encoding"},
        {"index": 2, "percent": 10, "state": "encoding"},
        {"index": 3, "percent": 0, "state": "queued"},
    ],
}


def test_tty_mode_draws_a_bar_per_segment_and_redraws_the_block_in_place() -> None:
    stream = io.StringIO()
    printer = WatchPrinter(stream, "tty")
    folded = fold(WatchState("j-1"), SEGMENTED)
    printer.update(folded.state, folded.accepted)
    first = stream.getvalue()
    assert first.count("\n") == 4  # the overall line and four segment lines
    assert "ETA 0:12" in first and "2.5x" in first
    assert " seg  2 [" in first and " 60.0%  encoding" in first
    printer.update(folded.state, ())
    assert stream.getvalue()[len(first) :].startswith("\x1b[4A\r")  # back up to the first line
    printer.close()
    assert stream.getvalue().endswith("\n\x1b[?25h")


def test_tty_mode_falls_back_to_ascii_on_a_non_utf8_stream() -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    printer = WatchPrinter(stream, "tty")
    printer.update(*advanced())  # would raise UnicodeEncodeError with block characters
    stream.flush()
    assert "#" in stream.buffer.getvalue().decode()  # type: ignore[attr-defined]


def test_plain_mode_prints_a_line_only_when_the_job_moved() -> None:
    stream = io.StringIO()
    printer = WatchPrinter(stream, "plain")
    state, accepted = advanced()
    printer.update(state, accepted)
    printer.update(state, ())
    printer.note("connection lost (closed 1006); reconnecting")
    assert stream.getvalue().splitlines() == [
        "j-1: transcoding 25.0%",
        "connection lost (closed 1006); reconnecting",
    ]


def test_json_mode_prints_the_accepted_messages_and_no_summary() -> None:
    stream = io.StringIO()
    printer = WatchPrinter(stream, "json")
    printer.update(*advanced())
    printer.finish(["completed: s3://b/k"])
    assert [json.loads(line) for line in stream.getvalue().splitlines()] == [PROGRESS]


def test_backoff_grows_then_caps_and_is_jittered() -> None:
    import random

    rng = random.Random(7)
    assert all(0 <= backoff_delay(0, rng=rng) <= 0.5 for _ in range(50))
    assert all(0 <= backoff_delay(20, rng=rng) <= 30 for _ in range(50))
    assert len({backoff_delay(3, rng=rng) for _ in range(20)}) > 1
