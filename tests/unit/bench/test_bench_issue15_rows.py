"""Issue 15's local rows in `make bench`: the HTTP floor ratio, connect rate at 1 and 20 in flight,
boto3 posts against a bare server, the watcher's latencies and order on the raw frames, the goal
table and `--only`."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from websockets.asyncio.server import ServerConnection, serve

from bench.__main__ import SECTIONS, goals, parse_only
from bench.clients import ClientPool
from bench.fanout import (
    connect_levels_of,
    connect_rate_summary,
    posts_summary,
    summarize_round,
    summarize_size,
)
from bench.http_floor import build_app
from bench.report import connect_rates, goal_rows, render
from bench.watcher import Frame, JobWatch, summarize, summarize_job

MACHINE = {"cpus": 2, "cpu_model": "test", "memory_gb": 4, "python": "3.12", "platform": "linux"}
RUN = {"date": "today", "command": "make bench", "mode": "quick", "repeats": 3, "machine": MACHINE}


def rounds(spans_s: list[float], n: int = 100, duplicates: int = 0) -> list:  # type: ignore[type-arg]
    """One round per span: n arrivals spread evenly up to the span."""
    return [summarize_round(0.0, [span * (i + 1) / n for i in range(n)], duplicates) for span in spans_s]


def test_the_floor_ratio_is_a_median_of_paired_repeats_and_duplicates_add_up() -> None:
    tidings = rounds([1.0, 2.0, 1.0], duplicates=1)  # 100, 50, 100 deliveries/s
    floor = rounds([0.25, 0.25, 1.0])  # 400, 400, 100
    summary = summarize_size(tidings, rounds([1.0, 1.0, 1.0]), rounds([0.01] * 3), floor)
    # pairs: 100/400, 50/400, 100/100 -> median 0.25 (not median(tidings) / median(floor) = 0.25 too,
    # so check a case where they differ)
    assert summary["vs_http_floor"] == pytest.approx(0.25)
    assert summary["duplicates"] == 3
    assert summary["http_floor"]["deliveries_per_s"] == 400
    skewed = summarize_size(
        rounds([1.0, 4.0, 1.0]), rounds([1.0] * 3), rounds([1.0] * 3), rounds([1.0, 1.0, 4.0])
    )
    assert skewed["vs_http_floor"] == pytest.approx(1.0)  # pairs 1, 0.25, 4: median 1


def test_posts_ratio_pairs_rounds_and_counts_only_successful_posts() -> None:
    stack = [
        {"posts": 1000, "ok": 800, "failed": 200, "seconds": 1.0},
        {"posts": 1000, "ok": 1000, "failed": 0, "seconds": 2.0},
    ]
    bare = [
        {"posts": 1000, "ok": 1000, "failed": 0, "seconds": 1.0},
        {"posts": 1000, "ok": 1000, "failed": 0, "seconds": 1.0},
    ]
    summary = posts_summary(stack, bare)
    assert summary["posts_vs_bare_server"] == pytest.approx(0.65)  # median of 0.8 and 0.5
    assert summary["stack_posts_per_s"] == 650
    assert summary["bare_posts_per_s"] == 1000
    assert summary["failed"] == 200
    assert summary["stack_cpu_ms_per_post"] is None  # rounds without CPU readings


def test_posts_cpu_per_post_is_a_median_over_rounds() -> None:
    stack = [
        {"posts": 1000, "ok": 1000, "failed": 0, "seconds": 1.0, "stack_cpu_s": s, "poster_cpu_s": 0.9}
        for s in (0.3, 0.5, 0.2)
    ]
    bare = [{"posts": 1000, "ok": 1000, "failed": 0, "seconds": 1.0, "poster_cpu_s": 0.8}] * 3
    summary = posts_summary(stack, bare)
    assert summary["stack_cpu_ms_per_post"] == pytest.approx(0.3)
    assert summary["poster_cpu_ms_per_post"] == {"stack": pytest.approx(0.9), "bare": pytest.approx(0.8)}


def test_cpu_seconds_reads_this_process() -> None:
    import os
    import time

    from bench.processes import cpu_seconds

    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.03


def test_connect_rate_is_keyed_by_concurrency_as_the_issue_asks() -> None:
    summary = connect_rate_summary({1: [90.0, 100.0, 95.0], 20: [150.0, 170.0, 160.0]}, 100, "path")
    assert summary["1"] == 95.0 and summary["20"] == 160.0
    assert summary["samples"] == 3
    assert connect_levels_of(summary) == {1: 95.0, 20: 160.0}
    assert connect_rates(summary) == [("1", 95.0), ("20", 160.0)]
    old = {"by_concurrency": {"1": {"connections_per_s": 69.1}, "4": {"connections_per_s": 32.3}}}
    assert connect_rates(old) == [("1", 69.1), ("4", 32.3)]


def test_connect_rate_profiles_the_functions_of_each_level() -> None:
    def record(function: str, ms: float, cold: bool = False) -> dict:  # type: ignore[type-arg]
        return {"function": function, "durationMs": ms, "cold": cold}

    records = {
        1: [record("AuthorizerFunction", 5.0), record("ConnectFunction", 9.0)],
        20: [
            record("AuthorizerFunction", 700.0, True),
            record("AuthorizerFunction", 30.0),
            record("AuthorizerFunction", 50.0),
        ],
    }
    summary = connect_rate_summary({1: [100.0], 20: [60.0]}, 100, "path", records)
    assert summary["functions"]["20"]["AuthorizerFunction"] == {
        "invocations": 3,
        "cold": 1,
        "median_ms": 50.0,
    }
    assert summary["functions"]["1"]["ConnectFunction"] == {"invocations": 1, "cold": 0, "median_ms": 9.0}


def test_goals_read_the_figures_and_leave_unmeasured_ones_open() -> None:
    results = {
        "fanout": {"1000": {"vs_sequential": 3.5, "vs_http_floor": 0.4, "p99_ms": 550.0}},
        "connect_rate": {"1": 120.0, "20": 110.0, "levels": [1, 20]},
        "posts_vs_bare_server": 0.85,
        "watcher": {"p50_ms": 12.0, "first_ms": 900.0, "after_higher_seq": 1},
    }
    assert goals(results) == {
        "fanout_1000": {"vs_sequential": True, "vs_http_floor": False, "p99": True},
        "connect_rate_20": False,
        "connect_rate_20_not_below_1": False,
        "posts_vs_bare_server": True,
        "watcher_p50": True,
        "watcher_first": False,
        "watcher_order": False,
    }
    empty = goals({})
    assert (
        empty["fanout_1000"] is None and empty["watcher_order"] is None and empty["connect_rate_20"] is None
    )


SIDE = {"p50_ms": 10.0, "p99_ms": 20.0, "deliveries_per_s": 1000.0, "missing": 0, "duplicates": 0}
FANOUT_ROW = {
    "vs_sequential": 1.4,
    "vs_http_floor": 0.31,
    "vs_raw_broadcast": 0.02,
    "p50_ms": 1200.0,
    "p99_ms": 2467.0,
    "deliveries_per_s": 405.0,
    "missing": 0,
    "duplicates": 2,
    "sequential": SIDE,
    "http_floor": SIDE | {"deliveries_per_s": 1306.0, "p99_ms": 760.0},
    "raw_broadcast": SIDE,
}


def test_the_goal_table_shows_each_figure_with_its_verdict() -> None:
    results = {
        **RUN,
        "fanout": {"1000": FANOUT_ROW},
        "connect_rate": {"1": 110.7, "20": 160.2, "levels": [1, 20], "per_level": 100, "samples": 3},
        "posts_vs_bare_server": 0.79,
        "posts": {
            "posts_vs_bare_server": 0.79,
            "stack_posts_per_s": 826.0,
            "bare_posts_per_s": 1132.0,
            "failed": 0,
            "repeats": 3,
            "posts_per_round": 1000,
            "connections": 1000,
        },
        "watcher": summarize(
            [[JobWatch([2479.0, 12.5, 12.0, 13.0], [2400.0, 6.0, 6.0, 6.0], 0, 0, [1, 2, 3, 4], "completed")]]
        )
        | {
            "jobs_per_stack": 1,
            "stack_start_s": 7.4,
            "clip": "a clip",
            "first_notify": [{"ms": 1200.0, "cold": True}],
        },
    }
    results["goals"] = goals(results)
    table = "\n".join(goal_rows(results))
    assert "| local N = 1,000: vs the HTTP floor | ≥ 0.5x | 0.31x | **missed** |" in table
    assert "| connect rate, 20 in flight | ≥ 150/s | 160/s at 20, 111/s at 1 | met |" in table
    assert (
        "| boto3 posts, 16 threads: stack vs bare server | ≥ 0.8x | 0.79x (826 vs 1,132 posts/s)"
        " | **missed** |" in table
    )
    assert "| one watcher: publish to client p50 | < 20 ms | 12.8 ms | met |" in table
    assert "| one watcher: first event of a fresh stack | < 300 ms | 2,479 ms | **missed** |" in table
    assert "| one watcher: messages after a higher seq | 0 | 0 | met |" in table
    text = render(results)
    assert "a fresh stack's first: 1,200 ms (cold)." in text
    assert "| 20 | 160 | — | — |" in text and "100 new connections per sample, medians of 3." in text
    assert (
        "| 1,000 | 405 | 1,200 | 2,467 | 1,000 | 1,306 (760) | 1,000 | 1.40x | 0.31x | 0.02x | 0 | 2 |"
        in text
    )


def test_only_keeps_the_whole_runs_order_and_refuses_unknown_sections() -> None:
    assert parse_only(None) == SECTIONS
    assert parse_only("watcher,connect-rate") == ("connect_rate", "watcher")
    with pytest.raises(ValueError, match="unknown section"):
        parse_only("watcher,nope")
    with pytest.raises(ValueError):
        parse_only(" , ")


def test_watcher_counts_order_on_the_raw_frames_and_times_from_emitted_at() -> None:
    def job(seq: int, emitted: float, stage: str = "transcoding") -> dict:  # type: ignore[type-arg]
        return {"type": "progress", "jobId": "j", "seq": seq, "stage": stage, "emittedAt": emitted}

    frames = [
        Frame(1000.0, {"type": "snapshot", "topic": "job:j", "jobs": [{"jobId": "j", "seq": 0}]}),
        Frame(1010.0, job(1, 1000.0) | {"sentAt": 1004.0}),
        Frame(1030.0, job(3, 1020.0)),
        Frame(1035.0, job(2, 1015.0)),  # after seq 3: a client without the seq rule goes back
        Frame(1040.0, job(3, 1020.0)),  # the same seq again: a duplicate, not "after a higher seq"
        Frame(1041.0, {"type": "progress", "jobId": "other", "seq": 1, "emittedAt": 0}),
        Frame(1060.0, job(4, 1050.0, "completed")),
    ]
    watch = summarize_job(frames, "j")
    assert watch.latencies_ms == [10.0, 10.0, 20.0, 20.0, 10.0]
    assert watch.to_notify_ms == [4.0]  # only the message that carries its sentAt
    assert (watch.after_higher_seq, watch.duplicates) == (1, 1)
    assert watch.seqs == [1, 3, 2, 3, 4]
    assert watch.final_stage == "completed"


def test_a_live_message_older_than_the_snapshot_is_out_of_order() -> None:
    frames = [
        Frame(0.0, {"type": "snapshot", "jobs": [{"jobId": "j", "seq": 5}]}),
        Frame(1.0, {"type": "progress", "jobId": "j", "seq": 4, "emittedAt": 0.5}),
    ]
    assert summarize_job(frames, "j").after_higher_seq == 1


def test_watcher_summary_takes_the_first_job_of_each_fresh_stack() -> None:
    stack_a = [
        JobWatch([400.0, 10.0, 12.0], [300.0, 5.0, 6.0], 0, 0, [1, 2, 3], "completed"),
        JobWatch([9.0], [4.0], 0, 0, [1], "completed"),
    ]
    stack_b = [JobWatch([200.0, 14.0], [150.0, 7.0], 1, 0, [1, 2], "completed")]
    stack_c = [JobWatch([300.0], [250.0], 0, 2, [1], "failed")]
    summary = summarize([stack_a, stack_b, stack_c])
    assert summary["first_ms"] == 300.0  # median of 400, 200, 300
    assert summary["p50_ms"] == 14.0  # over all 7 latencies
    assert summary["p50_to_notify_ms"] == 7.0
    assert (summary["after_higher_seq"], summary["duplicates"]) == (1, 2)
    assert (summary["jobs"], summary["completed"], summary["messages"]) == (4, 3, 7)


async def test_duplicates_are_counted_on_the_raw_frames() -> None:
    async def twice(ws: ServerConnection) -> None:
        await ws.recv()  # the test's "go"
        for text in ('{"seq":1,}', '{"seq":1,}', '{"seq":2,}'):
            await ws.send(text)
        await ws.wait_closed()

    async with serve(twice, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        pool = ClientPool()
        await pool.grow(f"ws://127.0.0.1:{port}/", 2, concurrency=2)
        try:
            pool.arm('"seq":1,')
            for ws in pool.sockets:
                await ws.send("go")
            arrivals = await pool.collect(10.0, grace_s=0.2)
        finally:
            await pool.close()
    assert all(a is not None for a in arrivals)
    assert pool.duplicates == 2  # one repeat per connection; seq 2 is another message


async def test_the_floor_writes_each_post_to_its_client_and_the_bare_server_only_answers() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send(self, text: str) -> None:
            self.sent.append(text)

    client = Recorder()
    floor = TestClient(TestServer(build_app({"c1=": client}, bare=False)))  # type: ignore[dict-item]
    bare = TestClient(TestServer(build_app({}, bare=True)))
    async with floor, bare:
        assert (await floor.post("/@connections/c1=", data=b'{"a":1}')).status == 200
        assert (await floor.post("/prod/@connections/c1=", data=b"two")).status == 200
        gone = await floor.post("/@connections/nobody", data=b"x")
        assert gone.status == 410 and gone.headers["x-amzn-ErrorType"] == "GoneException"
        assert (await bare.post("/prod/@connections/nobody", data=b"x")).status == 200
    assert client.sent == ['{"a":1}', "two"]
    assert json.loads(client.sent[0]) == {"a": 1}
    await asyncio.sleep(0)
