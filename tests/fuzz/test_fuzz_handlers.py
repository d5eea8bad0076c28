"""Property-based fuzzing of the handlers under moto: client frames, topics, tokens, bus events.

Each input gets a documented answer (docs/protocol.md, docs/events.md) or is ignored, and never
`internal` (which means the server failed, not the input). After the fuzz the same handlers
still serve a normal client. Fixtures come from tests/functional (through tests/fuzz/conftest.py);
state accumulates across examples on purpose: junk must not poison later requests.
"""

from __future__ import annotations

import base64
import copy
import json
import string
import time
from types import ModuleType
from typing import Any

import jwt
import pytest
from functional.conftest import (
    CONNECTED_AT,
    SECRET,
    FakeContext,
    FakeManagement,
    bus_event,
    sample,
    token,
    ws_event,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings_core import ratelimit, registry
from tidings_core.config import Settings

CONN = "FuzzConn0000001="
DOCUMENTED_CODES = {"bad_json", "unknown_action", "bad_topic", "forbidden", "not_found", "too_large"}


@pytest.fixture(autouse=True)
def no_frame_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis sends hundreds of frames a second on one connection: the rate limit (tested in
    tests/functional/test_subscribe_handler.py) would answer most of them."""
    monkeypatch.setattr(ratelimit, "BURST", 10**6)


REPLY_TYPES = {"subscribed", "snapshot", "unsubscribed", "pong", "error"}
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ID_CHARS = string.ascii_letters + string.digits + "_.:@-"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
topics = st.one_of(
    st.text(max_size=150),
    st.builds(
        lambda p, s: p + s, st.sampled_from(["job:", "user:", "JOB:", "job", ":"]), st.text(max_size=140)
    ),
    st.builds(
        lambda p, s: p + s, st.sampled_from(["job:", "user:"]), st.text(ID_CHARS, min_size=0, max_size=140)
    ),
    st.sampled_from(["user:alice", "user:bob", "job:alices-job", "job:bobs-job", "job:missing"]),
)
frames = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"action": st.sampled_from(["subscribe", "unsubscribe", "ping", "Subscribe", "", "$default"])},
        optional={"topic": topics | json_values, "id": json_values},
    ).map(json.dumps),
    st.integers(4000, 40_000).map(lambda n: json.dumps({"action": "ping", "id": "x" * n})),
)


def send(handlers: dict[str, ModuleType], body: str, *, base64_body: bool = False) -> None:
    event = ws_event("message", CONN, "alice", body={"action": "x"})
    event["requestContext"]["routeKey"] = "$default"
    event["body"] = base64.b64encode(body.encode("utf-8", "surrogatepass")).decode() if base64_body else body
    event["isBase64Encoded"] = base64_body
    assert handlers["subscribe"].handler(event, FakeContext()) == {"statusCode": 200}


def check_replies(replies: list[dict[str, Any]]) -> None:
    assert replies, "every frame is answered"
    for reply in replies:
        assert reply["type"] in REPLY_TYPES, reply
        if reply["type"] == "error":
            assert reply["code"] in DOCUMENTED_CODES, reply  # never `internal` for bad input
        if reply["type"] in ("subscribed", "snapshot"):
            assert reply["topic"] in ("user:alice", "job:alices-job"), reply  # only alice's own


def own_jobs() -> None:
    """alice's and bob's jobs, once per test (examples of one test share its tables)."""
    for job_id, owner in (("alices-job", "alice"), ("bobs-job", "bob")):
        if registry.get_job(job_id) is None:
            registry.create_job(job_id, owner)


def followed_job() -> None:
    """The sample event's job-1, owned by alice and followed by CONN, once per test."""
    if registry.get_job("job-1") is None:
        registry.create_job("job-1", "alice")
        registry.register_connection(CONN, "alice", CONNECTED_AT)
        registry.subscribe("job:job-1", CONN, "alice", CONNECTED_AT)


def still_serves(handlers: dict[str, ModuleType], management: FakeManagement) -> None:
    management.posted.clear()
    send(handlers, json.dumps({"action": "subscribe", "topic": "job:alices-job"}))
    assert [m["type"] for m in management.to(CONN)] == ["subscribed", "snapshot"]


@FUZZ
@given(frame=frames, base64_body=st.booleans())
def test_any_client_frame_gets_a_documented_reply(
    aws: Settings,
    handlers: dict[str, ModuleType],
    management: FakeManagement,
    frame: str,
    base64_body: bool,
) -> None:
    own_jobs()
    management.posted.clear()
    send(handlers, frame, base64_body=base64_body)
    check_replies(management.to(CONN))
    if len(frame.encode("utf-8", "surrogatepass")) > 4096:
        assert [r.get("code") for r in management.to(CONN)] == ["too_large"]


@FUZZ
@given(topic=topics, action=st.sampled_from(["subscribe", "unsubscribe"]))
def test_any_topic_is_subscribed_only_when_it_is_the_callers(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement, topic: str, action: str
) -> None:
    own_jobs()
    management.posted.clear()
    send(handlers, json.dumps({"action": action, "topic": topic}))
    replies = management.to(CONN)
    check_replies(replies)
    if action == "subscribe" and replies[0]["type"] == "subscribed":
        assert topic in ("user:alice", "job:alices-job")
    if topic == "user:bob" and action == "subscribe":
        assert replies == [{"type": "error", "code": "forbidden", "message": replies[0]["message"]}]
    if topic == "job:bobs-job" and action == "subscribe":  # as absent as a missing job
        assert replies == [{"type": "error", "code": "not_found", "message": "no job bobs-job"}]


def test_after_the_frame_fuzz_a_normal_client_is_served(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    own_jobs()
    for junk in ["", "\x00" * 5000, "[]", '{"action":"subscribe","topic":{"$ne":1}}', "🙂" * 2000]:
        send(handlers, junk)
    still_serves(handlers, management)


def authorizer_event(query_token: str | None = None, protocol_header: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(sample("authorizer_request"))
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Sec-WebSocket-Protocol", None)
    if protocol_header is not None:
        event["headers"]["Sec-WebSocket-Protocol"] = protocol_header
        event["multiValueHeaders"]["Sec-WebSocket-Protocol"] = [protocol_header]
    query = {} if query_token is None else {"token": query_token}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def claims_strategy() -> st.SearchStrategy[dict[str, Any]]:
    now = int(time.time())
    return st.fixed_dictionaries(
        {},
        optional={
            "sub": st.one_of(st.text(max_size=200), st.integers(), st.just("alice")),
            "aud": st.one_of(st.just("tidings"), st.text(max_size=20), st.lists(st.text(max_size=5))),
            "iat": st.one_of(st.integers(now - 10**6, now + 10**6), st.text(max_size=5)),
            "exp": st.one_of(st.integers(0, now - 1), st.integers(now + 1, now + 10**6), st.text(max_size=5)),
        },
    )


def forged(claims: dict[str, Any], kind: str) -> str:
    if kind == "none":
        return jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    if kind == "other-key":
        return jwt.encode(claims, "another-key-of-the-same-length-0123456789", algorithm="HS256")
    if kind == "HS384":
        return jwt.encode(claims, SECRET, algorithm="HS384")
    # right key and algorithm, then one character of the signature changed
    valid = jwt.encode(claims, SECRET, algorithm="HS256")
    head, body, signature = valid.split(".")
    return ".".join([head, body, ("A" if signature[0] != "A" else "B") + signature[1:]])


def authorize(handlers: dict[str, ModuleType], event: dict[str, Any]) -> str:
    """The decision API Gateway takes: 401 (raised "Unauthorized"), 403 (Deny) or 101 (Allow)."""
    try:
        result = handlers["authorize"].handler(event, FakeContext())
    except Exception as exc:
        assert str(exc) == "Unauthorized", repr(exc)  # anything else would be a 500
        return "401"
    [statement] = result["policyDocument"]["Statement"]
    return "101" if statement["Effect"] == "Allow" else "403"


@FUZZ
@given(
    raw=st.one_of(
        st.text(max_size=300),
        st.text(ID_CHARS + "=", max_size=80).map(lambda t: f"{t}.{t}.{t}"),
        st.lists(st.text(max_size=20), min_size=3, max_size=3).map(".".join),
    ),
    via_protocol=st.booleans(),
)
def test_random_tokens_never_connect(
    aws: Settings, handlers: dict[str, ModuleType], raw: str, via_protocol: bool
) -> None:
    event = authorizer_event(protocol_header=f"tidings.v1, {raw}") if via_protocol else authorizer_event(raw)
    assert authorize(handlers, event) in ("401", "403")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS384 with the HS256 key
@FUZZ
@given(claims=claims_strategy(), kind=st.sampled_from(["none", "other-key", "HS384", "tampered"]))
def test_forged_tokens_never_connect(
    aws: Settings, handlers: dict[str, ModuleType], claims: dict[str, Any], kind: str
) -> None:
    assert authorize(handlers, authorizer_event(forged(claims, kind))) == "403"


def test_a_genuine_token_still_connects_after_the_token_fuzz(
    aws: Settings, handlers: dict[str, ModuleType]
) -> None:
    assert authorize(handlers, authorizer_event(token("alice"))) == "101"


details = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from(
            [
                "version",
                "jobId",
                "userId",
                "seq",
                "stage",
                "percent",
                "emittedAt",
                "segments",
                "error",
                "extra",
            ]
        ),
        json_values,
        max_size=10,
    ),
    # a valid detail with one field replaced by junk
    st.tuples(
        st.sampled_from(["version", "jobId", "userId", "seq", "stage", "percent", "emittedAt", "segments"]),
        json_values,
    ).map(lambda change: {**sample("eventbridge_job_progress")["detail"], change[0]: change[1]}),
)


@FUZZ
@given(detail=details)
def test_any_bus_event_detail_is_delivered_valid_or_dropped_without_raising(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement, detail: Any
) -> None:
    followed_job()
    management.posted.clear()
    event = bus_event("fuzz")
    event["detail"] = detail
    handlers["notify"].handler(event, FakeContext())  # returning is the contract: no retry of poison
    for _, message in management.posted:
        # whatever got through is a well-formed job message about alice's job
        assert (message["jobId"], message["userId"]) == ("job-1", "alice")
        assert isinstance(message["seq"], int) and message["type"] in ("progress", "completed", "failed")


def test_a_valid_event_is_still_delivered_after_the_event_fuzz(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement
) -> None:
    followed_job()
    junk_details: list[Any] = [None, [], "x", {"version": 2}, {"version": 1, "seq": -1}]
    for junk in junk_details:
        event = bus_event("junk")
        event["detail"] = junk
        handlers["notify"].handler(event, FakeContext())
    assert management.posted == []
    handlers["notify"].handler(bus_event("good", seq=3), FakeContext())
    assert [m["seq"] for m in management.to(CONN)] == [3]


@pytest.mark.parametrize("size", [4096, 4097, 32 * 1024, 200_000])
def test_frame_size_limit(
    aws: Settings, handlers: dict[str, ModuleType], management: FakeManagement, size: int
) -> None:
    frame = json.dumps({"action": "ping", "id": 1, "pad": ""})
    frame = frame[:-2] + "x" * (size - len(frame)) + '"}'
    assert len(frame) == size
    send(handlers, frame)
    [reply] = management.to(CONN)
    assert reply["type"] == ("pong" if size <= 4096 else "error")
