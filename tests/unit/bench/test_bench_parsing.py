import pytest

from bench.capacity import kb_per_connection
from bench.coldstart import ImportTimeMissing, cumulative_import_us
from bench.fanout import marker, ms_per_1000_deliveries, summarize_round, summarize_size
from bench.report import BEGIN, END, splice

REPORT = """\
import time: self [us] | cumulative | imported package
import time:       120 |        120 |   _io
import time:       300 |      90000 |     pynamodb.models
import time:        50 |         50 |     app
import time:      1000 |     250000 | app
import time:        10 |         10 | json
"""


def test_reads_the_top_level_cumulative_time_of_the_module() -> None:
    assert cumulative_import_us(REPORT, "app") == 250000
    assert cumulative_import_us(REPORT, "json") == 10


def test_a_module_missing_from_the_report_is_an_error() -> None:
    with pytest.raises(ImportTimeMissing):
        cumulative_import_us(REPORT, "notify")


def test_round_latencies_count_missing_clients() -> None:
    round_ = summarize_round(10.0, [10.010, 10.020, None, 10.040])
    assert round_.delivered == 3
    assert round_.missing == 1
    assert round_.p50_ms == pytest.approx(20.0)
    assert round_.deliveries_per_s == pytest.approx(3 / 0.040)


def test_a_round_where_nothing_arrived() -> None:
    round_ = summarize_round(1.0, [None, None])
    assert (round_.delivered, round_.missing, round_.p99_ms, round_.deliveries_per_s) == (0, 2, None, None)


def test_size_summary_pairs_repeats() -> None:
    fast = [summarize_round(0.0, [0.001 * i for i in range(1, 101)])]  # 100 in 100 ms
    slow = [summarize_round(0.0, [0.01 * i for i in range(1, 101)])]  # 100 in 1 s
    summary = summarize_size(fast, slow, fast, slow)
    assert summary["vs_sequential"] == pytest.approx(10.0)
    assert summary["vs_http_floor"] == pytest.approx(10.0)
    assert summary["vs_raw_broadcast"] == pytest.approx(1.0)
    assert summary["missing"] == 0
    assert summary["sequential"]["deliveries_per_s"] == pytest.approx(100.0)


def test_marker_only_matches_its_own_seq() -> None:
    message = '{"type":"progress","jobId":"j","userId":"u","seq":12,"stage":"transcoding"}'
    assert marker(12) in message
    assert marker(1) not in message


def test_lambda_time_per_thousand_deliveries() -> None:
    assert ms_per_1000_deliveries([200.0, 300.0], 1000) == 500.0
    with pytest.raises(ValueError):
        ms_per_1000_deliveries([1.0], 0)


def test_memory_per_connection() -> None:
    assert kb_per_connection(1000, 21000, 1000) == 20.0
    with pytest.raises(ValueError):
        kb_per_connection(1, 2, 0)


def test_splice_replaces_only_the_generated_block() -> None:
    document = f"# Title\nprose\n\n{BEGIN}\nold table\n{END}\n\nafter\n"
    updated = splice(document, f"{BEGIN}\nnew table\n{END}")
    assert "new table" in updated and "old table" not in updated
    assert updated.startswith("# Title\nprose\n") and updated.endswith("\n\nafter\n")


def test_splice_appends_when_there_are_no_markers() -> None:
    assert splice("# Title\n", f"{BEGIN}\nt\n{END}").endswith(f"{BEGIN}\nt\n{END}\n")


def test_cold_start_events_are_what_the_handlers_accept() -> None:
    from bench.coldstart import event_for
    from tidings_core.events import parse_job_event

    first, second = (parse_job_event(event_for("notify", n)["detail"]) for n in (0, 1))
    assert second.seq > first.seq  # each cold notify is new, not dropped as a duplicate
    connect, disconnect = event_for("connect", 3), event_for("disconnect", 3)
    assert connect["requestContext"]["authorizer"]["userId"]
    assert connect["requestContext"]["connectionId"] == disconnect["requestContext"]["connectionId"]
    assert disconnect["requestContext"]["eventType"] == "DISCONNECT"


def test_the_tracing_backends_section_compares_no_tracer_xray_and_opentelemetry() -> None:
    from bench.report import render

    probe = {"import_cpu_ms": 300.0, "first_invocation_cpu_ms": 5.0}
    backends = {"connect": {"none": probe, "xray-sdk": probe | {"import_cpu_ms": 340.0}}}
    backends["connect"]["opentelemetry"] = {"import_cpu_ms": 410.0, "first_invocation_cpu_ms": 21.5}
    backends["notify"] = {
        backend: {"import_cpu_ms": 500.0} for backend in ("none", "xray-sdk", "opentelemetry")
    }
    machine = {"cpus": 2, "cpu_model": "test", "memory_gb": 4, "python": "3.12", "platform": "linux"}
    run = {"date": "today", "command": "make bench", "mode": "quick", "repeats": 3, "machine": machine}
    text = render({**run, "tracing_backends": {"python": "3.11", "repeats": 5, "functions": backends}})
    assert "| connect | 300 | 340 | 410 | 5.0 | 5.0 | 21.5 |" in text
    assert "| notify | 500 | 500 | 500 | — | — | — |" in text
    assert "medians of 5 rotations" in text
