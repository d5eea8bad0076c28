"""The demo job `tidings dev` starts: a generated clip submitted through the same HTTP API and
watched through the same WebSocket client that `tidings submit --watch` uses."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from tidings.client import WatchPrinter, submit_job, watch_job
from tidings.demo import DEMO_FILE, make_demo_video

if TYPE_CHECKING:
    from tidings.local.stack import LocalStack

DEMO_USER = "demo"


def local_token(stack: LocalStack, user: str, ttl_s: int = 3600) -> str:
    """A token signed with the local stack's generated secret (what `tidings token` prints)."""
    from tidings_core.tokens import issue_token

    assert stack.aws is not None and stack.token_secret_id is not None
    secrets = stack.aws.client("secretsmanager")
    secret = secrets.get_secret_value(SecretId=stack.token_secret_id)["SecretString"]
    audience = (stack.app.parameters.get("TokenAudience") if stack.app else None) or "tidings"
    return issue_token(secret, user, ttl_s, audience=audience)


async def run_demo(stack: LocalStack) -> None:
    assert stack.urls is not None and stack.app is not None
    if not stack.urls.jobs_api_url or not stack.urls.websocket_url or stack.token_secret_id is None:
        print("(no demo: this template has no jobs API)", flush=True)
        return
    sample = stack.app.template_path.parent / ".tidings" / "demo" / DEMO_FILE
    print(f"Demo: generating {sample.name} ...", flush=True)
    await asyncio.to_thread(make_demo_video, sample)
    token = await asyncio.to_thread(local_token, stack, DEMO_USER)
    job_id = await submit_job(stack.urls.jobs_api_url, token, sample)
    print(f"Demo: submitted job {job_id} as user '{DEMO_USER}'. Watch it:", flush=True)
    if stack.urls.progress_view_url:
        print(f"  in a browser: {stack.urls.progress_view_url}?user={DEMO_USER}", flush=True)
    print(f"  in a terminal: .venv/bin/tidings watch {job_id} --user {DEMO_USER}", flush=True)
    printer = WatchPrinter(sys.stdout, "plain")
    websocket_url = stack.urls.websocket_url
    await watch_job(websocket_url, lambda: local_token(stack, DEMO_USER), job_id, printer)
