"""Security on the live local stack: bad tokens refused at the handshake, other users' jobs refused,
tokens never in the log, in DynamoDB or in error messages, and the Origin allow-list on $connect."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import websockets
from stack_harness import ROOT, RunningStack, create_job, local_token, start_stack, stop_stack
from websockets.exceptions import InvalidStatus

from .clients import Client, Fleet, stack_secret

USED_TOKENS: list[str] = []  # every token this module sent; none may show up anywhere


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(ROOT / "template.yaml", tmp_path_factory.mktemp("security"))
    try:
        yield running
    finally:
        assert stop_stack(running) == 0


def signed(secret: str, *, algorithm: str = "HS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": "mallory", "aud": "tidings", "iat": now, "exp": now + 600, **overrides}
    token = jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm=algorithm)
    USED_TOKENS.append(token)
    return token


def unsigned(**claims: Any) -> str:
    """`alg: none`: a header, the claims, and an empty signature."""
    now = int(time.time())
    body = {"sub": "mallory", "aud": "tidings", "iat": now, "exp": now + 600, **claims}
    token = jwt.encode(body, None, algorithm="none")  # type: ignore[arg-type]
    USED_TOKENS.append(token)
    return token


async def handshake_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=60):
            return 101, b""
    except InvalidStatus as refused:
        return refused.response.status_code, bytes(refused.response.body or b"")


def bad_tokens(secret: str) -> dict[str, str]:
    now = int(time.time())
    return {
        "forged": signed("not-the-stack-secret-0123456789abcdef"),
        "expired": signed(secret, iat=now - 7200, exp=now - 3600),
        "wrong audience": signed(secret, aud="someone-else"),
        "alg none": unsigned(),
        "HS512": signed(secret, algorithm="HS512"),
        "no sub": signed(secret, sub=None),
        "bad sub": signed(secret, sub="mallory/../admin"),
        "no exp": signed(secret, exp=None),
    }


async def test_bad_tokens_are_refused_with_403_and_no_token_in_the_answer(stack: RunningStack) -> None:
    secret = await asyncio.to_thread(stack_secret, stack)
    for name, token in bad_tokens(secret).items():
        status, body = await handshake_status(f"{stack.websocket_url}?token={token}")
        assert status == 403, name
        assert token.encode() not in body and token.split(".")[1].encode() not in body, name
    # the same tokens as a browser sends them (subprotocol), and through the jobs API
    for name, token in bad_tokens(secret).items():
        try:
            async with websockets.connect(stack.websocket_url, subprotocols=["tidings.v1", token]):  # type: ignore[list-item]
                status = 101
        except InvalidStatus as refused:
            status = refused.response.status_code
        assert status == 403, name
        with pytest.raises(Exception, match="403") as http_refused:
            await asyncio.to_thread(create_job, stack, token)
        assert token not in str(http_refused.value), name


async def test_a_valid_token_still_connects(stack: RunningStack) -> None:
    token = await asyncio.to_thread(local_token, stack, "mallory")
    USED_TOKENS.append(token)
    assert (await handshake_status(f"{stack.websocket_url}?token={token}"))[0] == 101


async def test_another_users_job_and_user_topic_are_refused(stack: RunningStack) -> None:
    alice = await asyncio.to_thread(local_token, stack, "alice")
    mallory = await asyncio.to_thread(local_token, stack, "mallory")
    USED_TOKENS.extend([alice, mallory])
    job_id = await asyncio.to_thread(create_job, stack, alice)
    fleet = Fleet(stack.websocket_url, {"mallory": mallory})
    intruder = Client("mallory", [])
    await fleet.connect(intruder)
    for topic in (f"job:{job_id}", "user:alice", "job:no-such-job"):
        await intruder.ws.send(json.dumps({"action": "subscribe", "topic": topic}))
    await fleet.wait_for(lambda: len(intruder.errors) == 3)
    codes = [e["code"] for e in intruder.errors]
    # another user's job is as absent as a missing one (no existence oracle); a user topic is forbidden
    assert sorted(codes) == ["forbidden", "not_found", "not_found"]
    assert intruder.applied == {} and intruder.snapshots == 0
    for error in intruder.errors:
        assert mallory not in error["message"] and alice not in error["message"]
    await fleet.close_all()


def all_items(stack: RunningStack) -> str:
    """Every item of every table, as text (a test-side Scan: inspection, not application code)."""
    dynamodb = stack.boto3_client("dynamodb")
    items = []
    for name in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=name):
            items.extend(page["Items"])
    assert items, "expected the tests above to have stored connections and jobs"
    return json.dumps(items)


async def test_tokens_never_reach_the_log_or_dynamodb(stack: RunningStack) -> None:
    token = await asyncio.to_thread(local_token, stack, "leaky")
    USED_TOKENS.append(token)
    fleet = Fleet(stack.websocket_url, {"leaky": token})
    client = await fleet.connect(Client("leaky", ["user:leaky"]))
    await client.ws.send("not json " + token)  # a client echoing its token in a bad frame
    await fleet.wait_for(lambda: bool(client.errors))
    assert token not in json.dumps(client.errors)
    stack.wait_for_log(r"SubscribeFunction\s+\$default")
    await fleet.close_all()
    stored = await asyncio.to_thread(all_items, stack)
    log = stack.log_text() + stack.state_file.read_text()  # the state file names the secret only
    for used in USED_TOKENS:
        signature = used.split(".")[2] if used.count(".") == 2 and used.split(".")[2] else None
        for where, text in (("log", log), ("DynamoDB", stored)):
            assert used not in text, where
            assert signature is None or signature not in text, where


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://good.example", 101),
        ("https://GOOD.example:443", 101),
        (None, 101),  # not a browser: the token decides
        ("https://evil.example", 403),
        ("https://good.example.evil.example", 403),
        ("http://good.example", 403),
        ("null", 403),
    ],
)
async def test_origin_allow_list_on_connect(
    origin_stack: RunningStack, origin: str | None, status: int
) -> None:
    token = await asyncio.to_thread(local_token, origin_stack, "browser-user")
    headers = {"Origin": origin} if origin is not None else None
    assert (await handshake_status(f"{origin_stack.websocket_url}?token={token}", headers))[0] == status


@pytest.fixture(scope="module")
def origin_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(
        ROOT / "template.yaml",
        tmp_path_factory.mktemp("origins"),
        "--parameter-overrides",
        "AllowedOrigins=https://good.example",
    )
    try:
        yield running
    finally:
        assert stop_stack(running) == 0
