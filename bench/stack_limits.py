"""The local stack at its limits, in one run: connect rate, `@connections` posts, fan-out of 1,000.

    .venv/bin/python -m bench.stack_limits [--fanout 1000] [--repeats 3] [--skip-fanout] [--skip-limits]

For profiling and before/after comparisons of the stack's process structure (issue 15): prints
one JSON object with

- `connect_per_s`: new connections per second through the authorizer and `$connect` (with a
  token), one at a time and 20 in flight (medians of `--repeats`);
- `posts_per_s`: `post_to_connection` from 16 threads sharing one boto3 client, to the stack's
  `@connections` and to a bare HTTP server that only answers 200 (`ratio`: stack / bare);
- `fanout`: bench.fanout's row for one event to `--fanout` subscribers (its own stack child).

With `BENCH_SAMPLE=<file>` the stack child dumps bench/sampler.py's profile there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from typing import Any

import boto3
from aiohttp import web
from botocore.config import Config

from bench import fanout
from bench.clients import ClientPool
from bench.processes import Child
from bench.stack_process import raise_open_files_limit
from bench.stats import median, rate

POST_THREADS = 16
POST_SECONDS = 3.0


def post_rate(endpoint: str, region: str, connection_ids: list[str], seconds: float = POST_SECONDS) -> float:
    """Posts per second from POST_THREADS threads sharing one boto3 client."""
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(retries={"max_attempts": 1}, max_pool_connections=POST_THREADS),
    )
    counts = [0] * POST_THREADS
    deadline = time.perf_counter() + seconds
    errors: list[BaseException] = []

    def work(index: int) -> None:
        target = connection_ids[index % len(connection_ids)]
        try:
            while time.perf_counter() < deadline:
                client.post_to_connection(ConnectionId=target, Data=b'{"bench":1}')
                counts[index] += 1
        except BaseException as error:
            errors.append(error)

    client.post_to_connection(ConnectionId=connection_ids[0], Data=b"{}")  # warm the pool
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(POST_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"posts failed: {errors[0]!r}")
    return rate(sum(counts), time.perf_counter() - started)


async def bare_server() -> tuple[web.AppRunner, int]:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, int(port)


class _Session(fanout.StackSession):
    """The stack child and a token; no job (pynamodb keeps the first stack's endpoint)."""

    def _create_job(self) -> None:
        pass


async def limits(repeats: int) -> dict[str, Any]:
    stack = await Child.start("bench.stack_process")
    pool = ClientPool()
    try:
        ready = (await stack.next_json(300))["ready"]
        with fanout.local_aws_environment(ready["aws_endpoint"], ready["region"], ready["credentials"]):
            session = _Session(stack, ready)
            connect = await fanout.connect_rate(session, (1, 20), 40, repeats)
            await pool.grow(
                ready["websocket_url"],
                POST_THREADS,
                concurrency=4,
                subprotocols=[fanout.SUBPROTOCOL, session.token],
            )
            dynamodb = boto3.client("dynamodb")
            ids = [
                item["connectionId"]["S"]
                for item in dynamodb.scan(TableName=ready["connections_table"])["Items"]
            ]
            # the bare server runs in its own process, like the stack (not on this client's GIL)
            bare = await Child.start("bench.stack_limits", "--bare-server")
            bare_port = (await bare.next_json(30))["port"]
            stack_rates, bare_rates = [], []
            for _ in range(repeats):
                stack_rates.append(
                    await asyncio.to_thread(post_rate, ready["callback_url"], ready["region"], ids)
                )
                bare_rates.append(
                    await asyncio.to_thread(
                        post_rate, f"http://127.0.0.1:{bare_port}/stage", ready["region"], ids
                    )
                )
            await bare.stop()
    finally:
        await pool.close()
        await stack.stop(timeout_s=60)
        boto3.DEFAULT_SESSION = None  # it keeps this run's keys; the next stack has its own
    return {
        "connect_per_s": {k: v["connections_per_s"] for k, v in connect["by_concurrency"].items()},
        "posts_per_s": {
            "stack": round(median(stack_rates)),
            "bare": round(median(bare_rates)),
            "ratio": round(median([s / b for s, b in zip(stack_rates, bare_rates, strict=True)]), 2),
        },
    }


async def serve_bare() -> None:
    runner, port = await bare_server()
    print(json.dumps({"port": port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, lambda: os.read(0, 1))
    await runner.cleanup()


async def main(size: int, repeats: int, skip_fanout: bool, skip_limits: bool) -> None:
    raise_open_files_limit()
    load = os.getloadavg()
    report: dict[str, Any] = {"load_before": [round(x, 2) for x in load]}
    if not skip_fanout:  # first: pynamodb keeps the first endpoint it was given, for the process
        result = await fanout.run([size], repeats, connect_levels=(20,), connect_per_level=40)
        boto3.DEFAULT_SESSION = None  # it keeps this run's keys; the next stack has its own
        row = result["fanout"][str(size)]
        report["fanout"] = {
            key: row[key] for key in ("vs_sequential", "p50_ms", "p99_ms", "deliveries_per_s", "missing")
        }
        report["fanout"]["sequential_per_s"] = row["sequential"]["deliveries_per_s"]
    if not skip_limits:
        report.update(await limits(repeats))
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--skip-limits", action="store_true")
    parser.add_argument("--bare-server", action="store_true")
    args = parser.parse_args()
    if args.bare_server:
        asyncio.run(serve_bare())
    else:
        asyncio.run(main(args.fanout, args.repeats, args.skip_fanout, args.skip_limits))
