"""A smaller fuzz against the live local stack: frames, topics and tokens through the WebSocket
gateway, event details through the bus. Each input gets a documented answer (or the documented
close for binary and oversized frames), and afterwards the same stack still serves a normal client."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import string
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability.clients import Publisher, job_event
from stack_harness import ROOT, RunningStack, create_job, local_token, start_stack, stop_stack
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

DOCUMENTED_CODES = {
    "bad_json", "unknown_action", "bad_topic", "forbidden", "not_found", "too_large", "rate_limited"
}  # fmt: skip
LIVE = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
USER = "fuzzer"
markers = itertools.count(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(ROOT / "template.yaml", tmp_path_factory.mktemp("fuzz"))
    try:
        yield running
    finally:
        assert stop_stack(running) == 0


@pytest.fixture(scope="module")
def session(stack: RunningStack) -> Iterator[dict[str, Any]]:
    """A token, one of the fuzzer's jobs, and a connection the frame fuzz reuses (and reopens)."""
    token = local_token(stack, USER)
    with contextlib.ExitStack() as connections:
        yield {"token": token, "job": create_job(stack, token), "ws": None, "connections": connections}


def connection(stack: RunningStack, state: dict[str, Any]) -> ClientConnection:
    if state["ws"] is None:
        opened = connect(f"{stack.websocket_url}?token={state['token']}", open_timeout=60)
        state["ws"] = state["connections"].enter_context(opened)
    ws: ClientConnection = state["ws"]
    return ws


def replies_until_marker(ws: ClientConnection) -> list[dict[str, Any]]:
    """Send a ping with a fresh id and collect every reply before its pong: the connection still
    answers, and what came before is what the fuzzed frame got."""
    marker = next(markers)
    ws.send(json.dumps({"action": "ping", "id": marker}))
    replies: list[dict[str, Any]] = []
    while True:
        message = json.loads(ws.recv(timeout=60))
        if message.get("type") == "pong" and message.get("id") == marker:
            return replies
        if message.get("code") == "rate_limited" and replies:
            # the fuzzed frame was answered; our marker ping met the frame limit: ask again later
            time.sleep(0.2)
            ws.send(json.dumps({"action": "ping", "id": marker}))
            continue
        replies.append(message)


def assert_documented(replies: list[dict[str, Any]], own_topics: set[str]) -> None:
    assert replies, "every frame is answered"
    for reply in replies:
        if reply["type"] == "error":
            assert reply["code"] in DOCUMENTED_CODES, reply
        elif reply["type"] in ("subscribed", "snapshot", "unsubscribed"):
            assert reply["type"] == "unsubscribed" or reply["topic"] in own_topics, reply
        else:
            assert reply["type"] == "pong", reply


frames = st.one_of(
    st.text(max_size=200),
    st.fixed_dictionaries(
        {"action": st.sampled_from(["subscribe", "unsubscribe", "ping", "nope"])},
        optional={"topic": st.text(max_size=60), "id": st.text(max_size=200) | st.integers()},
    ).map(json.dumps),
    st.integers(4000, 40_000).map(lambda n: json.dumps({"action": "ping", "id": "x" * n})),
    st.binary(min_size=1, max_size=100),
)


@LIVE
@given(frame=frames)
def test_live_frames_get_a_documented_reply_or_close(
    stack: RunningStack, session: dict[str, Any], frame: str | bytes
) -> None:
    ws = connection(stack, session)
    ws.send(frame)
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "surrogatepass"))
    if isinstance(frame, bytes) or size > 32 * 1024:
        # API Gateway closes: 1003 for binary frames, 1009 above 32 KB
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == (1003 if isinstance(frame, bytes) else 1009)
        session["ws"] = None
        return
    own = {f"user:{USER}", f"job:{session['job']}"}
    replies = replies_until_marker(ws)
    assert_documented(replies, own)
    if size > 4096:
        assert [r.get("code") for r in replies] == ["too_large"]


@LIVE
@given(
    topic=st.text(string.printable, max_size=140) | st.sampled_from(["user:alice", "job:x", "user:fuzzer"])
)
def test_live_topics_subscribe_only_the_callers_own(
    stack: RunningStack, session: dict[str, Any], topic: str
) -> None:
    ws = connection(stack, session)
    ws.send(json.dumps({"action": "subscribe", "topic": topic}))
    replies = replies_until_marker(ws)
    assert_documented(replies, {f"user:{USER}", f"job:{session['job']}"})


@LIVE
@given(token=st.text(max_size=300) | st.text(string.ascii_letters + "-_.", max_size=300))
def test_live_random_tokens_are_refused(stack: RunningStack, token: str) -> None:
    url = f"{stack.websocket_url}?token={quote(token, safe='')}"
    with pytest.raises(InvalidStatus) as refused, connect(url, open_timeout=60):
        pass
    assert refused.value.response.status_code in (401, 403)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    detail=st.dictionaries(st.text(max_size=10), json_values, max_size=6)
    | json_values.map(lambda v: {"v": v})
)
def test_live_bus_details_are_dropped_without_failing_notify(
    stack: RunningStack, session: dict[str, Any], detail: dict[str, Any]
) -> None:
    # EventBridge needs an object; the rule matches on source and detail-type only
    Publisher(stack).put(
        {**detail, "userId": USER, "jobId": session["job"]} if "version" in detail else detail
    )


def test_after_the_live_fuzz_a_normal_client_is_served(stack: RunningStack, session: dict[str, Any]) -> None:
    with connect(f"{stack.websocket_url}?token={session['token']}", open_timeout=60) as ws:
        ws.send(json.dumps({"action": "subscribe", "topic": f"job:{session['job']}"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "subscribed"
        assert json.loads(ws.recv(timeout=60))["type"] == "snapshot"
        Publisher(stack).put(job_event(session["job"], USER, 1, 1))
        while (message := json.loads(ws.recv(timeout=60))).get("seq") != 1:
            pass
        assert message["type"] == "completed"
    # the poison events were logged and dropped: notify returned normally every time
    assert not re.search(r"NotifyFunction .* error ", stack.log_text())
    assert stack.process.poll() is None
