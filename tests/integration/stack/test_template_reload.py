"""Editing the template while `tidings dev` runs reloads the stack: the embedded data and the
live connections stay, new routes and resources are served, a broken edit changes nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import websockets

from .conftest import ECHO_TEMPLATE, start_stack, stop_stack

NEW_ROUTE = """
  AgainRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref EchoApi
      RouteKey: again
      Target: !Join ["/", [integrations, !Ref EchoIntegration]]

  NotesTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - AttributeName: id
          AttributeType: S
      KeySchema:
        - AttributeName: id
          KeyType: HASH
"""


async def _reply(ws: websockets.ClientConnection, message: dict[str, str]) -> dict[str, object]:
    await ws.send(json.dumps(message))
    reply: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return reply


async def test_a_template_edit_reloads_keeping_data_and_connections(tmp_path: Path) -> None:
    app_dir = tmp_path / "echo_app"
    shutil.copytree(ECHO_TEMPLATE.parent, app_dir, ignore=shutil.ignore_patterns("__pycache__", ".tidings"))
    template = app_dir / "template.yaml"
    stack = await asyncio.to_thread(start_stack, template, tmp_path)
    try:
        dynamodb = stack.boto3_client("dynamodb")
        async with websockets.connect(stack.websocket_url + "?key=open-sesame") as other:
            assert await _reply(other, {"kind": "store", "text": "before"}) == {"stored": True}
        async with websockets.connect(stack.websocket_url + "?key=open-sesame") as ws:
            assert (await _reply(ws, {"kind": "again", "text": "x"}))[
                "message"
            ] == "Forbidden"  # no route yet

            text = template.read_text()
            template.write_text(text.replace("\nResources:\n", "\nResources:\n" + NEW_ROUTE, 1))
            await asyncio.to_thread(stack.wait_for_log, r"reloaded; data and connections kept", 60)

            # the same connection, a route the edit added, served by the reloaded stack
            assert await _reply(ws, {"kind": "again", "text": "after"}) == {"stored": True}
            tables = dynamodb.list_tables()["TableNames"]
            assert any("NotesTable" in name for name in tables), tables
            [messages] = [name for name in tables if "MessagesTable" in name]
            items = dynamodb.scan(TableName=messages)["Items"]  # test inspection of the emulator
            assert {"S": "before"} in [item["text"] for item in items]  # written before the reload
            assert {"S": "after"} in [item["text"] for item in items]

            # a broken edit is said and leaves the running stack as it was
            template.write_text("Resources: [not, a, mapping\n")
            await asyncio.to_thread(stack.wait_for_log, r"template not reloaded", 60)
            assert await _reply(ws, {"kind": "echo", "text": "still"}) == {
                "echo": "still",
                "who": "echo-user",
            }
    finally:
        await asyncio.to_thread(stop_stack, stack)


async def test_a_reload_that_narrows_an_integration_role_is_enforced_at_once(tmp_path: Path) -> None:
    """API Gateway assumes the integration's `CredentialsArn` role anew: once the edited template
    takes a permission away, the next call is refused (no client keeps the old role's keys)."""
    from .test_non_proxy import TEMPLATE, write_app

    narrow = "                Action: dynamodb:GetItem\n"
    assert narrow in TEMPLATE
    wide = "                Action: [dynamodb:GetItem, dynamodb:PutItem]\n"
    template = write_app(tmp_path, TEMPLATE.replace(narrow, wide, 1))
    stack = await asyncio.to_thread(start_stack, template, tmp_path)
    try:
        async with websockets.connect(stack.websocket_url) as ws:
            allowed = await _reply(ws, {"action": "narrowput"})
            assert allowed == {"error": "", "why": ""}, allowed  # PutItem answered, no error

            template.write_text(template.read_text().replace(wide, narrow, 1))
            await asyncio.to_thread(stack.wait_for_log, r"reloaded; data and connections kept", 120)

            refused = await _reply(ws, {"action": "narrowput"})
            assert refused["error"] == "AccessDeniedException", refused
            assert "dynamodb:PutItem" in refused["why"], refused
    finally:
        await asyncio.to_thread(stop_stack, stack)
