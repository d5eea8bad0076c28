"""`make bench`: every benchmark in one run, then bench/results.json and docs/benchmarks.md.

    .venv/bin/python -m bench               # quick mode (about 5 minutes on 2 quiet cores)
    BENCH_FULL=1 .venv/bin/python -m bench  # full mode
    .venv/bin/python -m bench --only watcher,connect_rate   # some sections alone

A section that fails is recorded with its error; the others still run. With `--only`, the other
sections' figures stay as the last run left them in bench/results.json, and `rerun` records
which sections were measured alone, and when.
"""

from __future__ import annotations

import argparse
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

from bench import (
    aws_model,
    capacity,
    coldstart,
    cost,
    fanout,
    model_validation,
    sizes,
    tracing_cost,
    watcher,
)
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
    posts_per_round: int
    watcher_stacks: int  # fresh stacks, each watching two jobs
    transcode_args: tuple[str, ...]
    sam_build: bool  # quick mode reuses the last sizes when there are any


QUICK = Mode(
    "quick",
    3,
    (100, 1000),
    10_000,
    (1, 20),
    100,
    1000,
    1,
    ("--seconds", "10", "--segment-seconds", "3"),
    False,
)
FULL = Mode("full", 5, (100, 1000, 5000), 10_000, (1, 4, 20), 200, 2000, 3, (), True)

# `--only` names, in the order a whole run measures them; the stack parts share one stack
SECTIONS = (
    "aws_model",
    "model_validation",
    "connect_rate",
    "fanout",
    "posts",
    "watcher",
    "cold_start",
    "tracing_backends",
    "capacity",
    "transcode",
    "sizes",
)


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


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _below(value: float | None, goal: float) -> bool | None:
    return None if value is None else value < goal


