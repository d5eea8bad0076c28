"""Splitting a video into frame-exact segment windows and sizing the output."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """Frames [start_frame, start_frame + frames) of the input; times derive from the exact fps."""

    index: int
    start_frame: int
    frames: int
    fps_num: int
    fps_den: int

    @property
    def fps(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)

    @property
    def start_s(self) -> float:
        return float(self.start_frame / self.fps)

    @property
    def duration_s(self) -> float:
        return float(self.frames / self.fps)

    @property
    def seek_s(self) -> float | None:
        """Where to seek: half a frame before the first wanted frame, so rounding cannot skip it."""
        if self.start_frame == 0:
            return None
        return float((Fraction(2 * self.start_frame - 1, 2)) / self.fps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentPlan:
        return cls(**{k: int(data[k]) for k in ("index", "start_frame", "frames", "fps_num", "fps_den")})


def plan_segments(
    total_frames: int,
    fps: Fraction,
    *,
    target_seconds: float,
    max_segments: int = 1000,
    split: bool = True,
) -> list[SegmentPlan]:
    """Windows of about `target_seconds`, covering every frame exactly once.

    The frames are spread evenly (sizes differ by at most one), so no tiny tail segment pays a
    whole encoder start-up for a few frames. `split=False` (variable frame rate) gives one window.
    """
    if total_frames <= 0:
        raise ValueError("total_frames must be positive")
    if fps <= 0:
        raise ValueError("fps must be positive")
    if target_seconds <= 0:
        raise ValueError("target_seconds must be positive")
    per_segment = max(1, math.floor(target_seconds * fps))
    count = min(max(1, round(total_frames / per_segment)), max_segments, total_frames) if split else 1
    base, extra = divmod(total_frames, count)
    segments: list[SegmentPlan] = []
    start = 0
    for index in range(count):
        frames = base + (1 if index < extra else 0)
        segments.append(SegmentPlan(index, start, frames, fps.numerator, fps.denominator))
        start += frames
    return segments


def segment_weights(segments: list[SegmentPlan]) -> dict[int, float]:
    """Each segment's share of the job's work, proportional to its duration."""
    return {s.index: float(s.frames) for s in segments}


@dataclass(frozen=True, slots=True)
class Preset:
    """An output rendition: H.264/AAC MP4 bounded by a box (long x short side), never upscaled."""

    name: str = "720p"
    long_side: int = 1280
    short_side: int = 720
    crf: int = 23
    x264_preset: str = "veryfast"
    audio_bitrate: str = "128k"
    max_fps: int = 60


PRESETS: dict[str, Preset] = {
    "1080p": Preset("1080p", 1920, 1080, 22),
    "720p": Preset(),
    "480p": Preset("480p", 854, 480, 24),
    "360p": Preset("360p", 640, 360, 26),
}


def output_size(width: int, height: int, preset: Preset) -> tuple[int, int]:
    """Scale (width, height) into the preset's box keeping the aspect ratio; even; never larger."""
    if width <= 0 or height <= 0:
        raise ValueError("dimensions must be positive")
    box_w, box_h = (
        (preset.long_side, preset.short_side) if width >= height else (preset.short_side, preset.long_side)
    )
    scale = min(1.0, box_w / width, box_h / height)

    def even(value: float) -> int:
        return max(2, int(value + 1e-9) // 2 * 2)  # round down: rounding up could upscale a pixel

    return even(width * scale), even(height * scale)
