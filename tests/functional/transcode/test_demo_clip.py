"""The demo job (`make dev`) shows segments encoded side by side: its clip plans to at least four."""

from __future__ import annotations

from pathlib import Path

import yaml
from transcoder.media import measure_input
from transcoder.plan import plan_segments

from tidings.demo import make_demo_video

ROOT = Path(__file__).resolve().parents[3]


def _template_default(parameter: str) -> float:
    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation's short tags (!Ref, !Sub, ...) as plain values: only Parameters are read
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506
    return float(template["Parameters"][parameter]["Default"])


def test_the_demo_clip_plans_to_at_least_four_segments_at_the_default_segment_length(
    ffmpeg: str, tmp_path: Path
) -> None:
    clip = make_demo_video(tmp_path / "demo.mp4")
    facts = measure_input(clip)
    segments = plan_segments(facts.frames, facts.fps, target_seconds=_template_default("SegmentSeconds"))
    assert len(segments) >= 4, [segment.frames for segment in segments]
