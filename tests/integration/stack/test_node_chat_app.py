"""A Node.js chat app (ES-module handlers, the AWS SDK for JavaScript v3) under `tidings dev`,
driven with websockets and with wscat. Its message handler posts to
`https://{requestContext.domainName}/{stage}`, as deployed chat apps do: the local stack must
answer that hostname (the management endpoint's TLS listener and the workers' host redirects).
A CommonJS callback handler answers `ping` through a route response: concurrency, its timeout
and a reload on edit, on the stack a user runs. The app is copied first, so edits stay in tmp."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from testkit import require_tool  # tests/testkit.py

from .conftest import RunningStack, start_stack, stop_stack
from .test_echo_app import WSCAT, run_wscat

CHAT_APP = Path(__file__).parent / "node_chat_app"


@pytest.fixture(scope="module")
def chat_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("node-chat-app") / "app"
    shutil.copytree(CHAT_APP, copy)
    return copy


@pytest.fixture(scope="module")
def chat_stack(tmp_path_factory: pytest.TempPathFactory, chat_app: Path) -> Iterator[RunningStack]:
    stack = start_stack(chat_app / "template.yaml", tmp_path_factory.mktemp("node-chat"), timeout=180)
    yield stack
    stop_stack(stack)


async def ping(stack: RunningStack, sleep_ms: int = 0) -> dict[str, object]:
    async with websockets.connect(stack.websocket_url + "?name=pinger") as ws:
        await ws.send(json.dumps({"action": "ping", "sleep": sleep_ms}))
        reply = await hear(stack, ws)
    assert isinstance(reply, dict), reply
    return reply


async def hear(stack: RunningStack, member: websockets.ClientConnection) -> object:
    try:
        return json.loads(await asyncio.wait_for(member.recv(), 30))
    except TimeoutError:
        raise AssertionError(f"nothing heard in 30 s; the stack said:\n{stack.log_text()[-3000:]}") from None


def room_names(stack: RunningStack) -> set[str]:
    dynamodb = stack.boto3_client("dynamodb")
    [table] = [name for name in dynamodb.list_tables()["TableNames"] if "RoomTable" in name]
    return {item["name"]["S"] for item in dynamodb.scan(TableName=table)["Items"]}  # test inspection


async def test_joining_writes_the_room_table_through_the_sdk_v3(chat_stack: RunningStack) -> None:
    async with websockets.connect(chat_stack.websocket_url + "?name=ada"):
        for _ in range(50):
            if "ada" in room_names(chat_stack):
                break
            await asyncio.sleep(0.1)
        assert "ada" in room_names(chat_stack)
    for _ in range(50):  # $disconnect runs LeaveFunction, which deletes the item
        if "ada" not in room_names(chat_stack):
            break
        await asyncio.sleep(0.1)
    assert "ada" not in room_names(chat_stack)
    chat_stack.wait_for_log(r"ada joined as ")  # the handler's console.log reaches the terminal


async def test_members_hear_each_other_through_the_domain_name_endpoint(chat_stack: RunningStack) -> None:
    # needs the management API on https://{domainName}/{stage} (helper mgmt13's TLS listener)
    async with (
        websockets.connect(chat_stack.websocket_url + "?name=grace") as grace,
        websockets.connect(chat_stack.websocket_url + "?name=linus") as linus,
    ):
        await grace.send(json.dumps({"action": "say", "text": "hello room"}))
        heard = [await hear(chat_stack, member) for member in (grace, linus)]
    assert heard == [{"from": "grace", "text": "hello room"}] * 2


async def test_wscat_says_a_line_the_room_hears(chat_stack: RunningStack) -> None:
    wscat = require_tool("wscat", str(WSCAT))
    async with websockets.connect(chat_stack.websocket_url + "?name=listener") as listener:
        output = await asyncio.to_thread(
            run_wscat, wscat, chat_stack.websocket_url + "?name=wscat", '{"action":"say","text":"from wscat"}'
        )
        heard = await hear(chat_stack, listener)
    assert heard == {"from": "wscat", "text": "from wscat"}
    assert '{"from":"wscat","text":"from wscat"}' in output, output  # wscat, in the room, hears itself


async def test_a_commonjs_callback_handler_answers_through_the_route_response(
    chat_stack: RunningStack,
) -> None:
    reply = await ping(chat_stack)
    assert reply["reply"] == "pong" and isinstance(reply["pid"], int), reply
    chat_stack.wait_for_log(r"PingFunction +ping .* ok +\| .*\tINFO\tping from ")


async def test_concurrent_pings_each_get_their_own_worker(chat_stack: RunningStack) -> None:
    url = chat_stack.websocket_url + "?name=pinger"
    async with websockets.connect(url) as a, websockets.connect(url) as b, websockets.connect(url) as c:
        # all connected first, then three pings at once that each hold their worker for 1 s (the
        # function times out at 2 s, and a cold start on a loaded machine counts towards it)
        await asyncio.gather(*(ws.send(json.dumps({"action": "ping", "sleep": 1000})) for ws in (a, b, c)))
        replies = await asyncio.gather(*(hear(chat_stack, ws) for ws in (a, b, c)))
    assert len({reply["pid"] for reply in replies if isinstance(reply, dict)}) == 3, replies


async def test_a_ping_past_its_timeout_is_an_internal_server_error(chat_stack: RunningStack) -> None:
    reply = await ping(chat_stack, 5000)
    assert reply["message"] == "Internal server error", reply
    chat_stack.wait_for_log(r"PingFunction .*Task timed out after 2\.00 seconds")


async def test_an_edit_reloads_the_handler(chat_stack: RunningStack, chat_app: Path) -> None:
    # last in the module: it changes the copied app
    handler = chat_app / "src" / "ping.cjs"
    handler.write_text(handler.read_text().replace('const REPLY = "pong";', 'const REPLY = "pong, edited";'))
    for _ in range(60):
        reply = await ping(chat_stack)
        if reply["reply"] == "pong, edited":
            break
        await asyncio.sleep(0.5)
    assert reply["reply"] == "pong, edited", chat_stack.log_text()[-2000:]
