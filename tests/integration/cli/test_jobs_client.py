"""tidings.jobs, the installable client: job states over a real WebSocket, reconnect, seq rule,
refusals; and publish_job_event's entry as notify reads it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from tidings import jobs
from tidings.state import LocalStackState, write_state
from tidings_core import events

JOB = "job-7"
EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "watch_job.py"


def _job(seq: int, stage: str = "transcoding") -> dict[str, Any]:
    kind = stage if stage in ("completed", "failed") else "progress"
    return {"type": kind, "jobId": JOB, "userId": "u", "seq": seq, "stage": stage, "percent": seq * 10.0}


class Script:
    """First connection: snapshot seq 1, live 2 and 3, then the connection drops. Second: a
    snapshot at seq 3 (already seen), a stale 2, then 4 and completed 5."""

    def __init__(self) -> None:
        self.connections = 0
        self.tokens: list[str] = []

    async def handle(self, socket: ServerConnection) -> None:
        self.connections += 1
        assert socket.request is not None
        self.tokens.append(socket.request.headers["Sec-WebSocket-Protocol"].split(",")[1].strip())
        assert json.loads(await socket.recv()) == {"action": "subscribe", "topic": f"job:{JOB}"}
        await socket.send(json.dumps({"type": "subscribed", "topic": f"job:{JOB}"}))
        if self.connections == 1:
            await socket.send(json.dumps({"type": "snapshot", "topic": f"job:{JOB}", "jobs": [_job(1)]}))
            for seq in (2, 3):
                await socket.send(json.dumps(_job(seq)))
            await socket.close(1011)
            return
        await socket.send(json.dumps({"type": "snapshot", "topic": f"job:{JOB}", "jobs": [_job(3)]}))
        for message in (_job(2), _job(4), _job(5, "completed")):
            await socket.send(json.dumps(message))
        await socket.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    async with serve(script.handle, "127.0.0.1", 0, subprotocols=[Subprotocol("tidings.v1")]) as running:
        port = running.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/dev", script


async def test_job_states_arrive_in_seq_order_across_a_reconnect_and_end_with_the_job(
    server: tuple[str, Script],
) -> None:
    url, script = server
    issued = iter(f"token-{n}" for n in range(10))
    states = [state async for state in jobs.job_states(url, lambda: next(issued), JOB)]
    assert [(state.seq, state.stage) for state in states] == [
        (1, "transcoding"),
        (2, "transcoding"),
        (3, "transcoding"),
        (4, "transcoding"),
        (5, "completed"),
    ]
    assert script.connections == 2
    assert script.tokens == ["token-0", "token-1"]  # a fresh token per connection


async def test_a_refused_subscription_raises() -> None:
    async def refuse(socket: ServerConnection) -> None:
        await socket.recv()
        await socket.send(json.dumps({"type": "error", "code": "forbidden", "message": "not yours"}))
        await socket.wait_closed()

    async with serve(refuse, "127.0.0.1", 0, subprotocols=[Subprotocol("tidings.v1")]) as running:
        url = f"ws://127.0.0.1:{running.sockets[0].getsockname()[1]}/dev"
        with pytest.raises(jobs.SubscriptionError, match="refused the subscription"):
            async for _ in jobs.job_states(url, lambda: "t", JOB):
                pass


class FakeEvents:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries += Entries
        if self.fail:
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "Throttled", "ErrorMessage": "slow"}]}
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "ev-1"}]}


def test_publish_job_event_sends_what_notify_accepts() -> None:
    fake = FakeEvents()
    detail = {"version": 1, "jobId": JOB, "userId": "u", "seq": 3, "stage": "transcoding", "percent": 30.0,
              "emittedAt": 1_731_332_746_000}  # fmt: skip
    assert jobs.publish_job_event(detail, bus_name="bus", events_client=fake) == "ev-1"
    (entry,) = fake.entries
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        events.EVENT_SOURCE,
        events.DETAIL_TYPE,
        "bus",
    )
    assert events.parse_job_event(entry["Detail"]).seq == 3  # notify's own validation
    assert jobs.MAX_ENTRY_BYTES == events.MAX_ENTRY_BYTES


def test_publish_job_event_refuses_bad_events_and_failed_entries() -> None:
    good = {"version": 1, "jobId": JOB, "userId": "u", "seq": 1, "stage": "queued", "emittedAt": 1}
    with pytest.raises(jobs.PublishError, match="'seq' must be int"):
        jobs.publish_job_event({**good, "seq": "1"}, bus_name="bus", events_client=FakeEvents())
    with pytest.raises(jobs.PublishError, match="unknown stage"):
        jobs.publish_job_event({**good, "stage": "done"}, bus_name="bus", events_client=FakeEvents())
    with pytest.raises(jobs.PublishError, match="Throttled"):
        jobs.publish_job_event(good, bus_name="bus", events_client=FakeEvents(fail=True))


async def test_the_documented_python_example_follows_a_job(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    """docs/examples/watch_job.py, run as a user runs it, against a 'local stack' made of the
    scripted server and an embedded Secrets Manager holding the signing key."""
    url, script = server
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        secrets = boto3.client(
            "secretsmanager", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        arn = secrets.create_secret(Name="signing", SecretString="example-signing-key-0123456789abcdef")[
            "ARN"
        ]
        state = tmp_path / "state.json"
        write_state(
            LocalStackState(
                websocket_url=url, callback_url=endpoint, aws_endpoint=endpoint, http_url=endpoint,
                progress_view_url=None, jobs_api_url=None, region="us-east-1", stage="dev",
                token_secret_id=arn, aws_access_key_id="testing", aws_secret_access_key="testing",
            ),
            state,
        )  # fmt: skip
        env = {**os.environ, "TIDINGS_STATE": str(state)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE), JOB, "u", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        moto.stop()
    assert process.returncode == 0, (out + err).decode()
    lines = out.decode().splitlines()
    assert [line.split()[1] for line in lines] == ["1", "2", "3", "4", "5"]
    assert "completed" in lines[-1]
    assert script.connections == 2
