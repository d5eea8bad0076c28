"""Tidings' console views: the job label, a connection's topics from its frames, following a job."""

from __future__ import annotations

import pytest
from console_records import (  # tests/console_records.py
    FakeClock,
    bus_event,
    invocation,
    powertools_line,
    ws_event,
)

from tidings.devtools.console_views import JOB_LABEL, TidingsConsoleView, follow_job, topics_from_frames
from tidings.local.console import ConsoleStore, InvocationFilter


def test_the_job_label_comes_from_bus_details_log_fields_and_job_topics() -> None:
    store = ConsoleStore(labels=TidingsConsoleView.labels)
    store.record_invocation(
        invocation("ConnectFunction"), "ConnectFunction", "$connect", ws_event("c1", "alice")
    )
    store.record_invocation(
        invocation(),
        "SubscribeFunction",
        "subscribe",
        ws_event("c2", "bob", {"action": "subscribe", "topic": "job:j9"}),
    )
    store.record_invocation(
        invocation("NotifyFunction", ok=False),
        "NotifyFunction",
        "EventBridge rule R",
        bus_event("j7", "alice", 1, 1),
    )
    store.record_invocation(
        invocation("Worker", logs=powertools_line("segment done", job_id="j7")), "Worker", "states", {}
    )

    def functions(job: str) -> list[str]:
        wanted = InvocationFilter(labels=((JOB_LABEL, job),))
        return [record.function_id for record in store.invocations(wanted)]

    assert functions(job="j7") == ["Worker", "NotifyFunction"]  # from the bus detail and from a log field
    assert functions(job="j9") == ["SubscribeFunction"]  # from the topic in the frame's JSON body
    assert functions(job="nope") == []


def test_topics_follow_successful_subscribe_and_unsubscribe_frames() -> None:
    store = ConsoleStore()
    for action, topic in [("subscribe", "job:a"), ("subscribe", "user:alice"), ("unsubscribe", "job:a")]:
        store.record_invocation(
            invocation(), "S", action, ws_event("c1", "alice", {"action": action, "topic": topic})
        )
    store.record_invocation(
        invocation(ok=False),
        "S",
        "subscribe",
        ws_event("c1", "alice", {"action": "subscribe", "topic": "job:b"}),
    )
    store.record_invocation(
        invocation(), "S", "subscribe", ws_event("c2", "bob", {"action": "subscribe", "topic": "x"})
    )
    assert topics_from_frames(store, "c1") == ["user:alice"]


def test_follow_job_links_publisher_bus_notify_and_posts_with_latencies() -> None:
    clock = FakeClock(100.0)
    store = ConsoleStore(clock=clock, labels=TidingsConsoleView.labels)
    # The worker runs from 99.5 to 100.0 and emits at 99.9
    store.record_invocation(
        invocation("SegmentFunction", logs=powertools_line("progress", job_id="j1"), duration_ms=500.0),
        "SegmentFunction",
        "states",
        {"jobId": "j1"},
    )
    # A client subscribing to the job at the same moment is not its publisher
    store.record_invocation(
        invocation(duration_ms=500.0),
        "SubscribeFunction",
        "subscribe",
        ws_event("c1", "alice", {"action": "subscribe", "topic": "job:j1"}),
    )
    clock.now = 100.05
    store.record_gateway_event("post", {"connectionId": "before-notify", "bytes": 5})
    clock.now = 100.10
    store.record_gateway_event("post", {"connectionId": "c1", "bytes": 50})
    clock.now = 100.15
    store.record_gateway_event("post", {"connectionId": "c2", "bytes": 50})
    clock.now = 100.2  # notify ran from 100.08 to 100.2
    store.record_invocation(
        invocation("NotifyFunction", result={"outcome": "new", "delivered": 2, "gone": 0}, duration_ms=120.0),
        "NotifyFunction",
        "EventBridge rule R",
        bus_event("j1", "alice", 3, 99_900),
    )
    store.record_invocation(invocation("Other"), "Other", "x", bus_event("other-job", "alice", 1, 99_900))

    chain = follow_job(store, "j1")
    assert [p["function"] for p in chain["publishers"]] == ["SegmentFunction", "SubscribeFunction"]
    [hop] = chain["events"]
    assert hop["seq"] == 3 and hop["outcome"] == "new" and hop["delivered"] == 2
    assert hop["publisher"]["function"] == "SegmentFunction"
    assert hop["bus"]["eventId"] == "event-3" and hop["bus"]["rule"] == "EventBridge rule R"
    assert hop["publishToNotifyMs"] == pytest.approx(180.0)
    assert [post["connectionId"] for post in hop["posts"]] == ["c1", "c2"]
    assert [post["publishToReceiveMs"] for post in hop["posts"]] == [
        pytest.approx(200.0),
        pytest.approx(250.0),
    ]
    assert hop["posts"][0]["afterNotifyStartMs"] == pytest.approx(20.0)


def test_follow_job_without_a_local_publisher() -> None:
    store = ConsoleStore(clock=FakeClock(50.0), labels=TidingsConsoleView.labels)
    store.record_invocation(
        invocation("NotifyFunction"), "NotifyFunction", "rule", bus_event("j2", "u", 1, 1_000)
    )
    [hop] = follow_job(store, "j2")["events"]
    assert hop["publisher"] is None and hop["posts"] == []
    assert follow_job(store, "unknown") == {"jobId": "unknown", "publishers": [], "events": []}
