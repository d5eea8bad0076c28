"""Against a deployed stack: `TIDINGS_E2E_STACK=tidings-dev make test` (AWS credentials needed).

Without that variable every test here is skipped, and the skip reason says so: CI has no AWS
account. Everything else in the suite runs against the local stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

import pytest
import websockets

STACK = os.environ.get("TIDINGS_E2E_STACK")
pytestmark = pytest.mark.skipif(
    not STACK, reason="end-to-end tests need a deployed stack: set TIDINGS_E2E_STACK=<stack name>"
)


@pytest.fixture(scope="module")
def target() -> Any:
    from tidings.client import resolve_target

    return resolve_target(STACK, os.environ.get("AWS_REGION"))


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    import boto3

    stack = boto3.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def token_for(target: Any, user: str) -> str:
    from tidings.client import make_token

    return str(make_token(target, user, 600))


async def test_subprotocol_connect_subscribe_and_ping(target: Any) -> None:
    user = f"e2e-{uuid.uuid4().hex[:8]}"
    async with websockets.connect(
        target.websocket_url, subprotocols=["tidings.v1", token_for(target, user)]
    ) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "tidings.v1"
        await ws.send(json.dumps({"action": "subscribe", "topic": f"user:{user}"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30)) == {
            "type": "subscribed",
            "topic": f"user:{user}",
        }
        snapshot = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert snapshot["type"] == "snapshot" and snapshot["jobs"] == []
        await ws.send(json.dumps({"action": "ping", "id": "p1"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "pong"


async def test_bad_token_is_refused(target: Any) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(target.websocket_url + "?token=not-a-jwt"):
            pass
    assert refused.value.response.status_code == 401


async def test_a_bus_event_reaches_the_jobs_subscriber(target: Any, outputs: dict[str, str]) -> None:
    import aiohttp
    import boto3

    user = f"e2e-{uuid.uuid4().hex[:8]}"
    token = token_for(target, user)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{outputs['JobsApiUrl']}/jobs",
            json={"filename": "e2e.mp4", "contentType": "video/mp4", "size": 10},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status == 201
        job_id = (await response.json())["jobId"]
    async with websockets.connect(f"{target.websocket_url}?token={token}") as ws:
        await ws.send(json.dumps({"action": "subscribe", "topic": f"job:{job_id}"}))
        await asyncio.wait_for(ws.recv(), 30)
        await asyncio.wait_for(ws.recv(), 30)
        detail = {
            "version": 1,
            "jobId": job_id,
            "userId": user,
            "seq": 1,
            "stage": "probing",
            "percent": 0,
            "emittedAt": int(time.time() * 1000),
        }
        boto3.client("events").put_events(
            Entries=[
                {
                    "Source": "tidings.transcode",
                    "DetailType": "JobProgress",
                    "Detail": json.dumps(detail),
                    "EventBusName": outputs["EventBusName"],
                }
            ]
        )
        update = json.loads(await asyncio.wait_for(ws.recv(), 60))
    assert (update["jobId"], update["seq"], update["stage"]) == (job_id, 1, "probing")
