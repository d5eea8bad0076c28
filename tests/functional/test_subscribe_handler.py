"""subscribe / unsubscribe / ping / $default: replies, ownership, ordering and every error code."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tidings_core import models, registry
from tidings_core.config import Settings
from tidings_core.models import Subscription

from .conftest import CONNECTED_AT, FakeContext, FakeManagement, bus_event, ws_event

CONN = "BFaT_fALIAMCKug="


def _send(handlers: dict[str, ModuleType], body: Any, user_id: str = "alice", conn: str = CONN) -> None:
    result = handlers["subscribe"].handler(ws_event("message", conn, user_id, body), FakeContext())
    assert result == {"statusCode": 200}


def test_subscribe_to_own_job_replies_subscribed_then_snapshot_with_latest_state(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    registry.create_job("job-1", "alice")
    handlers["notify"].handler(bus_event(seq=4, percent=30.0), FakeContext())
    _send(handlers, {"action": "subscribe", "topic": "job:job-1"})
    subscribed, snapshot = management.to(CONN)
    assert subscribed == {"type": "subscribed", "topic": "job:job-1"}
    assert snapshot["type"] == "snapshot" and snapshot["topic"] == "job:job-1"
    [job] = snapshot["jobs"]
    assert (job["jobId"], job["seq"], job["percent"], job["type"]) == ("job-1", 4, 30.0, "progress")
    assert Subscription.get("job:job-1", CONN).user_id == "alice"


def test_snapshot_of_a_new_job_shows_it_queued(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    registry.create_job("job-new", "alice")
    _send(handlers, {"action": "subscribe", "topic": "job:job-new"})
    [job] = management.to(CONN)[1]["jobs"]
    assert (job["stage"], job["seq"], job["percent"]) == ("queued", 0, 0.0)


def test_user_snapshot_lists_own_jobs_newest_first(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    for n in range(3):
        registry.create_job(f"job-{n}", "alice")
        handlers["notify"].handler(bus_event(f"e{n}", jobId=f"job-{n}", seq=1), FakeContext())
    registry.create_job("bobs", "bob")
    _send(handlers, {"action": "subscribe", "topic": "user:alice"})
    snapshot = management.to(CONN)[1]
    assert [job["jobId"] for job in snapshot["jobs"]] == ["job-2", "job-1", "job-0"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "bad_json"),
        ("[1]", "bad_json"),
        ({"action": "dance"}, "unknown_action"),
        ({"action": "subscribe"}, "bad_topic"),
        ({"action": "subscribe", "topic": "room:1"}, "bad_topic"),
        ({"action": "subscribe", "topic": "job:bobs-job"}, "not_found"),
        ({"action": "subscribe", "topic": "user:bob"}, "forbidden"),
        ({"action": "subscribe", "topic": "job:missing"}, "not_found"),
        ({"action": "ping", "pad": "x" * 5000}, "too_large"),
    ],
)
def test_every_bad_input_gets_its_error_code_and_subscribes_nothing(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement, body: Any, code: str
) -> None:
    registry.create_job("bobs-job", "bob")
    _send(handlers, body)
    [reply] = management.to(CONN)
    assert reply["type"] == "error" and reply["code"] == code and reply["message"]
    assert list(Subscription.by_connection.query(CONN)) == []
    _send(handlers, {"action": "ping", "id": 1})  # the connection stays usable
    assert management.to(CONN)[-1]["type"] == "pong"


def test_a_forbidden_subscriber_receives_nothing_of_that_job(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    registry.create_job("bobs-job", "bob")
    _send(handlers, {"action": "subscribe", "topic": "job:bobs-job"}, user_id="alice")
    handlers["notify"].handler(bus_event(jobId="bobs-job", userId="bob", seq=1), FakeContext())
    assert [m["type"] for m in management.to(CONN)] == ["error"]


def test_unsubscribe_stops_delivery(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    registry.create_job("job-1", "alice")
    _send(handlers, {"action": "subscribe", "topic": "job:job-1"})
    _send(handlers, {"action": "unsubscribe", "topic": "job:job-1"})
    assert management.to(CONN)[-1] == {"type": "unsubscribed", "topic": "job:job-1"}
    handlers["notify"].handler(bus_event(seq=1), FakeContext())
    assert [m["type"] for m in management.to(CONN)] == ["subscribed", "snapshot", "unsubscribed"]


def test_ping_echoes_its_id(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    _send(handlers, {"action": "ping", "id": "abc"})
    [pong] = management.to(CONN)
    assert pong["type"] == "pong" and pong["id"] == "abc" and isinstance(pong["serverTime"], int)


def test_a_storage_failure_becomes_an_internal_error_reply(
    aws: Settings,
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("dynamodb unavailable")

    monkeypatch.setattr(registry, "subscribe", broken)
    _send(handlers, {"action": "subscribe", "topic": "user:alice"})
    [reply] = management.to(CONN)
    assert reply["code"] == "internal" and "dynamodb" not in json.dumps(reply)


def test_the_sample_message_event_subscribes(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    registry.create_job("job-1", "alice")
    registry.register_connection(CONN, "alice", CONNECTED_AT)
    handlers["subscribe"].handler(ws_event("message", CONN), FakeContext())
    assert [m["type"] for m in management.to(CONN)] == ["subscribed", "snapshot"]


def test_a_connection_gone_while_answering_is_forgotten(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    from .conftest import gone_bare

    registry.register_connection(CONN, "alice", CONNECTED_AT)
    registry.register_connection("other", "alice", CONNECTED_AT)
    registry.subscribe("user:alice", CONN, "alice", CONNECTED_AT)
    registry.subscribe("user:alice", "other", "alice", CONNECTED_AT)
    management.script[CONN] = [gone_bare()]
    _send(handlers, {"action": "ping"})
    assert list(Subscription.by_connection.query(CONN)) == []
    assert [s.topic for s in Subscription.by_connection.query("other")] == ["user:alice"]


def test_state_is_read_only_after_the_subscription_is_written(
    aws: Settings,
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.create_job("job-1", "alice")
    real_get_job = registry.get_job
    seen: list[bool] = []

    def recording_get_job(job_id: str) -> Any:
        seen.append(Subscription.count("job:job-1", Subscription.connection_id == CONN) == 1)
        return real_get_job(job_id)

    monkeypatch.setattr(registry, "get_job", recording_get_job)
    _send(handlers, {"action": "subscribe", "topic": "job:job-1"})
    assert seen == [False, True]  # ownership check before the write, snapshot read after it


def test_user_snapshot_without_jobs_is_empty(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    _send(handlers, {"action": "subscribe", "topic": "user:alice"})
    assert management.to(CONN)[1] == {"type": "snapshot", "topic": "user:alice", "jobs": []}


def test_another_users_job_and_a_missing_job_get_the_same_answer(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    """Issue 14, item 15: no existence oracle (GET /jobs/{id} hides it the same way)."""
    registry.create_job("job-x", "bob")
    _send(handlers, {"action": "subscribe", "topic": "job:job-x"})
    others_reply = management.to(CONN)[-1]
    _send(handlers, {"action": "subscribe", "topic": "job:job-y"})
    missing_reply = management.to(CONN)[-1]
    assert others_reply == {**missing_reply, "message": missing_reply["message"].replace("job-y", "job-x")}


def test_frames_beyond_the_rate_limit_get_rate_limited_and_the_connection_stays(
    aws: Settings,
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 14, item 13: 10 frames/s with bursts of 20 per connection, kept in its DynamoDB row."""
    clock = [CONNECTED_AT + 1_000]
    monkeypatch.setattr(registry, "now_ms", lambda: clock[0])
    registry.register_connection(CONN, "alice", CONNECTED_AT)
    for marker in range(20):
        _send(handlers, {"action": "ping", "id": marker})
    _send(handlers, {"action": "ping", "id": 20})
    replies = management.to(CONN)
    assert [r["type"] for r in replies[:20]] == ["pong"] * 20
    assert replies[20]["type"] == "error" and replies[20]["code"] == "rate_limited"
    assert "10 frames a second" in replies[20]["message"]
    # the count is in the connection's row, so every function instance shares it
    row = models.Connection.get(CONN, consistent_read=True)
    assert row.bucket_tokens is not None and int(row.bucket_tokens) < 1000
    clock[0] += 100  # a tenth of a second refills one frame
    _send(handlers, {"action": "ping", "id": 21})
    _send(handlers, {"action": "ping", "id": 22})
    assert [r.get("code") or r["type"] for r in management.to(CONN)[21:]] == ["pong", "rate_limited"]
    other = "other-connection"
    registry.register_connection(other, "alice", CONNECTED_AT)
    _send(handlers, {"action": "ping", "id": 1}, conn=other)  # per connection
    assert management.to(other)[-1]["type"] == "pong"
