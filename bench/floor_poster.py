"""The HTTP floor's poster: one process posting the same body to N connections, as notify posts.

    python -m bench.floor_poster --endpoint http://127.0.0.1:PORT

The poster is notify's own: `tidings_core.push.Pusher` (at most `push.MAX_WORKERS` = 32 posts in
flight) over `ManagementApi` (each POST SigV4-signed, on keep-alive connections driven by one
asyncio loop), built before the first round like a warm Lambda. The floor server checks no
signature; the poster signs anyway, so its CPU per post is notify's. Each stdin line is a JSON object
`{"data": text, "ids": [...]}` (`ids` may be left out to reuse the last list); each round prints
`{"first_post_at": perf_counter, "posted": n, "failed": n, "post_s": s}`. `first_post_at` is
`time.perf_counter()` just before the first post: CLOCK_MONOTONIC, which every process of the
machine shares, so the parent compares it with its clients' arrival times. Ends when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from botocore.credentials import Credentials

from tidings_core.push import MAX_WORKERS, ManagementApi, Outcome, Pusher


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="the floor's base URL (no stage)")
    parser.add_argument("--workers", type=int, default=MAX_WORKERS)
    args = parser.parse_args()
    api = ManagementApi(
        args.endpoint,
        credentials=Credentials("bench-floor", "not-checked-by-the-floor"),
        region="us-east-1",
        max_connections=args.workers,
    )
    pusher = Pusher(api, max_workers=args.workers)
    ids: list[str] = []
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        ids = list(request.get("ids", ids))
        data = str(request["data"]).encode()
        started = time.perf_counter()
        results = pusher.post_many(ids, data)
        ended = time.perf_counter()
        posted = sum(1 for r in results if r.outcome is Outcome.DELIVERED)
        report = {"first_post_at": started, "posted": posted, "failed": len(results) - posted}
        print(json.dumps(report | {"post_s": ended - started}), flush=True)
    pusher.close()


if __name__ == "__main__":
    main()
