"""The local console in headless Chromium against `tidings dev --drop-disconnect` run as a user runs it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from stack_harness import (
    ROOT,
    RunningStack,
    local_token,
    management_client,
    put_job_event,
    start_stack,
    stop_stack,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

WAIT_MS = 30_000  # an upper bound for cold starts on a loaded machine, not a speed assertion


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[RunningStack]:
    # `browser` first: without Chromium the test skips (or fails in CI) before a stack starts
    running = start_stack(
        ROOT / "template.yaml", Path(tmp_path_factory.mktemp("console")), "--drop-disconnect"
    )
    yield running
    stop_stack(running)


def console_url(stack: RunningStack) -> str:
    line = stack.wait_for_log(r"^Console: ")
    return line.split(": ", 1)[1].strip()


@contextmanager
def subscribed_client(stack: RunningStack, user: str) -> Iterator[ClientConnection]:
    token = local_token(stack, user)
    with connect(stack.websocket_url, subprotocols=["tidings.v1", token]) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"action": "subscribe", "topic": f"user:{user}"}))
        replies = [json.loads(ws.recv(timeout=WAIT_MS / 1000)) for _ in range(2)]
        assert replies[0] == {"type": "subscribed", "topic": f"user:{user}"}
        yield ws


def connection_id_of(page: Page, user: str) -> str:
    row = page.locator("tr.connection", has_text=user).first
    expect(row).to_be_visible(timeout=WAIT_MS)
    connection_id = row.get_attribute("data-connection-id")
    assert connection_id
    return connection_id


def subscription_topics(stack: RunningStack, connection_id: str) -> list[str]:
    dynamodb = stack.boto3_client("dynamodb")
    [table] = [name for name in dynamodb.list_tables()["TableNames"] if "Subscriptions" in name]
    items = dynamodb.query(
        TableName=table,
        IndexName="ByConnection",
        KeyConditionExpression="connectionId = :id",
        ExpressionAttributeValues={":id": {"S": connection_id}},
    )["Items"]
    return [item["topic"]["S"] for item in items]


def publish_progress(stack: RunningStack, job_id: str, user: str, seq: int = 1) -> None:
    detail = {
        "version": 1,
        "jobId": job_id,
        "userId": user,
        "seq": seq,
        "stage": "transcoding",
        "percent": 12.5 * seq,
        "emittedAt": int(time.time() * 1000),
    }
    put_job_event(stack, detail)


def test_tidings_dev_prints_the_console_address(stack: RunningStack) -> None:
    assert console_url(stack) == f"{stack.http_url}/console"


def test_connect_and_message_invocations_are_listed_with_their_payloads(
    stack: RunningStack, page: Page
) -> None:
    with subscribed_client(stack, "alice"):
        page.goto(console_url(stack))
        connect_row = page.locator('tr.invocation[data-trigger="$connect"]').first
        subscribe_row = page.locator('tr.invocation[data-trigger="subscribe"]').first
        expect(connect_row).to_be_visible(timeout=WAIT_MS)
        expect(subscribe_row).to_be_visible(timeout=WAIT_MS)
        expect(subscribe_row).to_contain_text("SubscribeFunction")
        expect(subscribe_row).to_contain_text("ok")
        connection_id = connection_id_of(page, "alice")
        expect(page.locator("tr.connection", has_text=connection_id).locator(".topics")).to_have_text(
            "user:alice"
        )

        subscribe_row.click()
        event = page.locator("tr.detail pre.event").first
        expect(event).to_contain_text('\\"action\\": \\"subscribe\\"')
        expect(event).to_contain_text('\\"topic\\": \\"user:alice\\"')
        expect(event).to_contain_text(connection_id)
        expect(page.locator("tr.detail pre.result").first).to_contain_text('"statusCode": 200')
        expect(page.locator("tr.detail .log-line").first).to_be_visible()
        subscribe_row.click()  # collapse

        connect_row.click()
        connect_event = page.locator("tr.detail pre.event").first
        expect(connect_event).to_contain_text('"eventType": "CONNECT"')
        expect(connect_event).to_contain_text(connection_id)
        # The token the client connected with is never shown
        assert local_token(stack, "alice").split(".")[0] not in (connect_event.text_content() or "")

        page.locator("#filter-connection").fill(connection_id)
        expect(page.locator("tr.invocation")).not_to_have_count(0)
        for trigger in page.locator("tr.invocation").evaluate_all("rows => rows.map(r => r.dataset.trigger)"):
            assert trigger in ("$connect authorizer", "$connect", "subscribe")


def test_replay_with_the_same_and_an_edited_event_adds_invocations(stack: RunningStack, page: Page) -> None:
    with subscribed_client(stack, "carol") as ws:
        page.goto(console_url(stack))
        page.locator("#filter-user").fill("carol")
        # carol's authorizer, $connect and subscribe invocations, and no one else's
        expect(page.locator("tr.invocation")).to_have_count(3, timeout=WAIT_MS)
        original = page.locator('tr.invocation[data-trigger="subscribe"]')
        seq = original.get_attribute("data-seq")
        original.click()
        page.locator("tr.detail button.replay-same").click()
        replay = page.locator(f'tr.invocation[data-trigger="replay #{seq}"]')
        expect(replay).to_have_count(1, timeout=WAIT_MS)
        expect(replay).to_contain_text("ok")

        editor = page.locator("tr.detail textarea.replay-event").first
        edited = json.loads(editor.input_value())
        edited["body"] = json.dumps({"action": "ping"})
        editor.fill(json.dumps(edited))
        page.locator("tr.detail button.replay-edited").first.click()
        expect(replay).to_have_count(2, timeout=WAIT_MS)
        newest = replay.first
        newest.click()
        expect(
            page.locator(f'tr.detail[data-seq="{newest.get_attribute("data-seq")}"] pre.event')
        ).to_contain_text('\\"action\\": \\"ping\\"')
        # The client received the replayed frames' replies: a second `subscribed`, then a pong
        replies = [json.loads(ws.recv(timeout=WAIT_MS / 1000)) for _ in range(3)]
        assert {"type": "subscribed", "topic": "user:carol"} in replies
        assert any(reply["type"] == "pong" for reply in replies)


def test_disconnecting_from_the_console_makes_the_next_post_gone_and_notify_prunes_it(
    stack: RunningStack, page: Page
) -> None:
    with subscribed_client(stack, "dave") as ws:
        disconnect_and_publish(stack, page, ws)


def disconnect_and_publish(stack: RunningStack, page: Page, ws: ClientConnection) -> None:
    page.goto(console_url(stack))
    connection_id = connection_id_of(page, "dave")
    assert subscription_topics(stack, connection_id) == ["user:dave"]

    page.locator("tr.connection", has_text=connection_id).locator("button.disconnect").click()
    expect(page.locator("tr.connection", has_text=connection_id)).to_have_count(0, timeout=WAIT_MS)
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=WAIT_MS / 1000)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    # --drop-disconnect: $disconnect never ran, so the subscription outlives the connection
    assert subscription_topics(stack, connection_id) == ["user:dave"]
    management = management_client(stack)
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"{}")

    job_id = f"job-console-{int(time.time() * 1000)}"
    publish_progress(stack, job_id, "dave")
    page.locator("#follow-job").fill(job_id)
    page.locator("#follow-form button[type=submit]").click()
    hop = page.locator("#follow-result .hop-event")
    expect(hop).to_have_count(1, timeout=WAIT_MS)
    expect(hop.locator(".hop-notify")).to_contain_text("delivered 0, gone 1", timeout=WAIT_MS)
    expect(hop.locator(".hop-bus")).to_contain_text("tidings.transcode / JobProgress")

    page.locator("#filter-job").fill(job_id)
    notify = page.locator('tr.invocation[data-function="NotifyFunction"]')
    expect(notify).to_have_count(1, timeout=WAIT_MS)
    notify.click()
    expect(page.locator("tr.detail pre.result")).to_contain_text('"gone": 1')
    assert subscription_topics(stack, connection_id) == []


def test_a_followed_job_gains_each_new_event_live_while_it_runs(stack: RunningStack, page: Page) -> None:
    page.goto(console_url(stack))
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    job_id = f"job-live-{int(time.time() * 1000)}"
    with subscribed_client(stack, "erin") as ws:
        page.locator("#follow-job").fill(job_id)  # followed before the job has any event
        page.locator("#follow-form button[type=submit]").click()
        hops = page.locator("#follow-result .hop-event")
        for seq in (1, 2, 3):
            publish_progress(stack, job_id, "erin", seq)
            assert json.loads(ws.recv(timeout=WAIT_MS / 1000))["seq"] == seq
            # no click: the console's live stream re-reads the followed job after each invocation
            expect(hops).to_have_count(seq, timeout=WAIT_MS)
        expect(hops.first).to_contain_text("seq 3")  # newest first
        for hop in hops.all():
            expect(hop.locator(".hop-notify")).to_contain_text("delivered 1, gone 0")
            expect(hop).to_contain_text("publish→receive")
