"""The console's record store: bounded memory, filters and labels, log parsing, redaction."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from console_records import (  # tests/console_records.py
    FakeClock,
    invocation,
    powertools_line,
    ws_event,
)

from tidings.local.console import (
    REDACTED,
    ConsoleStore,
    InvocationFilter,
    Label,
    parse_log_lines,
    redact,
    strings_under,
)

TOKEN = "eyJhbGciOiJIUS256In0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


def test_the_store_keeps_only_the_newest_records_and_lists_newest_first() -> None:
    store = ConsoleStore(capacity=3)
    for index in range(5):
        store.record_invocation(invocation(request_id=f"r{index}"), "F", "src", {})
    listed = store.invocations()
    assert [record.request_id for record in listed] == ["r4", "r3", "r2"]
    assert [record.seq for record in listed] == [5, 4, 3]
    assert store.get(1) is None
    assert store.get(4) is not None and store.get(4).request_id == "r3"  # type: ignore[union-attr]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ConsoleStore(capacity=0)


def test_start_time_is_the_end_time_minus_the_duration() -> None:
    clock = FakeClock(1000.0)
    store = ConsoleStore(clock=clock)
    record = store.record_invocation(invocation(duration_ms=250.0), "F", "src", {})
    assert record.started_at == pytest.approx(999.75)
    assert record.ended_at == pytest.approx(1000.0)


def order_ids(values: Any) -> set[str]:
    return strings_under(values, frozenset({"orderId"}))


ORDERS = Label("order", "orders", order_ids)


def test_filters_by_function_connection_user_label_and_outcome() -> None:
    store = ConsoleStore(labels=[ORDERS])
    store.record_invocation(
        invocation("ConnectFunction"), "ConnectFunction", "$connect", ws_event("c1", "alice")
    )
    store.record_invocation(
        invocation(), "SubscribeFunction", "send", ws_event("c2", "bob", {"action": "buy", "orderId": "o9"})
    )
    store.record_invocation(
        invocation("NotifyFunction", ok=False), "NotifyFunction", "rule", {"detail": {"userId": "alice"}}
    )
    store.record_invocation(
        invocation("Worker", logs=powertools_line("packed", orderId="o7")), "Worker", "states", {}
    )

    def functions(**wanted: Any) -> list[str]:
        return [record.function_id for record in store.invocations(InvocationFilter(**wanted))]

    assert functions(function="ConnectFunction") == ["ConnectFunction"]
    assert functions(connection="c2") == ["SubscribeFunction"]
    assert functions(user="alice") == ["NotifyFunction", "ConnectFunction"]
    assert functions(labels=(("order", "o7"),)) == ["Worker"]  # from a log record's field
    assert functions(labels=(("order", "o9"),)) == ["SubscribeFunction"]  # from the frame's JSON body
    assert functions(outcome="error") == ["NotifyFunction"]
    assert functions(outcome="ok", user="alice") == ["ConnectFunction"]
    assert functions(after=3) == ["Worker"]
    assert functions(labels=(("order", "nope"),)) == []
    [summary] = [r.summary(store.labels) for r in store.invocations(InvocationFilter(function="Worker"))]
    assert summary["orders"] == ["o7"]


def test_an_app_without_labels_has_none_in_its_summaries() -> None:
    store = ConsoleStore()
    record = store.record_invocation(invocation(), "F", "send", {"orderId": "o1"})
    assert record.labels == {} and "orders" not in record.summary()


def test_filter_from_query_refuses_bad_values() -> None:
    assert InvocationFilter.from_query({"order": " o1 ", "after": "4"}, ["order"]) == InvocationFilter(
        after=4, labels=(("order", "o1"),)
    )
    assert InvocationFilter.from_query({"order": "o1"}) == InvocationFilter()  # not a label of this app
    with pytest.raises(ValueError, match="outcome"):
        InvocationFilter.from_query({"outcome": "maybe"})
    with pytest.raises(ValueError, match="after"):
        InvocationFilter.from_query({"after": "-1"})


def test_powertools_logs_emf_metrics_and_prints_are_parsed() -> None:
    emf = {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Tidings",
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": "Gone", "Unit": "Count"}],
                }
            ],
        },
        "service": "tidings",
        "Gone": [1.0],
    }
    logs = "\n".join(
        [
            powertools_line("post failed", "WARNING", connection_id="c1", code=500),
            json.dumps(emf),
            "plain print",
            "",
        ]
    )
    lines = parse_log_lines(logs)
    assert [line.kind for line in lines] == ["log", "metrics", "text"]
    assert lines[0].level == "WARNING" and lines[0].message == "post failed"
    assert lines[0].fields == {"connection_id": "c1", "code": 500}
    assert lines[1].message == "Gone=1.0" and lines[1].fields == {"service": "tidings"}
    assert lines[2].message == "plain print" and lines[2].level is None


def test_a_json_line_that_is_not_an_object_stays_text() -> None:
    assert [line.kind for line in parse_log_lines('{not json\n["a"]')] == ["text", "text"]


def test_tokens_are_redacted_from_events_logs_and_results() -> None:
    store = ConsoleStore()
    event = {
        "headers": {"Sec-WebSocket-Protocol": f"tidings.v1, {TOKEN}"},
        "queryStringParameters": {"token": TOKEN},
        "multiValueHeaders": {"Authorization": [f"Bearer {TOKEN}"]},
    }
    record = store.record_invocation(
        invocation(result={"echo": TOKEN}, logs=powertools_line(f"got {TOKEN}")), "F", "$connect", event
    )
    stored = json.dumps(record.detail())
    assert TOKEN not in stored
    assert record.event["headers"]["Sec-WebSocket-Protocol"] == f"tidings.v1, {REDACTED}"
    assert redact(["x", 1, None]) == ["x", 1, None]


def test_errors_keep_their_traceback() -> None:
    store = ConsoleStore()
    record = store.record_invocation(invocation(ok=False), "F", "src", {})
    detail = record.detail()
    assert detail["ok"] is False and detail["errorType"] == "ValueError"
    assert "ValueError: boom" in detail["traceback"]


def test_last_activity_is_the_latest_gateway_event_per_connection() -> None:
    clock = FakeClock(10.0)
    store = ConsoleStore(clock=clock)
    store.record_gateway_event("connect", {"connectionId": "c1", "principalId": "alice"})
    clock.now = 12.0
    store.record_gateway_event("post", {"connectionId": "c1", "bytes": 10})
    store.record_gateway_event("connect", {"connectionId": "c2", "principalId": "bob"})
    assert store.last_activity() == {"c1": 12.0, "c2": 12.0}
    assert [event.kind for event in store.gateway_events("post")] == ["post"]


async def test_subscribers_get_invocations_and_connection_changes_but_not_each_post() -> None:
    store = ConsoleStore()
    queue = store.subscribe()
    store.record_invocation(invocation(), "F", "src", {})
    store.record_gateway_event("post", {"connectionId": "c1", "bytes": 1})
    store.record_gateway_event("disconnect", {"connectionId": "c1", "code": 1000})
    first, second = queue.get_nowait(), queue.get_nowait()
    assert first is not None and first["type"] == "invocation" and first["invocation"]["function"] == "F"
    assert second is not None and second["type"] == "gateway" and second["event"]["kind"] == "disconnect"
    assert queue.empty()
    store.close_streams()
    assert queue.get_nowait() is None


async def test_a_subscriber_that_falls_behind_is_cut_off_not_blocking_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tidings.local.console.STREAM_QUEUE_LIMIT", 2)
    store = ConsoleStore()
    slow = store.subscribe()
    for _ in range(3):
        store.record_invocation(invocation(), "F", "src", {})
    drained = []
    while not slow.empty():
        drained.append(slow.get_nowait())
    assert drained[-1] is None  # told to reconnect and reload
    store.record_invocation(invocation(), "F", "src", {})
    assert slow.empty()  # no longer subscribed
    await asyncio.sleep(0)


def test_a_handler_that_answers_500_is_an_error_in_the_console_too() -> None:
    store = ConsoleStore()
    caught = invocation(result={"statusCode": 500, "body": "internal"}, logs="caught: refused\n")
    record = store.record_invocation(caught, "F", "send", {})
    assert record.ok is False
    assert [r.seq for r in store.invocations(InvocationFilter(outcome="error"))] == [record.seq]
    assert [line.message for line in record.logs] == ["caught: refused"]
