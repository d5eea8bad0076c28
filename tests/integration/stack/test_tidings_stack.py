"""All of Tidings on the local stack: token, subscribe, bus event to subscribers, 410 pruning, wscat."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from stack_harness import create_job, put_job_event
from testkit import require_tool  # tests/testkit.py

from .conftest import ROOT, RunningStack, local_token, start_stack, stop_stack
from .test_echo_app import WSCAT, run_wscat


def publish(stack: RunningStack, detail: dict[str, Any]) -> None:
    put_job_event(stack, detail)


def progress(job_id: str, user: str, seq: int, stage: str, percent: float) -> dict[str, Any]:
    return {
        "version": 1,
        "jobId": job_id,
        "userId": user,
        "seq": seq,
        "stage": stage,
        "percent": percent,
        "emittedAt": int(time.time() * 1000),
    }


async def receive_until(ws: Any, predicate: Any, limit_s: float = 30.0) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(limit_s):
        while True:
            message = json.loads(await ws.recv())
            seen.append(message)
            if predicate(message):
                return seen


async def test_browser_style_connect_echoes_the_subprotocol(tidings_stack: RunningStack) -> None:
    token = local_token(tidings_stack, "alice")
    async with websockets.connect(tidings_stack.websocket_url, subprotocols=["tidings.v1", token]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "tidings.v1"
        await ws.send(json.dumps({"action": "subscribe", "topic": "user:alice"}))
        replies = await receive_until(ws, lambda m: m["type"] == "snapshot")
    assert replies[0] == {"type": "subscribed", "topic": "user:alice"}


async def test_job_events_on_the_bus_reach_subscribers_in_order(tidings_stack: RunningStack) -> None:
    token = local_token(tidings_stack, "carol")
    job_id = await asyncio.to_thread(create_job, tidings_stack, token)
    url = f"{tidings_stack.websocket_url}?token={token}"
    async with websockets.connect(url) as job_ws, websockets.connect(url) as user_ws:
        await job_ws.send(json.dumps({"action": "subscribe", "topic": f"job:{job_id}"}))
        await user_ws.send(json.dumps({"action": "subscribe", "topic": "user:carol"}))
        snapshot = (await receive_until(job_ws, lambda m: m["type"] == "snapshot"))[-1]
        assert [j["stage"] for j in snapshot["jobs"]] == ["queued"]
        await receive_until(user_ws, lambda m: m["type"] == "snapshot")
        # one event at a time, as the transcoder publishes (a few per second): every one arrives
        for seq, stage, percent in [(1, "probing", 0), (2, "transcoding", 40.5), (3, "completed", 100)]:
            await asyncio.to_thread(publish, tidings_stack, progress(job_id, "carol", seq, stage, percent))
            for ws in (job_ws, user_ws):
                [update] = [m for m in await receive_until(ws, lambda m, seq=seq: m.get("seq") == seq)]
                assert (update["jobId"], update["stage"], update["percent"]) == (job_id, stage, percent)
        assert update["type"] == "completed"


async def test_a_burst_of_events_never_goes_backwards_and_ends_complete(tidings_stack: RunningStack) -> None:
    """EventBridge invokes notify concurrently: a newer event may overtake an older one, and the
    older one is then dropped rather than delivered out of order (docs/protocol.md, ordering)."""
    token = local_token(tidings_stack, "hana")
    job_id = await asyncio.to_thread(create_job, tidings_stack, token)
    async with websockets.connect(f"{tidings_stack.websocket_url}?token={token}") as ws:
        await ws.send(json.dumps({"action": "subscribe", "topic": f"job:{job_id}"}))
        await receive_until(ws, lambda m: m["type"] == "snapshot")
        for seq in range(1, 9):
            await asyncio.to_thread(
                publish, tidings_stack, progress(job_id, "hana", seq, "transcoding", seq * 10)
            )
        await asyncio.to_thread(publish, tidings_stack, progress(job_id, "hana", 9, "completed", 100))
        messages = await receive_until(ws, lambda m: m.get("type") == "completed")
    seqs = [m["seq"] for m in messages if m.get("jobId") == job_id]
    assert seqs == sorted(set(seqs)) and seqs[-1] == 9


async def test_a_duplicate_event_is_not_delivered_twice(tidings_stack: RunningStack) -> None:
    token = local_token(tidings_stack, "dave")
    job_id = await asyncio.to_thread(create_job, tidings_stack, token)
    async with websockets.connect(f"{tidings_stack.websocket_url}?token={token}") as ws:
        await ws.send(json.dumps({"action": "subscribe", "topic": f"job:{job_id}"}))
        await receive_until(ws, lambda m: m["type"] == "snapshot")
        event = progress(job_id, "dave", 1, "probing", 0)
        await asyncio.to_thread(publish, tidings_stack, event)
        await asyncio.to_thread(publish, tidings_stack, event)
        await asyncio.to_thread(publish, tidings_stack, progress(job_id, "dave", 2, "completed", 100))
        messages = await receive_until(ws, lambda m: m.get("type") == "completed")
    assert [m["seq"] for m in messages if m.get("jobId") == job_id] == [1, 2]


def test_wscat_with_a_query_token_gets_pong(tidings_stack: RunningStack) -> None:
    wscat = require_tool("wscat", str(WSCAT))
    token = local_token(tidings_stack, "erin")
    output = run_wscat(wscat, f"{tidings_stack.websocket_url}?token={token}", '{"action":"ping"}')
    assert '"type":"pong"' in output.replace(" ", ""), output


def test_tokens_never_reach_the_log(tidings_stack: RunningStack) -> None:
    token = local_token(tidings_stack, "frank")
    run_wscat(require_tool("wscat", str(WSCAT)), f"{tidings_stack.websocket_url}?token={token}", "{}", 1)
    tidings_stack.wait_for_log(r"SubscribeFunction\s+\$default")
    assert token not in tidings_stack.log_text()
    assert token.split(".")[2] not in tidings_stack.log_text()


async def test_dropped_disconnect_leaves_a_stale_connection_that_notify_prunes(tmp_path: Path) -> None:
    stack = start_stack(ROOT / "template.yaml", tmp_path, "--drop-disconnect")
    try:
        token = local_token(stack, "gina")
        job_id = await asyncio.to_thread(create_job, stack, token)
        url = f"{stack.websocket_url}?token={token}"
        async with websockets.connect(url) as stale:
            await stale.send(json.dumps({"action": "subscribe", "topic": f"job:{job_id}"}))
            await receive_until(stale, lambda m: m["type"] == "snapshot")
        dynamodb = stack.boto3_client("dynamodb")
        [table] = [t for t in dynamodb.list_tables()["TableNames"] if "Subscriptions" in t]

        def subscribers() -> int:
            result = dynamodb.query(
                TableName=table,
                KeyConditionExpression="topic = :t",
                ExpressionAttributeValues={":t": {"S": f"job:{job_id}"}},
            )
            return int(result["Count"])

        assert await asyncio.to_thread(subscribers) == 1  # $disconnect never ran
        async with websockets.connect(url) as live:
            await live.send(json.dumps({"action": "subscribe", "topic": f"job:{job_id}"}))
            await receive_until(live, lambda m: m["type"] == "snapshot")
            await asyncio.to_thread(publish, stack, progress(job_id, "gina", 1, "probing", 0))
            [update] = [
                m for m in await receive_until(live, lambda m: m.get("seq") == 1) if m.get("seq") == 1
            ]
            assert update["jobId"] == job_id  # the live connection still gets it
            async with asyncio.timeout(30):
                while await asyncio.to_thread(subscribers) != 1:  # noqa: ASYNC110 - polling a table
                    await asyncio.sleep(0.2)  # the stale one is pruned on its 410
    finally:
        assert stop_stack(stack) == 0


@pytest.mark.parametrize("query", ["", "?token=not-a-jwt"])
async def test_missing_or_malformed_token_is_401(tidings_stack: RunningStack, query: str) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(tidings_stack.websocket_url + query):
            pass
    assert refused.value.response.status_code == 401
