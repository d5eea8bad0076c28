"""IAM on the whole Tidings stack: a `user:` subscription with jobs needs dynamodb:BatchGetItem.

The shipped template grants it (issue 12's defect, fixed); a copy without it must fail locally
as it would on AWS, and the terminal line must say what to add.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
import websockets
from stack_harness import create_job

from .conftest import ECHO_TEMPLATE, ROOT, RunningStack, local_token, start_stack, stop_stack


async def subscribe_user(stack: RunningStack, user: str) -> dict[str, Any]:
    token = local_token(stack, user)
    await asyncio.to_thread(create_job, stack, token)  # the user has a job: the snapshot batch-gets it
    async with websockets.connect(f"{stack.websocket_url}?token={token}") as ws:
        await ws.send(json.dumps({"action": "subscribe", "topic": f"user:{user}"}))
        while True:
            reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if reply.get("type") in ("subscribed", "error"):
                return reply


def template_without_batch_get(tmp_path: Path) -> Path:
    """template.yaml copied beside links to the project's code, minus SubscribeFunction's grant."""
    for name in ("src", "layers", "web"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    text = (ROOT / "template.yaml").read_text()
    grant = "            - Effect: Allow\n              # registry.recent_jobs"
    assert text.count(grant) == 1, "SubscribeFunction's BatchGetItem statement moved: update this test"
    start = text.index(grant)
    end = text.index("            - Effect: Allow", start + len(grant))
    edited = text[:start] + text[end:]
    # SubscribeFunction's grant is gone; the uploads function keeps its own (job slots)
    assert edited.count("dynamodb:BatchGetItem") == text.count("dynamodb:BatchGetItem") - 1
    path = tmp_path / "template.yaml"
    path.write_text(edited)
    return path


@pytest.fixture(scope="module")
def stack_without_batch_get(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    folder = tmp_path_factory.mktemp("no-batch-get")
    stack = start_stack(template_without_batch_get(folder), tmp_path_factory.mktemp("state"))
    yield stack
    stop_stack(stack)


async def test_user_subscription_with_jobs_passes_with_the_shipped_template(
    tidings_stack: RunningStack,
) -> None:
    reply = await subscribe_user(tidings_stack, "iam-ok")
    assert reply.get("type") == "subscribed", reply
    assert "denied" not in tidings_stack.log_text()


async def test_without_batch_get_item_the_user_subscription_fails_and_the_log_says_why(
    stack_without_batch_get: RunningStack,
) -> None:
    reply = await subscribe_user(stack_without_batch_get, "iam-denied")
    assert reply["type"] == "error", reply
    line = stack_without_batch_get.wait_for_log(
        r"SubscribeFunction: dynamodb:BatchGetItem on table/\S+JobsTable denied"
    )
    assert "add it to the function's Policies" in line


def read_url(url: str) -> bytes:
    with urlopen(url, timeout=30) as answer:  # noqa: S310 (the local stack)
        body: bytes = answer.read()
    return body


def echo_app_without_manage_connections(tmp_path: Path) -> Path:
    """The echo app (tests/integration/stack/echo_app) minus EchoFunction's ManageConnections grant."""
    shutil.copytree(ECHO_TEMPLATE.parent, tmp_path / "echo_app")
    path = tmp_path / "echo_app" / "template.yaml"
    text = path.read_text()
    grant = "            - Effect: Allow\n              Action: execute-api:ManageConnections\n"
    assert text.count(grant) == 1, "EchoFunction's ManageConnections statement moved: update this test"
    start = text.index(grant)
    end = text.index("\n", text.index("Resource:", start)) + 1
    path.write_text(text[:start] + text[end:])
    assert "ManageConnections" not in path.read_text()
    return path


async def test_a_post_to_connections_without_manage_connections_is_forbidden_and_the_log_says_why(
    tmp_path: Path,
) -> None:
    stack = start_stack(echo_app_without_manage_connections(tmp_path), tmp_path)
    try:
        async with websockets.connect(stack.websocket_url + "?key=open-sesame") as ws:
            await ws.send(json.dumps({"kind": "store", "text": "kept"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert reply["message"] == "Internal server error"  # the handler's post raised
        line = stack.wait_for_log(
            r"EchoFunction: execute-api:ManageConnections on \S+/test/POST/@connections/"
        )
        assert "denied — add it to the function's Policies" in line
        assert "ForbiddenException" in stack.log_text()
        # the console's record of that invocation says the same
        url = f"{stack.http_url}/_tidings/console/api/invocations?function=EchoFunction"
        records = json.loads(await asyncio.to_thread(read_url, url))["invocations"]
        denied = [line for record in records for line in record["denied"]]
        assert any(
            "execute-api:ManageConnections" in line and "add it to the function's Policies" in line
            for line in denied
        )
        # the table write before the post was allowed (DynamoDBWritePolicy)
        dynamodb = stack.boto3_client("dynamodb")
        [table] = [t for t in dynamodb.list_tables()["TableNames"] if "Messages" in t]
        assert {"S": "kept"} in [item["text"] for item in dynamodb.scan(TableName=table)["Items"]]
    finally:
        stop_stack(stack)
