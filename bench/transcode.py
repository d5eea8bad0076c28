"""Single pass vs split-and-parallel on the same generated input: wall time, CPU time, speed-up.

    .venv/bin/python bench/transcode.py [--seconds 20] [--size 1280x720] [--parallelism 2]
                                        [--segment-seconds 5]

Prints one JSON object. CPU time is the ffmpeg children's user+system time (`RUSAGE_CHILDREN`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src" / "transcode_worker"))

from transcoder.ffmpeg import ffmpeg_path  # noqa: E402
from transcoder.pipeline import PipelineResult, run_local_pipeline, run_single_pass  # noqa: E402
from transcoder.sinks import InMemorySink  # noqa: E402


def make_input(path: Path, seconds: float, size: str) -> None:
    sources = [
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
    ]
    codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    command = [
        ffmpeg_path(),
        "-v",
        "error",
        "-nostdin",
        "-y",
        *sources,
        "-t",
        str(seconds),
        *codecs,
        str(path),
    ]
    subprocess.run(command, check=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, run: Callable[[InMemorySink], PipelineResult]) -> dict[str, Any]:
    sink = InMemorySink()
    cpu_before, started = children_cpu(), time.perf_counter()
    result = run(sink)
    wall = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"{name} failed: {result.error}")
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(children_cpu() - cpu_before, 3),
        "segments": result.segments,
        "events": len(sink.events),
        "events_per_s": round(len(sink.events) / wall, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--segment-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-transcode-") as scratch:
        work = Path(scratch)
        source = work / "input.mp4"
        make_input(source, args.seconds, args.size)
        single = measure("single pass", lambda sink: run_single_pass(source, work / "single.mp4", sink=sink))
        split = measure(
            "split",
            lambda sink: run_local_pipeline(
                source,
                work / "split.mp4",
                sink=sink,
                parallelism=args.parallelism,
                segment_seconds=args.segment_seconds,
                work_dir=work,
            ),
        )
    report = {
        "benchmark": "transcode",
        "input": {"seconds": args.seconds, "size": args.size, "fps": 30},
        "parallelism": args.parallelism,
        "single_pass": single,
        "split_parallel": split,
        "speedup": round(single["wall_s"] / split["wall_s"], 2),
        "cpu_overhead": round(split["cpu_s"] / single["cpu_s"], 2) if single["cpu_s"] else None,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
