"""Small generated clips (lavfi testsrc2 + sine) and independent decoders for checking outputs.

The decoders here use plain ffmpeg to raw video / PCM, not the pipeline's own verification, so
a bug there cannot hide a bug in the output.
"""

from __future__ import annotations

import random
import subprocess
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from testkit import SRC, load_handler, require_tool  # tests/testkit.py

from tidings_core.config import Settings

for code_root in (SRC / "transcode_worker", SRC / "uploads"):
    if str(code_root) not in sys.path:
        sys.path.insert(0, str(code_root))


@pytest.fixture
def api(aws: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The uploads function's handler module (POST /jobs, GET /jobs/{jobId}) under moto."""
    monkeypatch.setenv("INPUT_BUCKET", "tidings-uploads")
    boto3.client("s3").create_bucket(Bucket="tidings-uploads")
    module = load_handler("uploads")
    module.s3.cache_clear()
    yield module
    module.s3.cache_clear()


def _bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return None


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return require_tool("ffmpeg", _bundled_ffmpeg())


@dataclass(frozen=True)
class Clips:
    main: Path  # 4 s, 320x240, 25 fps, 48 kHz mono sine, one keyframe (seeks must decode)
    ntsc: Path  # 3.3 s, 640x360, 30000/1001 fps, 44.1 kHz stereo
    silent: Path  # 2 s video without audio
    audio_only: Path
    image: Path
    corrupt: Path
    empty: Path
    truncated: Path


def _make(ffmpeg: str, args: list[str], out: Path) -> Path:
    subprocess.run([ffmpeg, "-v", "error", "-nostdin", "-y", *args, str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def clips(ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Clips:
    root = tmp_path_factory.mktemp("clips")
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]

    def lavfi(video: str, audio: str, seconds: str) -> list[str]:
        return ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, "-t", seconds]

    main = _make(
        ffmpeg,
        [
            *lavfi("testsrc2=size=320x240:rate=25", "sine=frequency=440:sample_rate=48000", "4"),
            *h264,
            "-g",
            "1000",
            "-c:a",
            "aac",
        ],
        root / "main.mp4",
    )
    ntsc = _make(
        ffmpeg,
        [
            *lavfi("testsrc2=size=640x360:rate=30000/1001", "sine=frequency=300:sample_rate=44100", "3.3"),
            *h264,
            "-ac",
            "2",
            "-c:a",
            "aac",
        ],
        root / "ntsc.mp4",
    )
    silent = _make(
        ffmpeg, ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "2", *h264], root / "silent.mp4"
    )
    audio_only = _make(
        ffmpeg, ["-f", "lavfi", "-i", "sine=frequency=440", "-t", "2", "-c:a", "aac"], root / "audio.m4a"
    )
    image = _make(
        ffmpeg, ["-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1"], root / "image.png"
    )
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(random.Random(7).randbytes(64 * 1024))
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    truncated = root / "truncated.mp4"
    truncated.write_bytes(main.read_bytes()[: main.stat().st_size // 3])  # moov is at the end
    return Clips(main, ntsc, silent, audio_only, image, corrupt, empty, truncated)


def decode_gray(ffmpeg: str, path: Path) -> tuple[int, int, list[bytes]]:
    """Every decoded video frame as 8-bit gray, with the frame size."""
    banner = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    import re

    match = re.search(r"Video: .*?(\d{2,5})x(\d{2,5})", banner)
    assert match, banner
    width, height = int(match.group(1)), int(match.group(2))
    raw = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    ).stdout
    size = width * height
    assert len(raw) % size == 0
    return width, height, [raw[i : i + size] for i in range(0, len(raw), size)]


def decode_pcm(ffmpeg: str, path: Path, rate: int) -> array[int]:
    """The first audio stream as mono 16-bit samples at `rate`."""
    raw = subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            str(rate),
            "-f",
            "s16le",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    samples = array("h")
    samples.frombytes(raw)
    return samples


def frame_distance(a: bytes, b: bytes) -> float:
    step = 7  # sampling every 7th pixel is plenty to tell neighbouring test frames apart
    return sum(abs(x - y) for x, y in zip(a[::step], b[::step], strict=True)) / (len(a) // step)
