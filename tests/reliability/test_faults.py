"""Faults on the live local stack: stale connections, 429 throttling, notify killed mid-fan-out,
DynamoDB unavailable, a transcoding worker killed mid-job. Faults are switched through
`/_tidings/faults` (tidings/local/faults.py, enabled by TIDINGS_FAULTS=1)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets
from stack_harness import RunningStack, create_job, local_token, stop_stack
from testkit import require_tool
from websockets.exceptions import InvalidStatus

from .clients import Client, Fleet, Publisher, count_rows, fault_control, job_event, publish_paced
from .conftest import start_fault_stack


async def job_fleet(stack: RunningStack, user: str, clients: int) -> tuple[Fleet, str, list[Client]]:
    token = await asyncio.to_thread(local_token, stack, user)
    job_id = await asyncio.to_thread(create_job, stack, token)
    fleet = Fleet(stack.websocket_url, {user: token})
    subscribed = await fleet.connect_all(Client(user, [f"job:{job_id}"]) for _ in range(clients))
    return fleet, job_id, subscribed


async def test_stale_connections_are_pruned_at_the_first_delivery(tmp_path: Path) -> None:
    stack = await asyncio.to_thread(start_fault_stack, tmp_path, "--drop-disconnect")
    try:
        fleet, job_id, stale = await job_fleet(stack, "stale-user", clients=15)
        for client in stale:
            await fleet.close(client)  # $disconnect never runs: 15 stale subscriptions remain
        topic = f"job:{job_id}"
        assert await asyncio.to_thread(count_rows, stack, "Subscriptions", topic=topic) == 15
        live = await fleet.connect_all(Client("stale-user", [topic]) for _ in range(5))
        await publish_paced(fleet, Publisher(stack), job_id, "stale-user", 1, lambda: live)
        # the delivery that met 410 Gone removed them (no timer, no sweep)
        async with asyncio.timeout(60):
            while await asyncio.to_thread(count_rows, stack, "Subscriptions", topic=topic) != 5:  # noqa: ASYNC110 - polling a table
                await asyncio.sleep(0.2)
        assert all(c.applied[job_id] == [0, 1] for c in live)
        await fleet.close_all()
    finally:
        assert stop_stack(stack) == 0


async def test_throttled_posts_are_retried_and_nothing_is_lost(fault_stack: RunningStack) -> None:
    fleet, job_id, clients = await job_fleet(fault_stack, "throttled-user", clients=40)
    # every other post answers 429, the same message to the same connection up to 3 times
    # (push.py makes 5 attempts); throttling starts after the subscriptions were answered
    fault_control(fault_stack, {"throttle": {"fraction": 0.5, "seed": 6, "maxPerMessage": 3}})
    try:
        await publish_paced(fleet, Publisher(fault_stack), job_id, "throttled-user", 4, lambda: clients)
    finally:
        counters = fault_control(fault_stack, {"reset": True})
    assert counters["throttled"] > 0
    assert all(c.applied[job_id] == [0, 1, 2, 3, 4] for c in clients)
    duplicates = sum(c.duplicates() for c in clients)
    print(f"throttle: {counters['throttled']} posts answered 429, raw duplicates {duplicates}")
    await fleet.close_all()


async def test_notify_killed_mid_fan_out_resumes_and_clients_apply_each_message_once(
    fault_stack: RunningStack,
) -> None:
    """120 subscribers = two pages of 100 + 20. The notify worker is SIGKILLed right after the
    110th delivered post (inside page 2); Lambda's retry, after the fan-out lease has run out,
    resumes after the checkpointed page 1, so page 2 may be posted twice (at-least-once) and the
    seq rule hides the repeats."""
    fleet, job_id, clients = await job_fleet(fault_stack, "killed-user", clients=120)
    fault_control(
        fault_stack, {"killAfterPosts": {"function": "NotifyFunction", "posts": 110, "jobId": job_id}}
    )
    await publish_paced(fleet, Publisher(fault_stack), job_id, "killed-user", 3, lambda: clients)
    counters = fault_control(fault_stack)
    assert [k["function"] for k in counters["killed"] if k.get("afterPosts")] == ["NotifyFunction"]
    fault_stack.wait_for_log(r"NotifyFunction .* error Runtime\.ExitError")
    # what the client application applies: every message exactly once, in order
    assert all(c.applied[job_id] == [0, 1, 2, 3] for c in clients)
    # what arrived on the wire: seq 1 re-sent to at most the page in flight (20), never page 1
    duplicates = sum(c.duplicates() for c in clients)
    resent = [c for c in clients if c.raw_seqs(job_id).count(1) > 1]
    assert duplicates == len(resent) <= 20
    print(f"notify killed after 110 posts: raw duplicates {duplicates}")
    await fleet.close_all()


async def test_dynamodb_outage_gives_clear_errors_and_recovers(fault_stack: RunningStack) -> None:
    fleet, job_id, [watcher] = await job_fleet(fault_stack, "outage-user", clients=1)
    try:
        await outage_then_recovery(fault_stack, fleet, job_id, watcher)
    finally:
        fault_control(fault_stack, {"reset": True})
    await fleet.close_all()


async def outage_then_recovery(fault_stack: RunningStack, fleet: Fleet, job_id: str, watcher: Client) -> None:
    token = fleet.tokens["outage-user"]
    publisher = Publisher(fault_stack)
    # on until the reset below: the subscribe (the SDK retries each 500 for a while) and then the
    # handshake must both fall inside it, however long the retries take
    fault_control(fault_stack, {"dynamodbOutage": {"seconds": 300}})
    # a frame during the outage: an `internal` error reply, the connection stays open
    await watcher.ws.send(json.dumps({"action": "subscribe", "topic": f"job:{job_id}"}))
    await fleet.wait_for(lambda: bool(watcher.errors))
    assert watcher.errors[0]["code"] == "internal"
    assert token not in json.dumps(watcher.errors)
    # a handshake during the outage: $connect cannot store the connection and fails, which API
    # Gateway answers 502 (the integration failed); the client retries later
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{fault_stack.websocket_url}?token={token}", open_timeout=60):
            pass
    assert refused.value.response.status_code == 502
    fault_control(fault_stack, {"reset": True})
    # an event during a 1 s outage: notify's DynamoDB calls are refused, and the event still
    # arrives once DynamoDB answers again (bridged by botocore's own retries of the 500s, or by
    # Lambda's retry of a failed notify: which one depends on timing, so neither is asserted here;
    # tests/unit/local/test_lambda_async.py and tests/integration/runtime/test_bus.py cover Lambda's)
    fault_control(fault_stack, {"dynamodbOutage": {"seconds": 1}})
    await asyncio.to_thread(publisher.put, job_event(job_id, "outage-user", 1, 2))
    await fleet.wait_for(lambda: watcher.highest(job_id) == 1)
    assert fault_control(fault_stack)["dynamodbRefused"] > 0
    # after it: the same connection and a new one work as before
    watcher.errors.clear()
    newcomer = await fleet.connect(Client("outage-user", [f"job:{job_id}"]))
    assert newcomer.snapshot_seq[job_id] == 1
    await asyncio.to_thread(publisher.put, job_event(job_id, "outage-user", 2, 2))
    await fleet.wait_for(lambda: watcher.highest(job_id) == newcomer.highest(job_id) == 2)
    assert watcher.applied[job_id] == [0, 1, 2] and newcomer.applied[job_id] == [1, 2]
    assert watcher.errors == [] and fault_stack.process.poll() is None


async def test_a_transcode_worker_killed_mid_job_ends_completed_or_failed(
    fault_stack: RunningStack, tmp_path: Path
) -> None:
    require_tool("ffmpeg", _ffmpeg())
    from tidings.client import submit_job
    from tidings.demo import make_sample_video

    clip = await asyncio.to_thread(make_sample_video, tmp_path / "clip.mp4", seconds=4.0, size="320x240")
    token = await asyncio.to_thread(local_token, fault_stack, "transcode-user")
    fleet = Fleet(fault_stack.websocket_url, {"transcode-user": token})
    [watcher] = await fleet.connect_all([Client("transcode-user", ["user:transcode-user"])])
    fault_control(
        fault_stack, {"killWhenBusy": {"function": "TranscodeSegmentFunction", "afterSeconds": 0.1}}
    )
    job_id = await submit_job(fault_stack.http_url, token, clip)

    def terminal() -> bool:
        return any(m.get("jobId") == job_id and m["type"] in ("completed", "failed") for m in watcher.raw)

    await fleet.wait_for(terminal, limit_s=240)
    counters = fault_control(fault_stack, {"reset": True})
    assert [k["function"] for k in counters["killed"] if "busySeconds" in k] == ["TranscodeSegmentFunction"]
    fault_stack.wait_for_log(r"TranscodeSegmentFunction .* error Runtime\.ExitError")
    [final] = [m for m in watcher.raw if m.get("jobId") == job_id and m["type"] in ("completed", "failed")]
    # Runtime.ExitError is in the segment task's Retry list: the retry normally completes the job
    print(f"transcode worker killed: job ended {final['type']}")
    assert final["type"] in ("completed", "failed")
    if final["type"] == "failed":
        assert final["error"]["code"]
    await fleet.close_all()


def _ffmpeg() -> str | None:
    try:
        from tidings.demo import ffmpeg_exe

        return ffmpeg_exe()
    except Exception:  # imageio-ffmpeg without a binary for this platform
        return None
