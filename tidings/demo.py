"""The demo job `tidings dev` starts: a generated clip, uploaded and transcoded like any other."""

from __future__ import annotations

import subprocess
from pathlib import Path

# The demo clip: long enough at the template's default SegmentSeconds (20) for four segments
# encoded side by side, small enough (270p at 15 fps) that the whole job stays well under a minute on two
# cores. tests/functional/transcode/test_demo_clip.py plans it.
DEMO_SECONDS = 80.0
DEMO_SIZE = "480x270"
DEMO_RATE = 15
DEMO_FILE = "sample-270p-80s.mp4"


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def make_sample_video(path: Path, *, seconds: float = 20.0, size: str = "1280x720", rate: int = 30) -> Path:
    """Write an H.264/AAC test pattern with a tone, long enough to watch its progress."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:
        return path
    partial = path.with_suffix(".partial.mp4")
    command = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        str(partial),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    partial.replace(path)
    return path


def make_demo_video(path: Path) -> Path:
    return make_sample_video(path, seconds=DEMO_SECONDS, size=DEMO_SIZE, rate=DEMO_RATE)
