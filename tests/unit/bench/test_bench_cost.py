import pytest

from bench.cost import (
    Prices,
    Workload,
    cost_report,
    hosted_per_million,
    per_event_dynamodb,
    tidings_per_million,
)


def workload(**changes: object) -> Workload:
    values: dict[str, object] = {
        "lambda_ms_per_1000_deliveries": 1000.0,
        "fanout": 1000,
        "lambda_memory_mb": 1024,
    }
    values.update(changes)
    return Workload(**values)  # type: ignore[arg-type]


def test_lambda_compute_is_seconds_times_gigabytes_times_price() -> None:
    # 1000 ms per 1000 deliveries -> 1000 s per million, at 1 GB
    lines = tidings_per_million(workload())
    assert lines["lambda_compute"] == pytest.approx(1000 * 1.0 * 0.0000133334)


def test_per_event_costs_are_shared_by_the_fanout() -> None:
    wide, narrow = tidings_per_million(workload(fanout=1000)), tidings_per_million(workload(fanout=1))
    assert wide["eventbridge"] == pytest.approx(1.00 / 1000)
    assert narrow["eventbridge"] == pytest.approx(1.00)
    assert narrow["lambda_requests"] == pytest.approx(0.20)
    assert wide["api_gateway_messages"] == narrow["api_gateway_messages"] == 1.00


def test_total_is_the_sum_of_the_lines() -> None:
    lines = tidings_per_million(workload())
    assert lines["total"] == pytest.approx(sum(v for k, v in lines.items() if k != "total"))


def test_dynamodb_writes_follow_the_pages() -> None:
    writes, reads = per_event_dynamodb(workload(fanout=250))
    assert writes == 1 + 1 + 3  # claim, shard offer, three page checkpoints (the third ends the sweep)
    assert reads == pytest.approx(0.5 * 13 + 0.5)  # 250 x 200 B = 13 units of 4 KB, plus an empty topic


def test_a_message_over_32_kb_is_billed_as_two() -> None:
    assert tidings_per_million(workload(message_bytes=40_000))["api_gateway_messages"] == 2.0


def test_hosted_prices() -> None:
    assert hosted_per_million(400) == {"ably": 2.50, "appsync_events": 1.00, "pusher": None}
    assert hosted_per_million(6000)["appsync_events"] == 2.00


def test_bad_workloads_are_refused() -> None:
    with pytest.raises(ValueError):
        tidings_per_million(workload(fanout=0))
    with pytest.raises(ValueError):
        tidings_per_million(workload(lambda_ms_per_1000_deliveries=-1.0))


def test_report_states_its_assumptions() -> None:
    report = cost_report(workload(), Prices(ably_per_million_messages=3.0))
    assert report["assumptions"]["fanout"] == 1000
    assert report["assumptions"]["prices_usd"]["ably_per_million_messages"] == 3.0
    assert report["hosted_usd_per_million"]["ably"] == 3.0
