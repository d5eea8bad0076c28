"""`tidings watch` without I/O: folding server messages into a job's state, and drawing it.

`fold` applies the protocol's seq rule (docs/protocol.md): the highest seq wins and older or
repeated messages change nothing, whichever path (snapshot or live message) brings them.
The renderers turn a state into text; the shell in `client.py` owns sockets and terminals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

TERMINAL_STAGES = frozenset({"completed", "failed"})
JOB_MESSAGE_TYPES = frozenset({"progress", "completed", "failed"})
# a refused subscribe that no retry can fix
FATAL_ERROR_CODES = frozenset({"forbidden", "not_found", "bad_topic"})
EXIT_COMPLETED, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
_LEVELS = " ▁▂▃▄▅▆▇█"
PLAIN_SEGMENTS_SHOWN = 8  # plain lines list each segment's percent up to this many segments
_ASCII_LEVELS = " .:-=+*#%@"


@dataclass(frozen=True, slots=True)
class SegmentView:
    index: int
    percent: float
    state: str


@dataclass(frozen=True, slots=True)
class JobView:
    """The latest accepted job message, as typed fields (unknown fields are kept in `message`)."""

    seq: int
    stage: str
    percent: float
    eta_seconds: float | None = None
    speed: float | None = None
    fps: float | None = None
    frames: int | None = None
    total_frames: int | None = None
    segments: tuple[SegmentView, ...] = ()
    output: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    message: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WatchState:
    job_id: str
    subscribed: bool = False
    job: JobView | None = None
    refusal: tuple[str, str] | None = None  # (code, message) of a subscribe the server refused

    @property
    def topic(self) -> str:
        return f"job:{self.job_id}"

    @property
    def exit_code(self) -> int | None:
        """None while the job runs; 0 completed, 1 failed, 2 refused."""
        if self.refusal is not None:
            return EXIT_REFUSED
        if self.job is not None and self.job.stage == "completed":
            return EXIT_COMPLETED
        if self.job is not None and self.job.stage == "failed":
            return EXIT_FAILED
        return None


@dataclass(frozen=True, slots=True)
class Folded:
    state: WatchState
    accepted: tuple[Mapping[str, Any], ...] = ()  # job messages that moved the state forward
    server_error: tuple[str, str] | None = None  # any `error` reply, fatal or not


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _segments(value: Any) -> tuple[SegmentView, ...]:
    if not isinstance(value, list):
        return ()
    views = []
    for item in value:
        if isinstance(item, Mapping) and (index := _integer(item.get("index"))) is not None:
            views.append(SegmentView(index, _number(item.get("percent")) or 0.0, str(item.get("state", ""))))
    return tuple(sorted(views, key=lambda segment: segment.index))


def job_view(message: Mapping[str, Any]) -> JobView | None:
    """A JobView from a job message; None when it lacks a usable seq or stage."""
    seq = _integer(message.get("seq"))
    stage = message.get("stage")
    if seq is None or seq < 0 or not isinstance(stage, str):
        return None
    output, error, warnings = message.get("output"), message.get("error"), message.get("warnings")
    return JobView(
        seq=seq,
        stage=stage,
        percent=min(100.0, max(0.0, _number(message.get("percent")) or 0.0)),
        eta_seconds=_number(message.get("etaSeconds")),
        speed=_number(message.get("speed")),
        fps=_number(message.get("fps")),
        frames=_integer(message.get("frames")),
        total_frames=_integer(message.get("totalFrames")),
        segments=_segments(message.get("segments")),
        output=output if isinstance(output, Mapping) else None,
        error=error if isinstance(error, Mapping) else None,
        warnings=tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
        message=message,
    )


def _apply_job(state: WatchState, message: Any) -> tuple[WatchState, bool]:
    if not isinstance(message, Mapping) or message.get("jobId") != state.job_id:
        return state, False
    view = job_view(message)
    if view is None or (state.job is not None and view.seq <= state.job.seq):
        return state, False  # older or repeated: the seq rule
    return replace(state, job=view), True


def fold(state: WatchState, message: Any) -> Folded:
    """Apply one decoded server message. Pure: the same inputs always give the same result."""
    if not isinstance(message, Mapping):
        return Folded(state)
    kind = message.get("type")
    if kind == "subscribed" and message.get("topic") == state.topic:
        return Folded(replace(state, subscribed=True))
    if kind == "snapshot" and message.get("topic") == state.topic:
        accepted = []
        jobs = message.get("jobs")
        for job in jobs if isinstance(jobs, list) else []:
            state, moved = _apply_job(state, job)
            if moved:
                accepted.append(job)
        return Folded(state, tuple(accepted))
    if kind in JOB_MESSAGE_TYPES:
        state, moved = _apply_job(state, message)
        return Folded(state, (message,) if moved else ())
    if kind == "error":
        code, text = str(message.get("code", "")), str(message.get("message", ""))
        if code in FATAL_ERROR_CODES:
            state = replace(state, refusal=(code, text))
        return Folded(state, server_error=(code, text))
    return Folded(state)  # pong, unsubscribed, other topics, future message types


# rendering


def format_duration(seconds: float) -> str:
    """`0:07`, `12:34`, `1:02:03`."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def progress_bar(percent: float, width: int, *, ascii_only: bool = False) -> str:
    """A bar of `width` cells; unicode bars use eighth blocks for a smooth edge."""
    width = max(1, width)
    fraction = min(1.0, max(0.0, percent / 100))
    if ascii_only:
        filled = int(fraction * width)
        return "#" * filled + "-" * (width - filled)
    eighths = int(fraction * width * 8)
    full, partial = divmod(eighths, 8)
    bar = "█" * full + (" ▏▎▍▌▋▊▉"[partial] if partial and full < width else "")
    return bar + " " * (width - len(bar))


