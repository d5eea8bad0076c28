"""ffmpeg `-progress` parsing and the rate-limited reporter: pure logic, no I/O, no real clock.

ffmpeg's progress blocks have traps this module absorbs:
- `out_time_ms` is in MICROseconds, exactly like `out_time_us` (a historical misnomer);
- early blocks read `N/A` or a negative time while the muxer has no timestamp yet;
- with audio and video in one run, `out_time` follows whichever stream is ahead (audio), so a
  frame count, when known, is the better measure of video work;
- the last block before `progress=end` may read 99.3%: only the caller may say 100, after it
  has verified the output.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

# a running stage never reads 100: completion is a separate, verified event
MAX_RUNNING_PERCENT = 99.9

_CLOCK_RE = re.compile(r"^(-)?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")


@dataclass(frozen=True, slots=True)
class ProgressBlock:
    """One `-progress` block; None where ffmpeg did not know the value yet."""

    frame: int | None = None
    fps: float | None = None
    out_time_s: float | None = None
    speed: float | None = None
    ended: bool = False


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.strip().rstrip("x")
    if not text or text.upper() == "N/A":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def _clock_seconds(text: str | None) -> float | None:
    match = _CLOCK_RE.match(text.strip()) if text else None
    if not match:
        return None
    sign, hours, minutes, seconds = match.groups()
    value = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return -value if sign else value


def block_from_fields(fields: Mapping[str, str]) -> ProgressBlock:
    """Build a block from one block's `key=value` pairs."""
    micros = _number(fields.get("out_time_us"))
    if micros is None:
        micros = _number(fields.get("out_time_ms"))  # also microseconds, despite its name
    seconds = micros / 1_000_000 if micros is not None else _clock_seconds(fields.get("out_time"))
    if seconds is not None and seconds < 0:
        seconds = None  # before the first timestamp: not progress
    frame = _number(fields.get("frame"))
    fps = _number(fields.get("fps"))
    speed = _number(fields.get("speed"))
    return ProgressBlock(
        frame=int(frame) if frame is not None and frame >= 0 else None,
        fps=fps if fps is not None and fps >= 0 else None,
        out_time_s=seconds,
        speed=speed if speed is not None and speed >= 0 else None,
        ended=fields.get("progress", "").strip() == "end",
    )


class ProgressParser:
    """Feed stdout lines; returns a block each time a `progress=` line closes one."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> ProgressBlock | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self._fields[key.strip()] = value
        if key.strip() != "progress":
            return None
        block = block_from_fields(self._fields)
        self._fields = {}
        return block


def parse_blocks(lines: Iterable[str]) -> list[ProgressBlock]:
    parser = ProgressParser()
    return [block for line in lines if (block := parser.feed(line)) is not None]


def work_percent(block: ProgressBlock, *, total_frames: int | None, duration_s: float | None) -> float | None:
    """Percent of a run's work in this block (frames preferred over time), capped below 100."""
    if block.frame is not None and total_frames:
        value = 100.0 * block.frame / total_frames
    elif block.out_time_s is not None and duration_s:
        value = 100.0 * block.out_time_s / duration_s
    else:
        return None
    return max(0.0, min(value, MAX_RUNNING_PERCENT))


def weighted_percent(percents: Mapping[int, float], weights: Mapping[int, float]) -> float:
    """Overall percent of segments weighted by their durations (missing segments count as 0)."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    done = sum(weights[i] * min(max(percents.get(i, 0.0), 0.0), 100.0) for i in weights)
    return done / total


# The job's percent moves through fixed bands, so it never goes backwards across stages.
STAGE_BANDS: dict[str, tuple[float, float]] = {
    "queued": (0.0, 0.0),
    "probing": (0.0, 2.0),
    "transcoding": (2.0, 92.0),
    "merging": (92.0, 99.9),
    "completed": (100.0, 100.0),
}


def job_percent(stage: str, stage_percent: float) -> float:
    low, high = STAGE_BANDS.get(stage, (0.0, MAX_RUNNING_PERCENT))
    fraction = min(max(stage_percent, 0.0), 100.0) / 100.0
    return round(low + (high - low) * fraction, 2)


def eta_seconds(remaining_media_s: float, speed: float | None) -> float | None:
    """Seconds left at the observed speed (media seconds per wall second); None before one is known."""
    if speed is None or speed <= 0:
        return None
    return round(max(remaining_media_s, 0.0) / speed, 1)


# --- the reporter ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a progress event would say now. `work` is any counter that rises while work advances."""

    stage: str
    percent: float
    work: float = 0.0
    fields: dict[str, object] = field(default_factory=dict)


PublishFn = Callable[[Snapshot, bool], None]


class Reporter:
    """Decides which snapshots become events.

    - at most one event per `min_interval` seconds (4/s by default) while running;
    - a stage change or a rise of `min_step` percent is due as soon as the interval allows;
    - while work advances without such a change, a heartbeat every `heartbeat` seconds;
    - percent never goes backwards and stays below 100 while running;
    - the final event (`finish`) is never rate-limited or dropped, and nothing follows it.
    Callers `offer` snapshots as they come and `poll` now and then to flush a held one.
    """

    def __init__(
        self,
        publish: PublishFn,
        clock: Callable[[], float],
        *,
        min_interval: float = 0.25,
        heartbeat: float = 2.0,
        min_step: float = 1.0,
    ) -> None:
        self._publish = publish
        self._clock = clock
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self.min_step = min_step
        self._lock = threading.Lock()
        self._last: Snapshot | None = None
        self._last_at: float | None = None
        self._pending: Snapshot | None = None
        self._floor = 0.0
        self.closed = False

    def offer(self, snapshot: Snapshot) -> bool:
        with self._lock:
            if self.closed:
                return False
            percent = min(max(snapshot.percent, self._floor), MAX_RUNNING_PERCENT)
            self._floor = percent
            self._pending = replace(snapshot, percent=percent)
            return self._flush_if_due()

    def poll(self) -> bool:
        with self._lock:
            return False if self.closed else self._flush_if_due()

    def close(self) -> None:
        """Stop publishing without a final snapshot (the caller reports the end itself)."""
        with self._lock:
            self.closed = True
            self._pending = None

    def finish(self, snapshot: Snapshot) -> bool:
        """Publish the terminal snapshot now; False if one was already published."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            self._pending = None
            percent = (
                snapshot.percent if snapshot.stage == "completed" else max(self._floor, snapshot.percent)
            )
            final = replace(snapshot, percent=min(percent, 100.0))
            self._publish(final, True)
            self._last, self._last_at = final, self._clock()
            return True

    def _flush_if_due(self) -> bool:
        pending = self._pending
        if pending is None:
            return False
        now = self._clock()
        last, last_at = self._last, self._last_at
        if last is None or last_at is None:
            due = True
        else:
            elapsed = now - last_at
            significant = pending.stage != last.stage or pending.percent - last.percent >= self.min_step
            advancing = pending.work > last.work or pending.percent > last.percent
            due = (significant and elapsed >= self.min_interval) or (advancing and elapsed >= self.heartbeat)
        if not due:
            return False
        self._pending = None
        self._publish(pending, False)
        self._last, self._last_at = pending, now
        return True
