"""A SAM app that is not Tidings runs under `tidings dev`, driven by websockets and by wscat."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
import websockets
from testkit import require_tool  # tests/testkit.py
from websockets.exceptions import InvalidStatus

from .conftest import ECHO_TEMPLATE, ROOT, RunningStack, start_stack, stop_stack

WSCAT = ROOT / "node_modules" / ".bin" / "wscat"


async def test_missing_identity_source_is_401(echo_stack: RunningStack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(echo_stack.websocket_url):
            pass
    assert refused.value.response.status_code == 401


async def test_authorizer_deny_is_403(echo_stack: RunningStack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(echo_stack.websocket_url + "?key=wrong"):
            pass
    assert refused.value.response.status_code == 403


async def test_route_response_returns_the_handler_result_with_authorizer_context(
    echo_stack: RunningStack,
) -> None:
    async with websockets.connect(echo_stack.websocket_url + "?key=open-sesame") as ws:
        await ws.send(json.dumps({"kind": "echo", "text": "hello"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert reply == {"echo": "hello", "who": "echo-user"}


async def test_route_without_response_posts_through_callback_url_and_writes_the_table(
    echo_stack: RunningStack,
) -> None:
    async with websockets.connect(echo_stack.websocket_url + "?key=open-sesame") as ws:
        await ws.send(json.dumps({"kind": "store", "text": "kept"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert reply == {"stored": True}  # the handler's own return value never arrives
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 1.0)
    dynamodb = echo_stack.boto3_client("dynamodb")
    [table] = [t for t in dynamodb.list_tables()["TableNames"] if "Messages" in t]
    items = dynamodb.scan(TableName=table)["Items"]  # test inspection of the emulator, not app code
    assert {"S": "kept"} in [item["text"] for item in items]


async def test_no_matching_route_and_no_default_is_forbidden(echo_stack: RunningStack) -> None:
    async with websockets.connect(echo_stack.websocket_url + "?key=open-sesame") as ws:
        await ws.send(json.dumps({"kind": "unknown"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert reply["message"] == "Forbidden"
    assert len(reply["connectionId"]) == 16 and reply["requestId"]


def run_wscat(wscat: str, url: str, message: str, wait_s: int = 3) -> str:
    """wscat -x exits before printing when its stdin closes: keep stdin open until it is done."""
    process = subprocess.Popen(
        [wscat, "-c", url, "-x", message, "-w", str(wait_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stdout is not None and process.stdin is not None
    process.stdin.close()
    return process.stdout.read()


def test_wscat_talks_to_the_echo_route(echo_stack: RunningStack) -> None:
    wscat = require_tool("wscat", str(WSCAT))
    output = run_wscat(wscat, echo_stack.websocket_url + "?key=open-sesame", '{"kind":"echo","text":"wscat"}')
    assert '{"echo": "wscat", "who": "echo-user"}' in output, output


def test_ctrl_c_stops_everything_and_removes_the_state_file(tmp_path: Path) -> None:
    stack = start_stack(ECHO_TEMPLATE, tmp_path)
    state = json.loads(stack.state_file.read_text())
    assert state["websocketUrl"] == stack.websocket_url
    assert state["callbackUrl"] == stack.callback_url
    assert state["awsEndpoint"] == stack.aws_endpoint
    assert stop_stack(stack) == 0
    assert not stack.state_file.exists()
    assert "Stopping" in stack.log_text()


def test_tidings_dev_on_another_app_runs_only_the_generic_add_ons(echo_stack: RunningStack) -> None:
    """The console is there without Tidings' labels and panels; Tidings' token and config routes are not."""
    from urllib.error import HTTPError
    from urllib.request import urlopen

    with urlopen(f"{echo_stack.http_url}/_tidings/console/api/features", timeout=30) as response:  # noqa: S310
        assert json.loads(response.read()) == {"labels": [], "panels": [], "websocket": True}
    for path in ("/_tidings/config", "/_tidings/token?user=alice"):
        with pytest.raises(HTTPError) as missing:
            urlopen(f"{echo_stack.http_url}{path}", timeout=30)  # noqa: S310
        assert missing.value.code == 404
    assert "Console: " in echo_stack.log_text() and "Demo:" not in echo_stack.log_text()