def segment_bars(segments: Sequence[SegmentView], *, ascii_only: bool = False) -> str:
    """One cell per segment whose height is its percent; `!` marks a failed segment."""
    levels = _ASCII_LEVELS if ascii_only else _LEVELS
    cells = []
    for segment in segments:
        if segment.state == "failed":
            cells.append("!")
        else:
            cells.append(levels[round(min(100.0, max(0.0, segment.percent)) / 100 * (len(levels) - 1))])
    return "".join(cells)


def _details(job: JobView) -> list[str]:
    parts = []
    if job.eta_seconds is not None and job.stage not in TERMINAL_STAGES:
        parts.append(f"ETA {format_duration(job.eta_seconds)}")
    if job.speed is not None:
        parts.append(f"{job.speed:.1f}x")
    if job.fps is not None:
        parts.append(f"{job.fps:.0f} fps")
    if job.frames is not None and job.total_frames:
        parts.append(f"{job.frames}/{job.total_frames} frames")
    return parts


def render_tty_line(state: WatchState, *, width: int = 80, ascii_only: bool = False) -> str:
    """The live status line (no newline), fitted to `width` columns."""
    job = state.job
    if job is None:
        waiting = "subscribed, waiting for the job" if state.subscribed else "connecting"
        return f"{state.job_id}: {waiting}"[:width]
    head = f"{job.stage:<11} "
    tail = f" {job.percent:5.1f}%"
    details = _details(job)
    segments = ""
    if job.segments:
        segments = f"  [{segment_bars(job.segments, ascii_only=ascii_only)}]"
    # the bar takes what is left (at most 40 cells); when space is short the least useful detail
    # goes first (frames, fps, speed, ETA), then the segment bars, and the bar shrinks last
    fixed = len(head) + len(tail) + 2
    candidates = [("".join(f"  {d}" for d in details[:count]) + segments, 16) for count in
                  range(len(details), -1, -1)]  # fmt: skip
    candidates.append(("", 10))
    for extras, smallest_bar in candidates:
        bar_width = min(40, width - fixed - len(extras))
        if bar_width >= smallest_bar:
            bar = progress_bar(job.percent, bar_width, ascii_only=ascii_only)
            return f"{head}[{bar}]{tail}{extras}"
    return f"{job.stage} {job.percent:.1f}%"[:width]


