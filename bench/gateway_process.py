"""The local gateway alone, for capacity: `$connect` answered by an in-memory function, so the
memory and connection figures are the gateway's own, not the functions' or DynamoDB's.

    python -m bench.gateway_process

Prints `{"port": n, "pid": p, "nofile": limit}` and ends when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from bench.stack_process import raise_open_files_limit
from tidings.local.gateway import Gateway
from tidings.local.model import Invocation, Route, WebSocketApi

CONNECT_FUNCTION = "InMemoryConnect"


class AcceptingInvoker:
    """Accepts every `$connect` at once (a function that returns 200 and does nothing else)."""

    def __init__(self) -> None:
        self.invocations = 0

    async def invoke(
        self, function_id: str, event: dict[str, Any], *, source: str = "", caller: Any = None
    ) -> Invocation:
        self.invocations += 1
        return Invocation(request_id=str(self.invocations), function_id=function_id, ok=True, result={})


def bench_api() -> WebSocketApi:
    return WebSocketApi(
        logical_id="BenchApi",
        api_id="benchapi00",
        name="bench",
        stage="bench",
        route_selection_expression="$request.body.action",
        routes={"$connect": Route("$connect", CONNECT_FUNCTION)},
    )


async def main() -> None:
    nofile = raise_open_files_limit()
    gateway = Gateway(bench_api(), AcceptingInvoker(), host="127.0.0.1", port=0)
    await gateway.start()
    try:
        sys.stdout.write(json.dumps({"url": gateway.url, "nofile": nofile}) + "\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await gateway.stop()


if __name__ == "__main__":
    asyncio.run(main())