def fanout_goals(fanout_results: dict[str, Any]) -> dict[str, Any] | None:
    row = fanout_results.get("1000")
    if row is None:
        return None
    return {
        "vs_sequential": _at_least(row["vs_sequential"], fanout.GOAL_VS_SEQUENTIAL),
        "vs_http_floor": _at_least(row.get("vs_http_floor"), fanout.GOAL_VS_FLOOR),
        "p99": _below(row["p99_ms"], fanout.GOAL_P99_MS),
    }


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """Each local goal of issue 15 met (True), missed (False) or not measured (None), from the figures."""
    rate = results.get("connect_rate") or {}
    at_20, at_1 = rate.get("20"), rate.get("1")
    watch = results.get("watcher") or {}
    return {
        "fanout_1000": fanout_goals(results.get("fanout") or {}),
        "connect_rate_20": _at_least(at_20, fanout.GOAL_CONNECT_RATE_20),
        "connect_rate_20_not_below_1": None if at_20 is None or at_1 is None else at_20 >= at_1,
        "posts_vs_bare_server": _at_least(results.get("posts_vs_bare_server"), fanout.GOAL_POSTS_VS_BARE),
        "watcher_p50": _below(watch.get("p50_ms"), watcher.GOAL_P50_MS),
        "watcher_first": _below(watch.get("first_ms"), watcher.GOAL_FIRST_MS),
        "watcher_order": None if "after_higher_seq" not in watch else watch["after_higher_seq"] == 0,
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


def parse_only(text: str | None) -> tuple[str, ...]:
    """`--only a,b`: the sections to run, in the whole run's order; none given: every section."""
    if text is None:
        return SECTIONS
    asked = {name.strip().replace("-", "_") for name in text.split(",") if name.strip()}
    unknown = asked - set(SECTIONS)
    if unknown or not asked:
        raise ValueError(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return tuple(name for name in SECTIONS if name in asked)


def stack_sections(results: dict[str, Any], mode: Mode, parts: tuple[str, ...]) -> None:
    """Connect rate, fan-out and boto3 posts on one stack (bench/fanout.py)."""
    stack = section(
        results,
        "fanout: " + ", ".join(parts),
        lambda: asyncio.run(
            fanout.run(
                list(mode.fanout_sizes),
                mode.repeats,
                connect_levels=mode.connect_levels,
                connect_per_level=mode.connect_per_level,
                posts_per_round=mode.posts_per_round,
                parts=parts,
            )
        ),
    )
    if stack is None:
        return
    if "connect_rate" in stack:
        results["connect_rate"] = stack["connect_rate"]
    if "posts" in stack:
        results["posts_vs_bare_server"] = stack["posts"]["posts_vs_bare_server"]
        results["posts"] = stack["posts"]
    if "fanout" in stack:
        results["fanout"] = stack["fanout"]
        results["stack_kb_per_subscribed_connection"] = stack["stack_kb_per_subscribed_connection"]
        results["fanout_details"] = {
            k: stack[k]
            for k in (
                "publish",
                "http_floor",
                "lambda_ms_per_1000_deliveries",
                "notify_memory_mb",
                "message_bytes",
            )
        }
        results["cost"] = cost_section(stack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks.")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    try:
        chosen = parse_only(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    mode = FULL if os.environ.get("BENCH_FULL") == "1" else QUICK
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(RESULTS.read_text())
    started = time.monotonic()
    now = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "BENCH_FULL=1 make bench" if mode is FULL else "make bench"
    if chosen == SECTIONS:
        results: dict[str, Any] = {
            "date": now,
            "command": command,
            "mode": mode.name,
            "repeats": mode.repeats,
            "machine": machine(),
        }
    else:
        results = {k: v for k, v in previous.items() if k != "errors"}
        results.setdefault("machine", machine())
        results.setdefault("date", now)
        results.setdefault("command", command)
        results.setdefault("mode", mode.name)
        results.setdefault("repeats", mode.repeats)
        rerun = dict(results.get("rerun") or {})
        for name in chosen:
            rerun[name] = f"{now}, `python -m bench --only {name}` ({mode.name} mode)"
        results["rerun"] = rerun
    if "aws_model" in chosen:
        model = section(results, "aws model", lambda: aws_model.run(seeds=3))
        if model is not None:
            results["aws_model"] = {
                **{n: model[n] for n in ("1000", "10000", "100000", "starvation")},
                "cost_per_million_usd": model["cost_per_million_usd"],
                "cpu_post_ms": model["cpu_post_ms"],
                "seeds": model["seeds"],
            }
    # the model's prediction of the local N = 1,000 run, from figures measured now, before that run
    validation = None
    if "model_validation" in chosen:
        validation = section(results, "model validation", model_validation.measure_and_predict)
    parts = tuple(name for name in fanout.PARTS if name in chosen)
    if parts:
        stack_sections(results, mode, parts)
    if validation is not None:
        # compared with this invocation's own fan-out only: an older run is not what it predicted
        measured_1000 = (results.get("fanout") or {}).get("1000") if "fanout" in parts else None
        results.setdefault("aws_model", {})["validation"] = model_validation.compare(
            validation, measured_1000
        )
    if "watcher" in chosen:
        results["watcher"] = section(
            results, "watcher", lambda: asyncio.run(watcher.run(mode.watcher_stacks))
        )
    if "cold_start" in chosen:
        results["cold_start"] = section(results, "cold start", lambda: coldstart.run(max(mode.repeats, 5)))
        if results["cold_start"]:
            results["cold_start_ms"] = {
                name: row["total_ms"] for name, row in results["cold_start"]["functions"].items()
            }
    if "tracing_backends" in chosen:
        results["tracing_backends"] = section(
            results, "tracing backends", lambda: tracing_cost.run(max(mode.repeats, 5))
        )
    if "capacity" in chosen:
        results["capacity"] = section(
            results, "capacity", lambda: asyncio.run(capacity.run(mode.capacity_connections))
        )
    if "transcode" in chosen:
        results["transcode"] = section(results, "transcode", lambda: transcode(mode))
    if "sizes" in chosen:
        results["sizes"] = section(results, "sizes", lambda: package_sizes(mode, previous))
    results["goals"] = goals(results)
    if chosen == SECTIONS:
        results["duration_s"] = round(time.monotonic() - started, 1)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    document = DOC.read_text() if DOC.exists() else ""
    DOC.write_text(splice(document, render(results)))
    print(
        f"bench: wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}"
        f" in {time.monotonic() - started:.1f} s"
    )
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
