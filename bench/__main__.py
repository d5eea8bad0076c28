"""`make bench`: every benchmark in one run, then bench/results.json and docs/benchmarks.md.

    .venv/bin/python -m bench               # quick mode (under 5 minutes on 2 cores)
    BENCH_FULL=1 .venv/bin/python -m bench  # full mode

A section that fails is recorded with its error; the others still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import aws_model, capacity, coldstart, cost, fanout, model_validation, sizes, tracing_cost
from bench.report import render, splice
from bench.stats import median, median_ratio, rounded

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int
    fanout_sizes: tuple[int, ...]
    capacity_connections: int
    connect_levels: tuple[int, ...]
    connect_per_level: int
    transcode_args: tuple[str, ...]
    sam_build: bool  # quick mode reuses the last sizes when there are any


QUICK = Mode(
    "quick", 3, (100, 1000), 10_000, (1, 2, 4), 40, ("--seconds", "10", "--segment-seconds", "3"), False
)
FULL = Mode("full", 5, (100, 1000, 5000), 10_000, (1, 2, 4, 8), 100, (), True)


def machine() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def transcode(mode: Mode) -> dict[str, Any]:
    """bench/transcode.py `repeats` times; medians of each figure, speed-up as a median of pairs."""
    from bench import transcode as transcode_bench

    runs = []
    for _ in range(mode.repeats):
        with contextlib.redirect_stdout(io.StringIO()):
            runs.append(transcode_bench.main(list(mode.transcode_args)))
    first = runs[0]

    def med(side: str, key: str) -> float:
        return median([float(run[side][key]) for run in runs])

    return {
        "input": first["input"],
        "parallelism": first["parallelism"],
        "single_pass": {k: med("single_pass", k) for k in ("wall_s", "cpu_s")}
        | {"events": first["single_pass"]["events"]},
        "split_parallel": {k: med("split_parallel", k) for k in ("wall_s", "cpu_s")}
        | {
            "events": first["split_parallel"]["events"],
            "segments": first["split_parallel"]["segments"],
        },
        "speedup": rounded(
            median_ratio([(r["single_pass"]["wall_s"], r["split_parallel"]["wall_s"]) for r in runs])
        ),
        "cpu_overhead": rounded(
            median_ratio([(r["split_parallel"]["cpu_s"], r["single_pass"]["cpu_s"]) for r in runs])
        ),
        "repeats": len(runs),
    }


def package_sizes(mode: Mode, previous: dict[str, Any]) -> dict[str, Any]:
    if not mode.sam_build and previous.get("sizes", {}).get("packages"):
        reused = dict(previous["sizes"])
        reused["note"] = f"reused from the run of {previous.get('date')}; BENCH_FULL=1 rebuilds"
        return reused
    return sizes.run()


def fanout_goals(fanout_results: dict[str, Any]) -> dict[str, Any] | None:
    row = fanout_results.get("1000")
    if row is None:
        return None

    def at_least(value: float | None, goal: float) -> bool | None:
        return None if value is None else value >= goal

    return {
        "vs_sequential": at_least(row["vs_sequential"], fanout.GOAL_VS_SEQUENTIAL),
        "vs_raw_broadcast": at_least(row["vs_raw_broadcast"], fanout.GOAL_VS_RAW),
        "p99": None if row["p99_ms"] is None else row["p99_ms"] < fanout.GOAL_P99_MS,
    }


def cost_section(stack: dict[str, Any]) -> dict[str, Any] | None:
    measured: dict[str, float] = stack.get("lambda_ms_per_1000_deliveries") or {}
    if not measured:
        return None
    size = max(measured, key=int)
    workload = cost.Workload(
        lambda_ms_per_1000_deliveries=measured[size],
        fanout=int(size),
        lambda_memory_mb=int(stack["notify_memory_mb"]),
        message_bytes=int(stack["message_bytes"]),
    )
    return cost.cost_report(workload)


def section(results: dict[str, Any], name: str, work: Callable[[], Any]) -> Any:
    started = time.monotonic()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    try:
        value = work()
    except Exception as exc:
        traceback.print_exc()
        results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
        value = None
    print(f"bench: {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return value


def main() -> int:
    mode = FULL if os.environ.get("BENCH_FULL") == "1" else QUICK
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(RESULTS.read_text())
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "BENCH_FULL=1 make bench" if mode is FULL else "make bench",
        "mode": mode.name,
        "repeats": mode.repeats,
        "machine": machine(),
    }
    model = section(results, "aws model", lambda: aws_model.run(seeds=3))
    if model is not None:
        results["aws_model"] = {
            **{n: model[n] for n in ("1000", "10000", "100000", "starvation")},
            "cost_per_million_usd": model["cost_per_million_usd"],
            "cpu_post_ms": model["cpu_post_ms"],
            "seeds": model["seeds"],
        }
    # the model's prediction of the local N = 1,000 run, from figures measured now, before that run
    validation = section(results, "model validation", model_validation.measure_and_predict)
    stack = section(
        results,
        "fanout",
        lambda: asyncio.run(
            fanout.run(
                list(mode.fanout_sizes),
                mode.repeats,
                connect_levels=mode.connect_levels,
                connect_per_level=mode.connect_per_level,
            )
        ),
    )
    if stack is not None:
        results["fanout"] = stack["fanout"]
        results["goals"] = {"fanout_1000": fanout_goals(stack["fanout"])}
        results["connect_rate"] = stack["connect_rate"]
        results["stack_kb_per_subscribed_connection"] = stack["stack_kb_per_subscribed_connection"]
        results["fanout_details"] = {
            k: stack[k]
            for k in ("publish", "lambda_ms_per_1000_deliveries", "notify_memory_mb", "message_bytes")
        }
        results["cost"] = cost_section(stack)
    if validation is not None:
        measured_1000 = (results.get("fanout") or {}).get("1000")
        results.setdefault("aws_model", {})["validation"] = model_validation.compare(
            validation, measured_1000
        )
    results["cold_start"] = section(results, "cold start", lambda: coldstart.run(max(mode.repeats, 5)))
    if results["cold_start"]:
        results["cold_start_ms"] = {
            name: row["total_ms"] for name, row in results["cold_start"]["functions"].items()
        }
    results["tracing_backends"] = section(
        results, "tracing backends", lambda: tracing_cost.run(max(mode.repeats, 5))
    )
    results["capacity"] = section(
        results, "capacity", lambda: asyncio.run(capacity.run(mode.capacity_connections))
    )
    results["transcode"] = section(results, "transcode", lambda: transcode(mode))
    results["sizes"] = section(results, "sizes", lambda: package_sizes(mode, previous))
    results["duration_s"] = round(time.monotonic() - started, 1)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    document = DOC.read_text() if DOC.exists() else ""
    DOC.write_text(splice(document, render(results)))
    print(
        f"bench: wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)} in {results['duration_s']} s"
    )
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