def render_tty_block(
    state: WatchState, *, width: int = 80, height: int = 24, ascii_only: bool = False
) -> list[str]:
    """The live view: the overall line, then one bar per segment while the job runs.

    Every line fits `width` (a wrapped line would break the redraw). At most `height - 1` lines:
    with more segments than that, the unfinished ones are shown first and one line counts the rest.
    """
    lines = [render_tty_line(state, width=width, ascii_only=ascii_only)]
    job = state.job
    if job is None or not job.segments or job.stage in TERMINAL_STAGES:
        return lines
    rows = max(0, height - 2)
    segments = list(job.segments)
    if len(segments) > rows:
        unfinished = [segment for segment in segments if segment.state != "done"]
        shown = sorted(unfinished[: max(0, rows - 1)], key=lambda segment: segment.index)
        hidden = len(segments) - len(shown)
        done = sum(1 for segment in segments if segment.state == "done")
        lines += [_segment_line(segment, width, ascii_only) for segment in shown]
        lines.append(f"  +{hidden} more segments ({done} done)"[:width])
        return lines
    return lines + [_segment_line(segment, width, ascii_only) for segment in segments]


def _segment_line(segment: SegmentView, width: int, ascii_only: bool) -> str:
    head = f"  seg {segment.index + 1:>2} "
    tail = f" {segment.percent:5.1f}%  {segment.state}"
    bar_width = min(30, width - len(head) - len(tail) - 2)
    if bar_width < 5:
        return f"{head}{segment.percent:.0f}%"[:width]
    return f"{head}[{progress_bar(segment.percent, bar_width, ascii_only=ascii_only)}]{tail}"[:width]


def render_plain_line(state: WatchState) -> str:
    """One self-contained line per update, for logs and pipes."""
    job = state.job
    if job is None:
        return f"{state.job_id}: {'subscribed' if state.subscribed else 'connecting'}"
    parts = [f"{state.job_id}: {job.stage} {job.percent:.1f}%", *_details(job)]
    if job.segments:
        done = sum(1 for segment in job.segments if segment.state == "done")
        summary = f"segments {done}/{len(job.segments)} done"
        if len(job.segments) <= PLAIN_SEGMENTS_SHOWN and job.stage not in TERMINAL_STAGES:
            # side by side: each segment's percent, in index order
            summary += " (" + " ".join(f"{segment.percent:.0f}%" for segment in job.segments) + ")"
        parts.append(summary)
    return "  ".join(parts)


def render_json_line(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), sort_keys=True)


def render_result(state: WatchState, *, watched_seconds: float) -> list[str]:
    """The closing lines: where the output is, or what failed and whether to retry."""
    lines: list[str] = []
    if state.refusal is not None:
        code, message = state.refusal
        return [f"cannot watch {state.topic}: {code}: {message}"]
    job = state.job
    if job is None:
        return lines
    if job.stage == "completed":
        output = job.output or {}
        location = (
            f"s3://{output['bucket']}/{output['key']}"
            if "bucket" in output and "key" in output
            else "(not reported)"
        )
        facts = []
        if (size := _number(output.get("sizeBytes"))) is not None:
            facts.append(format_size(size))
        if (duration := _number(output.get("durationSeconds"))) is not None:
            facts.append(f"duration {format_duration(duration)}")
        elapsed = _number(output.get("elapsedSeconds"))
        facts.append(f"elapsed {elapsed if elapsed is not None else watched_seconds:.1f}s")
        lines.append(f"completed: {location}")
        lines.append("  " + ", ".join(facts))
        if poster := output.get("posterKey"):
            lines.append(f"  poster: s3://{output.get('bucket', '?')}/{poster}")
    elif job.stage == "failed":
        error = job.error or {}
        lines.append(f"failed: {error.get('code', 'unknown')}: {error.get('message', 'no message')}")
        if error.get("retryable"):
            lines.append("  this failure is transient: submit the file again to retry")
        else:
            lines.append("  retrying the same input will fail the same way: check the file and settings")
    lines.extend(f"  warning: {warning}" for warning in job.warnings)
    return lines


Mode = Literal["tty", "plain", "json"]
