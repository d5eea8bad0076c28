"""`tidings dev` prewarms the functions routes invoke once it is ready (Lambda's proactive
initialization); `--no-prewarm` leaves their first invocations cold."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets

from .conftest import ECHO_TEMPLATE, RunningStack, start_stack, stop_stack


def _first_records(stack: RunningStack, functions: set[str]) -> dict[str, bool]:
    """Each function's first invocation record (--log-format json): function id → cold."""
    first: dict[str, bool] = {}
    for line in list(stack.output):
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("function") in functions:
                first.setdefault(record["function"], record["cold"])
    return first


async def _connect_and_echo(stack: RunningStack) -> None:
    async with websockets.connect(stack.websocket_url + "?key=open-sesame") as ws:
        await ws.send(json.dumps({"kind": "echo", "text": "warm?"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
    assert reply["echo"] == "warm?"


@pytest.mark.parametrize(
    ("options", "cold"), [((), False), (("--no-prewarm",), True)], ids=["prewarm", "no-prewarm"]
)
async def test_a_routes_functions_are_warm_at_their_first_invocation(
    tmp_path: Path, options: tuple[str, ...], cold: bool
) -> None:
    stack = start_stack(ECHO_TEMPLATE, tmp_path, "--log-format", "json", *options)
    try:
        await _connect_and_echo(stack)
        functions = {"AuthorizerFunction", "EchoFunction"}
        stack.wait_for_log('"function": "EchoFunction"')
        assert _first_records(stack, functions) == dict.fromkeys(functions, cold)
    finally:
        stop_stack(stack)
