"""The demo job `tidings dev` starts: a generated clip submitted through the same HTTP API and
watched through the same WebSocket a user's browser would use."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import websockets

from tidings.demo import make_sample_video

if TYPE_CHECKING:
    from tidings.local.stack import LocalStack

DEMO_USER = "demo"


def local_token(stack: LocalStack, user: str, ttl_s: int = 3600) -> str:
    """A token signed with the local stack's generated secret (what `tidings token` prints)."""
    from tidings_core.tokens import issue_token

    assert stack.aws is not None and stack.token_secret_id is not None
    secret = stack.aws.client("secretsmanager").get_secret_value(SecretId=stack.token_secret_id)[
        "SecretString"
    ]
    audience = (stack.app.parameters.get("TokenAudience") if stack.app else None) or "tidings"
    return issue_token(secret, user, ttl_s, audience=audience)


async def submit(api_url: str, token: str, path: Path) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    content = await asyncio.to_thread(path.read_bytes)
    request = {"filename": path.name, "contentType": "video/mp4", "size": len(content)}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api_url}/jobs", json=request, headers=headers) as response:
            body = await response.json(content_type=None)
            if response.status != 201:
                raise RuntimeError(f"POST /jobs answered {response.status}: {body}")
        upload = body["upload"]
        async with session.request(
            upload.get("method", "PUT"),
            upload["url"],
            data=content,
            headers=upload.get("headers") or {},
        ) as response:
            if response.status >= 300:
                raise RuntimeError(f"upload answered {response.status}: {await response.text()}")
    return str(body["jobId"])


def describe(message: dict[str, Any]) -> str:
    stage = message.get("stage", "?")
    percent = float(message.get("percent") or 0.0)
    bar = "#" * int(percent / 5) + "." * (20 - int(percent / 5))
    extra = ""
    if message.get("etaSeconds") is not None:
        extra += f"  ETA {float(message['etaSeconds']):.0f}s"
    if message.get("speed") is not None:
        extra += f"  {float(message['speed']):.2f}x"
    if stage == "failed":
        error = message.get("error") or {}
        extra += f"  {error.get('code')}: {error.get('message')}"
    if stage == "completed":
        output = message.get("output") or {}
        extra += f"  -> s3://{output.get('bucket')}/{output.get('key')}"
    return f"[demo job {message.get('jobId')}] {stage:<11} [{bar}] {percent:5.1f}%{extra}"


async def watch(ws_url: str, token: str, job_id: str, out: Any = sys.stdout) -> dict[str, Any]:
    """Print each new state of the job until it completes or fails; returns the final message."""
    last_seq = -1
    async with websockets.connect(ws_url, subprotocols=["tidings.v1", token]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"action": "subscribe", "topic": f"job:{job_id}"}))
        async for raw in ws:
            message = json.loads(raw)
            states = message.get("jobs", []) if message.get("type") == "snapshot" else [message]
            for state in states:
                if state.get("jobId") != job_id or int(state.get("seq", -1)) <= last_seq:
                    continue
                last_seq = int(state["seq"])
                print(describe(state), file=out, flush=True)
                if state.get("stage") in ("completed", "failed"):
                    return dict(state)
    raise ConnectionError("the WebSocket closed before the job finished")


async def run_demo(stack: LocalStack) -> None:
    assert stack.urls is not None and stack.app is not None
    if not stack.urls.jobs_api_url or stack.token_secret_id is None:
        print("(no demo: this template has no jobs API)", flush=True)
        return
    sample = stack.app.template_path.parent / ".tidings" / "demo" / "sample-720p.mp4"
    print(f"Demo: generating {sample.name} ...", flush=True)
    await asyncio.to_thread(make_sample_video, sample)
    token = local_token(stack, DEMO_USER)
    job_id = await submit(stack.urls.jobs_api_url, token, sample)
    print(f"Demo: submitted job {job_id} as user '{DEMO_USER}'. Watch it:", flush=True)
    print(f"  Progress view: {stack.urls.progress_view_url}?user={DEMO_USER}", flush=True)
    print(f"  wscat: see README 'Develop locally' (topic job:{job_id})", flush=True)
    await watch(stack.urls.websocket_url, token, job_id)
