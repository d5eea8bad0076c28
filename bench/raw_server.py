"""The ceiling: a bare `websockets` server that broadcasts each control message to every client.

    python -m bench.raw_server [--host 127.0.0.1] [--port 0]

Prints `{"port": n}` once listening. A connection to `/control` is the publisher: every text it
sends goes to all other connections with `websockets.broadcast` (no queues, no lookups). Ends
when stdin closes, so it never outlives the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve

CONTROL_PATH = "/control"


async def main(host: str, port: int) -> None:
    subscribers: set[ServerConnection] = set()

    async def handle(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == CONTROL_PATH:
            async for message in ws:
                broadcast(subscribers, message)
            return
        subscribers.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subscribers.discard(ws)

    async with serve(handle, host, port, ping_interval=None, compression=None, backlog=4096) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"port": bound}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # returns when the parent closes stdin


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
