"""Probing reads the container's fields (PyAV), not ffmpeg's human-readable banner."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from transcoder.errors import UnsupportedInput
from transcoder.ffmpeg import probe

from .conftest import Clips


def _remux(ffmpeg: str, source: Path, out: Path, *args: str) -> Path:
    command = [ffmpeg, "-v", "error", "-nostdin", "-y", *args, "-i", str(source), "-c", "copy", str(out)]
    subprocess.run(command, check=True)
    return out


def test_text_in_the_metadata_that_looks_like_an_error_does_not_fail_a_good_file(
    ffmpeg: str, clips: Clips, tmp_path: Path
) -> None:
    # the banner echoes metadata: a title like these made the banner probe call the file corrupt
    for n, title in enumerate(["Invalid data found when processing input", "moov atom not found"]):
        clip = tmp_path / f"titled-{n}.mp4"
        subprocess.run(
            [ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(clips.main), "-c", "copy",
             "-metadata", f"title={title}", str(clip)],
            check=True,
        )  # fmt: skip
        info = probe(clip)
        assert (info.width, info.height, info.frames, info.has_audio) == (320, 240, 100, True)


def test_a_rotated_video_reports_its_displayed_size(ffmpeg: str, clips: Clips, tmp_path: Path) -> None:
    rotated = _remux(ffmpeg, clips.ntsc, tmp_path / "rotated.mp4", "-display_rotation", "90")
    info = probe(rotated)
    assert (info.width, info.height) == (360, 640)
    assert info.fps.limit_denominator(1001) == pytest.approx(30000 / 1001)


def test_audio_with_cover_art_is_not_a_video(ffmpeg: str, clips: Clips, tmp_path: Path) -> None:
    song = tmp_path / "song.m4a"
    subprocess.run(
        [ffmpeg, "-v", "error", "-nostdin", "-y", "-i", str(clips.audio_only), "-i", str(clips.image),
         "-map", "0:a", "-map", "1:v", "-c", "copy", "-disposition:v:0", "attached_pic", str(song)],
        check=True,
    )  # fmt: skip
    with pytest.raises(UnsupportedInput, match="still image"):
        probe(song)
