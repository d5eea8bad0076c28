"""The HTTP floor: `@connections` with no gateway logic, on the libraries the local gateway uses.

    python -m bench.http_floor            # POST /@connections/{id}: the body to that WebSocket client
    python -m bench.http_floor --bare     # POST /@connections/{id}: 200 and nothing else

Its own process. A WebSocket client (websockets, as the gateway) gets its connection id as its
first frame, `{"connectionId": "..."}`; a POST to `/@connections/{id}` or `/{stage}/@connections/{id}`
(aiohttp, as the gateway's `@connections`) sends the body to that client as one text frame and
answers 200 once the frame is written, or 410 when there is no such client. No signature check,
no host policy, no lookup beyond one dict, no events: the physical limit of the design on this
machine. `--bare` answers every such POST 200 without looking at the id (the server the
boto3-posts comparison runs against). Prints `{"http_port": n, "ws_port": n}` once listening.
Ends when stdin closes, so it never outlives the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import sys

from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

CONNECTIONS_ROUTES = ("/@connections/{connection_id}", "/{stage}/@connections/{connection_id}")


def build_app(clients: dict[str, ServerConnection], *, bare: bool) -> web.Application:
    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        if bare:
            return web.Response()
        ws = clients.get(request.match_info["connection_id"])
        if ws is None:
            return web.Response(status=410, headers={"x-amzn-ErrorType": "GoneException"})
        try:
            await ws.send(body.decode("utf-8", "replace"))
        except ConnectionClosed:
            return web.Response(status=410, headers={"x-amzn-ErrorType": "GoneException"})
        return web.Response()

    app = web.Application(client_max_size=256 * 1024)
    for route in CONNECTIONS_ROUTES:
        app.router.add_post(route, post)
    return app


async def main(host: str, bare: bool) -> None:
    clients: dict[str, ServerConnection] = {}
    numbers = itertools.count(1)

    async def handle(ws: ServerConnection) -> None:
        connection_id = f"floor{next(numbers)}="
        clients[connection_id] = ws
        try:
            await ws.send(json.dumps({"connectionId": connection_id}))
            await ws.wait_closed()
        finally:
            clients.pop(connection_id, None)

    runner = web.AppRunner(build_app(clients, bare=bare), access_log=None)
    await runner.setup()
    listener = socket.create_server((host, 0), backlog=4096)  # bound here: its port is known
    await web.SockSite(runner, listener).start()
    http_port = listener.getsockname()[1]
    async with serve(handle, host, 0, ping_interval=None, compression=None, backlog=4096) as server:
        ws_port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"http_port": http_port, "ws_port": ws_port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--bare", action="store_true", help="answer every POST 200 and do nothing else")
    args = parser.parse_args()
    asyncio.run(main(args.host, args.bare))
