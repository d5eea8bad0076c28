"""`@connections` posts from 16 threads with a boto3 `apigatewaymanagementapi` client.

    python -m bench.posts

What a new user would write to push to their connections: one boto3 client shared by a
16-thread pool (`max_pool_connections=16`, so every thread keeps its connection; the default
pool of 10 would make botocore discard and reopen connections). Each stdin line is a JSON object
`{"endpoint": url, "ids": [...], "data": text, "posts": n}`: n posts of `data`, cycling over
`ids`, to `endpoint` (one client per endpoint, made on its first round and kept, like a warm
process; the parent runs a warm-up round for each). Prints `{"posts": n, "ok": n, "failed": n,
"seconds": s}` per round. The signing credentials come from the environment. Ends when stdin closes.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

THREADS = 16


def client_for(endpoint: str) -> Any:
    config = Config(max_pool_connections=THREADS, retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)


def post_round(
    client: Any, pool: ThreadPoolExecutor, ids: list[str], data: bytes, posts: int
) -> dict[str, Any]:
    def post(connection_id: str) -> bool:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
            return True
        except Exception:  # a failed post is counted, never retried: both sides alike
            return False

    targets = list(itertools.islice(itertools.cycle(ids), posts))
    started = time.perf_counter()
    outcomes = list(pool.map(post, targets))
    seconds = time.perf_counter() - started
    ok = sum(outcomes)
    return {"posts": posts, "ok": ok, "failed": posts - ok, "seconds": seconds}


def main() -> None:
    clients: dict[str, Any] = {}
    print(json.dumps({"ready": True}), flush=True)
    with ThreadPoolExecutor(THREADS, thread_name_prefix="bench-post") as pool:
        for line in sys.stdin:
            request = json.loads(line)
            endpoint = str(request["endpoint"])
            if endpoint not in clients:
                clients[endpoint] = client_for(endpoint)
            report = post_round(
                clients[endpoint],
                pool,
                list(request["ids"]),
                str(request["data"]).encode(),
                int(request["posts"]),
            )
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
