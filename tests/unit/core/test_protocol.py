"""Client frames: every bad input gets its error code; replies and job messages have the documented shape."""

from __future__ import annotations

import json

import pytest

from tidings_core import protocol
from tidings_core.events import parse_job_event
from tidings_core.protocol import Ping, ProtocolError, Subscribe, Topic, Unsubscribe


def _code(body: str | bytes | None) -> str:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_frame(body)
    return caught.value.code


def test_valid_frames_parse() -> None:
    assert protocol.parse_frame('{"action":"subscribe","topic":"job:j-1"}') == Subscribe(Topic("job", "j-1"))
    assert protocol.parse_frame('{"action":"unsubscribe","topic":"user:a@b.c"}') == Unsubscribe(
        Topic("user", "a@b.c")
    )
    assert protocol.parse_frame('{"action":"ping","id":7}') == Ping(7)
    assert protocol.parse_frame('{"action":"ping"}') == Ping(None)


@pytest.mark.parametrize("body", [None, "", "nope", "{", "[1,2]", '"text"', "42", b"\xff\xfe"])
def test_not_a_json_object_is_bad_json(body: str | bytes | None) -> None:
    assert _code(body) == "bad_json"


@pytest.mark.parametrize("body", ['{"action":"dance"}', "{}", '{"action":null}', '{"action":["subscribe"]}'])
def test_unknown_action(body: str) -> None:
    assert _code(body) == "unknown_action"


@pytest.mark.parametrize(
    "topic",
    [None, 5, "", "job:", "job", "room:1", "job:a b", "user:" + "x" * 129, "job:é", "JOB:1", "job:1\n"],
)
def test_bad_topics(topic: object) -> None:
    assert _code(json.dumps({"action": "subscribe", "topic": topic})) == "bad_topic"
    assert _code(json.dumps({"action": "unsubscribe", "topic": topic})) == "bad_topic"


def test_topic_edges() -> None:
    assert protocol.parse_topic("user:" + "x" * 128) == Topic("user", "x" * 128)
    assert str(protocol.parse_topic("job:a:b@c.d-e_f")) == "job:a:b@c.d-e_f"


def test_frames_over_the_app_limit_are_too_large() -> None:
    body = json.dumps({"action": "ping", "id": "x" * 100, "pad": "y" * protocol.MAX_FRAME_BYTES})
    assert _code(body) == "too_large"


@pytest.mark.parametrize("ping_id", [True, 1.5, {"a": 1}, "z" * 129])
def test_bad_ping_ids(ping_id: object) -> None:
    assert _code(json.dumps({"action": "ping", "id": ping_id})) == "bad_json"


def test_pong_echoes_the_id() -> None:
    reply = protocol.pong(Ping("abc"))
    assert reply["type"] == "pong" and reply["id"] == "abc"
    assert reply["serverTime"] > 1_700_000_000_000


def _event(**extra: object) -> dict[str, object]:
    return {
        "version": 1, "jobId": "j1", "userId": "alice", "seq": 3, "stage": "transcoding",
        "percent": 40, "emittedAt": 1_731_332_762_000, **extra,
    }  # fmt: skip


def test_job_message_copies_optional_fields_and_types_terminal_stages() -> None:
    message = protocol.job_message(parse_job_event(_event(etaSeconds=3, warnings=["w"])), sent_at=5)
    assert message["type"] == "progress" and message["etaSeconds"] == 3 and message["warnings"] == ["w"]
    assert message["sentAt"] == 5 and "speed" not in message
    done = protocol.job_message(parse_job_event(_event(stage="completed", percent=100)))
    assert done["type"] == "completed"
    failed = protocol.job_message(
        parse_job_event(_event(stage="failed", error={"code": "x", "message": "m", "retryable": True}))
    )
    assert failed["type"] == "failed" and failed["error"] == {"code": "x", "message": "m", "retryable": True}


def test_oversize_messages_shed_bulky_fields() -> None:
    segments = [{"index": i, "percent": 50, "state": "running"} for i in range(5000)]
    event = parse_job_event(_event(segments=segments, warnings=["w" * 100] * 10))
    data = protocol.encode(protocol.job_message(event))
    assert len(data) <= protocol.MAX_MESSAGE_BYTES
    decoded = json.loads(data)
    assert decoded["truncated"] is True and "segments" not in decoded and decoded["seq"] == 3


def test_a_message_that_cannot_fit_raises() -> None:
    with pytest.raises(protocol.MessageTooLarge):
        protocol.encode({"type": "progress", "jobId": "x" * (protocol.MAX_MESSAGE_BYTES + 1)})


def test_oversize_snapshot_drops_oldest_jobs() -> None:
    jobs = [{"jobId": f"j{i}", "pad": "x" * 10_000, "segments": [1] * 5000} for i in range(30)]
    decoded = json.loads(protocol.encode(protocol.snapshot(Topic("user", "u"), jobs)))
    assert decoded["truncated"] is True
    assert 0 < len(decoded["jobs"]) < 30
    assert decoded["jobs"][0]["jobId"] == "j0"  # newest kept
    assert all("segments" not in job for job in decoded["jobs"])


def test_the_frame_bucket_allows_bursts_of_20_then_10_a_second() -> None:
    from tidings_core import ratelimit

    bucket = None
    now = 1_000_000
    for _ in range(20):
        bucket = ratelimit.take(bucket, now)
        assert bucket is not None
    assert ratelimit.take(bucket, now) is None
    assert ratelimit.take(bucket, now + 99) is None  # 0.99 of a frame refilled
    refilled = ratelimit.take(bucket, now + 100)
    assert refilled is not None and refilled.milli_tokens == 0
    full = ratelimit.take(bucket, now + 60_000)  # a long pause refills only up to the burst
    assert full is not None and full.milli_tokens == 19 * ratelimit.MILLI
    assert ratelimit.take(ratelimit.Bucket(0, now), now - 5_000) is None  # clock went back: no refill
