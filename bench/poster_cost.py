"""CPU per `@connections` post of the candidate posters, side by side against one bare server.

    .venv/bin/python -m bench.poster_cost [--posts 3000] [--repeats 5]

One bare server (`bench.http_floor --bare`, its own process: aiohttp answering 200) and, in this
process, each poster in turn posting the same 229-byte body with 32 posts in flight; per repeat
the posters run in rotated order, and each figure is the median over repeats of: the poster's
CPU ms per post (this process's user + system time: every thread counts), the server's CPU ms
per post (/proc), and posts per second. The posters:

- `push`: notify's own, `push.Pusher` over `push.ManagementApi` (asyncio, one loop thread,
  httptools, SigV4 by `push.SigV4Signer`);
- `threads+botocore`: what push.py did before: botocore's `SigV4Auth` + `AWSRequest` per post
  on one keep-alive urllib3 pool, from a pool of 32 threads (as the old `Pusher`, without its
  window's lock: a little less CPU than it spent);
- `threads+signer`: the same threads and pool, signed by `push.SigV4Signer` instead;
- `aiohttp`: an aiohttp `ClientSession` (32 connections) on push's event loop, signed by
  `push.SigV4Signer`;
- `boto3`: a boto3 `apigatewaymanagementapi` client from 32 threads.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.credentials import Credentials

from bench.processes import ROOT, cpu_seconds
from tidings_core import push

BODY = json.dumps({"type": "bench", "text": "x" * 200}).encode()
IN_FLIGHT = push.MAX_WORKERS
CREDENTIALS = Credentials("AKIDEXAMPLE", "not-checked-by-the-server", "session-token")
REGION = "us-east-1"


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class BotocoreThreadsApi:
    """push.py's previous transport: `SigV4Auth.add_auth` on an `AWSRequest`, urllib3 keep-alive."""

    def __init__(self, endpoint: str, *, own_signer: bool = False) -> None:
        import urllib3
        from botocore.auth import SigV4Auth

        self.endpoint = endpoint
        self.host = endpoint.split("://", 1)[1].split("/", 1)[0]
        self.base_path = "/" + endpoint.split("://", 1)[1].split("/", 1)[1]
        self.pool = urllib3.connection_from_url(endpoint, maxsize=IN_FLIGHT, block=True)
        frozen = CREDENTIALS.get_frozen_credentials()
        self.auth = SigV4Auth(frozen, push.SERVICE, REGION)
        self.signer = push.SigV4Signer(frozen.access_key, frozen.secret_key, frozen.token, REGION)
        self.own_signer = own_signer

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        from botocore.awsrequest import AWSRequest

        path = f"{self.base_path}/@connections/{ConnectionId}"
        if self.own_signer:
            headers = dict(self.signer.headers(self.host, path, Data, push._utc_now()))
        else:
            request = AWSRequest(method="POST", url=f"http://{self.host}{path}", data=Data)
            self.auth.add_auth(request)
            headers = dict(request.headers.items())
        response = self.pool.urlopen("POST", path, body=Data, headers=headers, preload_content=True)
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")


class AiohttpApi:
    """An aiohttp session on push's event loop, signed by `push.SigV4Signer`."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.host = endpoint.split("://", 1)[1].split("/", 1)[0]
        self.base_path = "/" + endpoint.split("://", 1)[1].split("/", 1)[1]
        frozen = CREDENTIALS.get_frozen_credentials()
        self.signer = push.SigV4Signer(frozen.access_key, frozen.secret_key, frozen.token, REGION)
        self.session: Any = None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def post_async(self, connection_id: str, data: bytes) -> None:
        import aiohttp
        from yarl import URL

        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=IN_FLIGHT), skip_auto_headers=("User-Agent",)
            )
        path = f"{self.base_path}/@connections/{connection_id}"
        headers = dict(self.signer.headers(self.host, path, data, push._utc_now()))
        url = URL(f"http://{self.host}{path}", encoded=True)
        async with self.session.post(url, data=data, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")


PostAll = Callable[[list[str]], int]  # posts BODY to every id; how many failed


def _threaded(client: Any, threads: ThreadPoolExecutor) -> PostAll:
    def post(connection_id: str) -> bool:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=BODY)
            return True
        except Exception:
            return False

    return lambda ids: sum(1 for ok in threads.map(post, ids) if not ok)


def _pushed(pusher: push.Pusher) -> PostAll:
    return lambda ids: sum(1 for r in pusher.post_many(ids, BODY) if r.outcome is not push.Outcome.DELIVERED)


def posters(endpoint: str, threads: ThreadPoolExecutor, aiohttp_api: AiohttpApi) -> dict[str, PostAll]:
    import boto3
    from botocore.config import Config

    sdk = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
        aws_session_token=CREDENTIALS.token,
        config=Config(max_pool_connections=IN_FLIGHT, retries={"max_attempts": 1}),
    )
    api = push.ManagementApi(endpoint, credentials=CREDENTIALS, region=REGION)
    return {
        "push": _pushed(push.Pusher(api)),
        "threads+botocore": _threaded(BotocoreThreadsApi(endpoint), threads),
        "threads+signer": _threaded(BotocoreThreadsApi(endpoint, own_signer=True), threads),
        "aiohttp": _pushed(push.Pusher(aiohttp_api)),
        "boto3": _threaded(sdk, threads),
    }


def measure(posts: int, repeats: int) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.http_floor", "--bare"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["http_port"]
        with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="bench-post") as threads:
            endpoint = f"http://127.0.0.1:{port}/dev"
            aiohttp_api = AiohttpApi(endpoint)
            contenders = posters(endpoint, threads, aiohttp_api)
            ids = [f"conn{n:06d}=" for n in range(posts)]
            samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
            for post_all in contenders.values():  # warm: connections opened, imports done
                post_all(ids[:300])
            names = list(contenders)
            for repeat in range(repeats):
                for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                    samples[name].append(_one(contenders[name], ids, lambda: cpu_seconds(server.pid)))
            push.event_loop().run(aiohttp_api.close())
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)

    def median_of(rows: list[tuple[float, float, float]], index: int, digits: int) -> float:
        return round(statistics.median(row[index] for row in rows), digits)

    return {
        "posters": {
            name: {
                "poster_cpu_ms_per_post": median_of(rows, 0, 3),
                "server_cpu_ms_per_post": median_of(rows, 1, 3),
                "posts_per_s": median_of(rows, 2, 0),
            }
            for name, rows in samples.items()
        },
        "posts": posts,
        "repeats": repeats,
        "in_flight": IN_FLIGHT,
        "body_bytes": len(BODY),
        "server": "bench.http_floor --bare (aiohttp, answers 200)",
        "load_average": os.getloadavg()[0],
    }


def _one(post_all: PostAll, ids: list[str], server_cpu: Callable[[], float]) -> tuple[float, float, float]:
    before = _own_cpu_s(), server_cpu(), time.perf_counter()
    failed = post_all(ids)
    after = _own_cpu_s(), server_cpu(), time.perf_counter()
    if failed:
        raise RuntimeError(f"{failed} posts failed")
    n = len(ids)
    return (after[0] - before[0]) * 1000 / n, (after[1] - before[1]) * 1000 / n, n / (after[2] - before[2])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.posts, args.repeats), indent=2))


if __name__ == "__main__":
    main()
