"""The ffmpeg steps of the pipeline: segment encode, audio encode, concat + mux, poster, verification.

Each step is a plain function over local files, shared by the Lambda handlers and the local runner.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .errors import FfmpegFailed, VerificationFailed
from .ffmpeg import ProcessHook, ProgressCallback, check, probe, run_ffmpeg, stream_timing
from .plan import Preset, SegmentPlan

PROGRESS_ARGS = ("-progress", "pipe:1", "-nostats")


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What the merge step must reproduce, measured on the input (JSON-friendly for Step Functions)."""

    frames: int
    fps_num: int
    fps_den: int
    duration_s: float
    width: int
    height: int
    has_audio: bool
    audio_duration_s: float | None
    constant_frame_rate: bool

    @property
    def fps(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)

    @property
    def frame_s(self) -> float:
        return float(1 / self.fps)


def measure_input(path: str | Path) -> SourceFacts:
    """Probe (raising EmptyInput/CorruptInput/UnsupportedInput) and time the audio exactly."""
    info = probe(path)
    audio = stream_timing(path, "a", decode=True) if info.has_audio else None  # decoded: priming excluded
    return SourceFacts(
        frames=info.frames,
        fps_num=info.fps.numerator,
        fps_den=info.fps.denominator,
        duration_s=info.duration_s,
        width=info.width,
        height=info.height,
        has_audio=audio is not None and audio.count > 0,
        audio_duration_s=float(audio.duration) if audio is not None and audio.count else None,
        constant_frame_rate=info.constant_frame_rate,
    )


def encoder_threads(parallelism: int) -> int:
    """x264 threads per encoder when `parallelism` encoders share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, parallelism))


def encode_segment(
    input_path: str | Path,
    segment: SegmentPlan,
    output_path: str | Path,
    *,
    size: tuple[int, int],
    preset: Preset,
    threads: int = 0,
    on_progress: ProgressCallback | None = None,
    on_start: ProcessHook | None = None,
) -> int:
    """Encode exactly `segment.frames` frames of the video (no audio); returns the frames written.

    Input seeking lands half a frame before the window so float rounding cannot skip its first
    frame; `-frames:v` ends it exactly; timestamps restart at 0 so the concat demuxer can chain them.
    """
    width, height = size
    args: list[str] = []
    if segment.seek_s is not None:
        args += ["-ss", f"{segment.seek_s:.6f}"]
    args += [
        "-i",
        str(input_path),
        "-map",
        "0:v:0",
        "-an",
        "-sn",
        "-dn",
        "-frames:v",
        str(segment.frames),
        "-vf",
        f"scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p,setpts=PTS-STARTPTS",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-preset",
        preset.x264_preset,
        "-crf",
        str(preset.crf),
        "-threads",
        str(threads),
        "-video_track_timescale",
        str(_timescale(segment.fps)),
        *PROGRESS_ARGS,
        "-y",
        str(output_path),
    ]
    check(run_ffmpeg(args, on_progress=on_progress, on_start=on_start), f"segment {segment.index}")
    timing = stream_timing(output_path, "v", decode=False)
    written = timing.count if timing else 0
    if written != segment.frames:
        raise FfmpegFailed(f"segment {segment.index} has {written} frames, expected {segment.frames}")
    return written


def _timescale(fps: Fraction) -> int:
    """An MP4 track timescale in which every frame duration is an integer (shared by all segments)."""
    scale = fps.numerator
    while scale < 10_000:
        scale *= 2
    return scale


def encode_audio(
    input_path: str | Path,
    output_path: str | Path,
    *,
    preset: Preset,
    on_progress: ProgressCallback | None = None,
    on_start: ProcessHook | None = None,
) -> None:
    """Encode the whole audio track once (per-segment AAC leaves gaps at every boundary)."""
    args = [
        "-i",
        str(input_path),
        "-map",
        "0:a:0",
        "-vn",
        "-sn",
        "-dn",
        # fill timestamp holes with silence and start at 0, so audio stays aligned with video
        "-af",
        "aresample=async=1:first_pts=0",
        "-c:a",
        "aac",
        "-b:a",
        preset.audio_bitrate,
        *PROGRESS_ARGS,
        "-y",
        str(output_path),
    ]
    check(run_ffmpeg(args, on_progress=on_progress, on_start=on_start), "audio encode")


def concat_and_mux(
    segment_paths: Sequence[str | Path],
    audio_path: str | Path | None,
    output_path: str | Path,
    work_dir: str | Path,
) -> None:
    """Chain the segments with the concat demuxer (no re-encode) and mux the audio; faststart MP4."""
    listing = Path(work_dir) / "segments.txt"
    listing.write_text("".join(f"file '{_concat_quote(Path(p).resolve())}'\n" for p in segment_paths))
    args = ["-f", "concat", "-safe", "0", "-i", str(listing)]
    if audio_path is not None:
        args += ["-i", str(audio_path)]
    args += ["-map", "0:v:0"]
    if audio_path is not None:
        args += ["-map", "1:a:0"]
    args += ["-c", "copy", "-movflags", "+faststart", "-y", str(output_path)]
    check(run_ffmpeg(args), "concat and mux")


def _concat_quote(path: Path) -> str:
    return str(path).replace("'", "'\\''")


def make_poster(video_path: str | Path, poster_path: str | Path, *, at_s: float) -> None:
    args = ["-ss", f"{max(at_s, 0.0):.3f}", "-i", str(video_path), "-frames:v", "1", "-q:v", "3"]
    args += ["-update", "1", "-y", str(poster_path)]
    check(run_ffmpeg(args), "poster")


@dataclass(frozen=True, slots=True)
class Verified:
    frames: int
    duration_s: float
    audio_duration_s: float | None
    size_bytes: int


def verify_output(output_path: str | Path, expected: SourceFacts) -> Verified:
    """Decode the output and compare it with the input: same frames, durations within one frame."""
    path = Path(output_path)
    if not path.exists() or path.stat().st_size == 0:
        raise VerificationFailed("the output file is missing or empty")
    video = stream_timing(path, "v", decode=True)
    if video is None:
        raise VerificationFailed("the output has no decodable video")
    tolerance = expected.frame_s
    if video.count != expected.frames:
        raise VerificationFailed(f"the output has {video.count} frames, the input {expected.frames}")
    if abs(float(video.duration) - expected.duration_s) > tolerance:
        raise VerificationFailed(
            f"the output lasts {float(video.duration):.3f} s, the input {expected.duration_s:.3f} s"
        )
    audio_duration: float | None = None
    if expected.has_audio:
        audio = stream_timing(path, "a", decode=True)
        if audio is None or audio.count == 0:
            raise VerificationFailed("the output lost the audio track")
        audio_duration = float(audio.duration)
        if (
            expected.audio_duration_s is not None
            and abs(audio_duration - expected.audio_duration_s) > tolerance
        ):
            raise VerificationFailed(
                f"the output audio lasts {audio_duration:.3f} s, the input {expected.audio_duration_s:.3f} s"
            )
    return Verified(video.count, float(video.duration), audio_duration, path.stat().st_size)
