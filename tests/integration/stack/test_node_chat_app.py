"""A Node.js chat app (ES-module handlers, the AWS SDK for JavaScript v3) under `tidings dev`,
driven with websockets and with wscat. Its message handler posts to
`https://{requestContext.domainName}/{stage}`, as deployed chat apps do: the local stack must
answer that hostname (the management endpoint's TLS listener and the workers' host redirects)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from testkit import require_tool  # tests/testkit.py

from .conftest import RunningStack, start_stack, stop_stack
from .test_echo_app import WSCAT, run_wscat

CHAT_TEMPLATE = Path(__file__).parent / "node_chat_app" / "template.yaml"


@pytest.fixture(scope="module")
def chat_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(CHAT_TEMPLATE, tmp_path_factory.mktemp("node-chat"), timeout=180)
    yield stack
    stop_stack(stack)


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
