"""The demo job `tidings dev` starts: a generated clip submitted through the same HTTP API and
watched through the same WebSocket client that `tidings submit --watch` uses."""

from __future__ import annotations

import asyncio
import sys

from tidings.client import WatchPrinter, submit_job, watch_job
from tidings.demo import DEMO_FILE, make_demo_video
from tidings.devtools.app import is_tidings_app
from tidings.devtools.tokens import mint_token, token_secret_id
from tidings.local.addons import StackHost

DEMO_USER = "demo"


async def run_demo(host: StackHost) -> None:
    secret_id = token_secret_id(host.app)
    api_url, websocket_url = host.http_api_url, host.websocket_url
    if not api_url or not websocket_url or secret_id is None:
        print("(no demo: this template has no jobs API)", flush=True)
        return
    sample = host.app.template_path.parent / ".tidings" / "demo" / DEMO_FILE
    print(f"Demo: generating {sample.name} ...", flush=True)
    await asyncio.to_thread(make_demo_video, sample)
    token = await asyncio.to_thread(mint_token, host, secret_id, DEMO_USER)
    job_id = await submit_job(api_url, token, sample)
    print(f"Demo: submitted job {job_id} as user '{DEMO_USER}'. Watch it:", flush=True)
    if host.site_url:
        print(f"  in a browser: {host.site_url}?user={DEMO_USER}", flush=True)
    print(f"  in a terminal: .venv/bin/tidings watch {job_id} --user {DEMO_USER}", flush=True)
    printer = WatchPrinter(sys.stdout, "plain")
    await watch_job(websocket_url, lambda: mint_token(host, secret_id, DEMO_USER), job_id, printer)


class DemoJob:
    """The add-on: once the stack is ready, a demo job on a Tidings template (else one line)."""

    name = "demo"

    def install(self, host: StackHost) -> None:
        if not is_tidings_app(host.app):
            return

        async def demo() -> None:
            await run_demo(host)

        host.when_ready(demo)
