"""Running ffmpeg: locating the binary, progress-reporting runs, probing and exact stream timing.

Probing reads the container with PyAV (FFmpeg's libraries, wheels for x86_64 and arm64, shipped in
the FfmpegLayer): codecs, sizes, rates, rotation and dispositions as typed fields, not regular
expressions over `ffmpeg -i`'s banner (no ffprobe binary is published for both architectures on
PyPI). Exact numbers still come from `-f framecrc`: one line per packet or decoded frame with its
timestamps in a declared time base.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import CorruptInput, EmptyInput, FfmpegFailed, UnsupportedInput, WorkerLost
from .progress import ProgressBlock, ProgressParser

ProcessHook = Callable[["subprocess.Popen[str]"], None]
ProgressCallback = Callable[[ProgressBlock], None]


def ffmpeg_path() -> str:
    """`FFMPEG_PATH` (the Lambda layer's /opt/bin/ffmpeg) or imageio-ffmpeg's bundled binary."""
    configured = os.environ.get("FFMPEG_PATH")
    if configured:
        return configured
    import imageio_ffmpeg  # only where no layer provides the binary

    path: str = imageio_ffmpeg.get_ffmpeg_exe()
    return path


@dataclass(frozen=True, slots=True)
class RunResult:
    returncode: int
    stdout: str
    stderr_tail: str


def run_ffmpeg(
    args: Sequence[str],
    *,
    on_progress: ProgressCallback | None = None,
    on_start: ProcessHook | None = None,
    capture_stdout: bool = False,
    timeout_s: float | None = None,
) -> RunResult:
    """Run ffmpeg with `args`; with `on_progress`, stdout carries `-progress pipe:1` blocks.

    stderr is drained on a thread (a full pipe would block ffmpeg) and only its tail is kept
    for error messages. Raises WorkerLost when the process dies from a signal.
    """
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", *args]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    tail: deque[str] = deque(maxlen=200)  # a long banner (many streams) must fit
    drain = threading.Thread(target=lambda: tail.extend(process.stderr or ()), daemon=True)
    drain.start()
    if on_start is not None:
        on_start(process)
    parser = ProgressParser()
    captured: list[str] = []
    timer = threading.Timer(timeout_s, process.kill) if timeout_s else None
    if timer:
        timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if capture_stdout:
                captured.append(line)
            if on_progress is not None and (block := parser.feed(line)) is not None:
                on_progress(block)
        returncode = process.wait()
    finally:
        if timer:
            timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        drain.join(timeout=5)
    stderr_tail = "".join(tail)
    if returncode < 0:
        raise WorkerLost(f"ffmpeg was killed by signal {-returncode}")
    return RunResult(returncode, "".join(captured), stderr_tail)


def last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no error output"


def check(result: RunResult, what: str) -> RunResult:
    if result.returncode != 0:
        raise FfmpegFailed(f"{what} failed: {last_error_line(result.stderr_tail)}")
    return result


# --- probing ---------------------------------------------------------------------------------

# a still image is a "video" stream that is not a video
_STILL_CODECS = frozenset({"png", "mjpeg", "bmp", "gif", "webp", "tiff", "jpegls"})


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """Exact packet/frame timing of one stream, from framecrc."""

    time_base: Fraction
    count: int
    start: Fraction  # seconds
    end: Fraction  # seconds: last pts + its duration
    durations: frozenset[int]  # distinct packet durations, in time-base units
    gaps: int  # places where a packet does not start where the previous one ended

    @property
    def duration(self) -> Fraction:
        return self.end - self.start


def stream_timing(path: str | Path, stream: str, *, decode: bool) -> StreamTiming | None:
    """Timing of the first `stream` ("v" or "a"); decoding counts what a player would show."""
    args = ["-i", str(path), "-map", f"0:{stream}:0"]
    if not decode:
        args += ["-c", "copy"]
    args += ["-f", "framecrc", "-"]
    result = run_ffmpeg(args, capture_stdout=True)
    if result.returncode != 0:
        return None
    time_base: Fraction | None = None
    rows: list[tuple[int, int]] = []
    for line in result.stdout.splitlines():
        if line.startswith("#tb 0:"):
            time_base = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 4 and parts[0] == "0":
                rows.append((int(parts[2]), int(parts[3])))  # pts, duration
    if time_base is None or not rows:
        return None
    rows.sort()
    gaps = sum(1 for (pts, dur), (nxt, _) in itertools.pairwise(rows) if pts + dur != nxt)
    start = rows[0][0]
    end = max(pts + dur for pts, dur in rows)
    return StreamTiming(
        time_base=time_base,
        count=len(rows),
        start=start * time_base,
        end=end * time_base,
        durations=frozenset(dur for _, dur in rows),
        gaps=gaps,
    )


@dataclass(frozen=True, slots=True)
class MediaInfo:
    path: str
    size_bytes: int
    duration_s: float  # of the video stream
    width: int  # as displayed (rotation applied)
    height: int
    fps: Fraction  # frames per second (exact when constant)
    frames: int
    constant_frame_rate: bool
    has_audio: bool
    video_codec: str


def probe(path: str | Path) -> MediaInfo:
    """Probe and classify an input; raises EmptyInput / CorruptInput / UnsupportedInput."""
    file = Path(path)
    size = file.stat().st_size if file.exists() else 0
    if size == 0:
        raise EmptyInput("the uploaded file is empty")
    facts = _container_facts(file)
    timing = stream_timing(file, "v", decode=False)
    if timing is None or timing.count == 0:
        raise CorruptInput("the video stream has no readable frames")
    if timing.count < 2:
        raise UnsupportedInput("a single frame, not a video")
    frame_duration = min(timing.durations) * timing.time_base if timing.durations else Fraction(0)
    constant = len(timing.durations) == 1 and frame_duration > 0
    fps = 1 / frame_duration if constant else facts.average_rate or timing.count / timing.duration
    return MediaInfo(
        path=str(file),
        size_bytes=size,
        duration_s=float(timing.duration),
        width=facts.width,
        height=facts.height,
        fps=fps.limit_denominator(1001 * 1000),
        frames=timing.count,
        constant_frame_rate=constant,
        has_audio=facts.has_audio,
        video_codec=facts.codec,
    )


@dataclass(frozen=True, slots=True)
class _ContainerFacts:
    codec: str
    width: int  # as displayed (rotation applied)
    height: int
    average_rate: Fraction | None
    has_audio: bool


def _container_facts(file: Path) -> _ContainerFacts:
    """The first video stream's codec, displayed size and rate, and whether there is audio."""
    import av  # FFmpeg's demuxers and decoders in-process (the FfmpegLayer ships the wheel)

    try:
        container = av.open(str(file), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise CorruptInput(f"not a readable media file: {str(exc)[:200]}") from None
    with container:
        has_audio = len(container.streams.audio) > 0
        if not container.streams.video:
            raise UnsupportedInput("no video stream" + (" (audio only)" if has_audio else ""))
        video = container.streams.video[0]
        codec = video.codec_context.name
        if codec in _STILL_CODECS or video.disposition & av.stream.Disposition.attached_pic:
            raise UnsupportedInput(f"a still image ({codec}), not a video")
        width, height = video.codec_context.width, video.codec_context.height
        if width <= 0 or height <= 0:
            raise CorruptInput("the video stream has no frame size")
        if _rotation(container, video) % 180 == 90:
            width, height = height, width
        rate = video.average_rate
        return _ContainerFacts(codec, width, height, Fraction(rate) if rate else None, has_audio)


def _rotation(container: Any, video: Any) -> int:
    """Degrees of the display matrix, read from the first decoded frame (0 when none decodes)."""
    import av

    try:
        frame = next(container.decode(video), None)
    except av.FFmpegError:
        return 0  # stream_timing reports an undecodable stream
    return round(abs(frame.rotation)) if frame is not None else 0
