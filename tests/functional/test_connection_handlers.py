"""authorize, connect and disconnect under moto."""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

import boto3
import pytest

from tidings_core import registry
from tidings_core.config import Settings
from tidings_core.models import Connection, Subscription

from .conftest import CONNECTED_AT, FakeContext, sample, token, ws_event


def _authorizer_event(
    protocol_header: str | None = None, query: dict[str, str] | None = None
) -> dict[str, Any]:
    event = copy.deepcopy(sample("authorizer_request"))
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Sec-WebSocket-Protocol")
    if protocol_header is not None:
        event["headers"]["Sec-WebSocket-Protocol"] = protocol_header
        event["multiValueHeaders"]["Sec-WebSocket-Protocol"] = [protocol_header]
    if query is not None:
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def test_authorizer_allows_a_subprotocol_token_for_exactly_the_connect_arn(
    aws: Settings, handlers: dict[str, ModuleType]
) -> None:
    event = _authorizer_event(f"tidings.v1, {token('alice')}")
    result = handlers["authorize"].handler(event, FakeContext())
    assert result["principalId"] == "alice"
    [statement] = result["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Resource"] == event["methodArn"]
    assert result["context"] == {"userId": "alice", "subprotocol": "tidings.v1"}


def test_authorizer_allows_a_query_token_without_subprotocol(
    aws: Settings, handlers: dict[str, ModuleType]
) -> None:
    result = handlers["authorize"].handler(_authorizer_event(query={"token": token("bob")}), FakeContext())
    assert result["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert result["context"] == {"userId": "bob", "subprotocol": ""}


@pytest.mark.parametrize(
    "bad_token",
    [
        lambda: token("alice", secret="a-different-signing-key-0123456789abcdef"),
        lambda: token("alice", audience="other"),
        lambda: _expired(),
    ],
    ids=["bad-signature", "wrong-audience", "expired"],
)
def test_authorizer_denies_forged_or_expired_tokens(
    aws: Settings, handlers: dict[str, ModuleType], bad_token: Any
) -> None:
    event = _authorizer_event(f"tidings.v1, {bad_token()}")
    result = handlers["authorize"].handler(event, FakeContext())
    [statement] = result["policyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Resource"] == event["methodArn"]
    assert result["context"] == {}


def _expired() -> str:
    import time

    import jwt

    from .conftest import SECRET

    now = int(time.time())
    return jwt.encode({"sub": "alice", "aud": "tidings", "iat": now - 100, "exp": now - 10}, SECRET)


@pytest.mark.parametrize("header", [None, "tidings.v1", "tidings.v1, not-a-jwt"])
def test_authorizer_raises_unauthorized_without_a_usable_token(
    aws: Settings, handlers: dict[str, ModuleType], header: str | None
) -> None:
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handlers["authorize"].handler(_authorizer_event(header), FakeContext())


def test_connect_registers_the_user_with_a_ttl_in_seconds_and_echoes_the_subprotocol(
    aws: Settings, handlers: dict[str, ModuleType]
) -> None:
    event = ws_event("connect", "BFaT_fALIAMCKug=")
    result = handlers["connect"].handler(event, FakeContext())
    assert result == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "tidings.v1"}}
    item = boto3.client("dynamodb").get_item(
        TableName=aws.connections_table, Key={"connectionId": {"S": "BFaT_fALIAMCKug="}}
    )["Item"]
    assert set(item) == {"connectionId", "userId", "connectedAt", "ttl"}  # no token, no headers
    assert item["userId"] == {"S": "alice"} and item["connectedAt"] == {"N": str(CONNECTED_AT)}
    ttl = int(item["ttl"]["N"])
    assert CONNECTED_AT // 1000 + 7200 < ttl <= CONNECTED_AT // 1000 + 7200 + 3600
    ttl_spec = boto3.client("dynamodb").describe_time_to_live(TableName=aws.connections_table)
    assert ttl_spec["TimeToLiveDescription"]["AttributeName"] == "ttl"


def test_connect_without_the_subprotocol_returns_no_protocol_header(
    aws: Settings, handlers: dict[str, ModuleType]
) -> None:
    event = ws_event("connect", "conn-q")
    event["headers"].pop("Sec-WebSocket-Protocol")
    event["multiValueHeaders"].pop("Sec-WebSocket-Protocol")
    event["queryStringParameters"] = {"token": "redacted"}
    assert handlers["connect"].handler(event, FakeContext()) == {"statusCode": 200}
    assert Connection.get("conn-q").user_id == "alice"


def test_connect_without_authorizer_context_is_refused(
    aws: Settings, handlers: dict[str, ModuleType]
) -> None:
    event = ws_event("connect", "conn-x")
    del event["requestContext"]["authorizer"]
    assert handlers["connect"].handler(event, FakeContext())["statusCode"] == 403
    assert Connection.count("conn-x") == 0


def test_disconnect_removes_the_connection_and_every_subscription_and_is_idempotent(
    aws: Settings, handlers: dict[str, ModuleType]
) -> None:
    for connection_id in ("gone-1", "stays-1"):
        registry.register_connection(connection_id, "alice", CONNECTED_AT)
        for n in range(20):  # more than one ByConnection Query page (page size 7)
            registry.subscribe(f"job:j{n}", connection_id, "alice", CONNECTED_AT)
    for _ in range(2):
        result = handlers["disconnect"].handler(ws_event("disconnect", "gone-1"), FakeContext())
        assert result == {"statusCode": 200}
    assert Connection.count("gone-1") == 0
    assert list(Subscription.by_connection.query("gone-1")) == []
    assert len(list(Subscription.by_connection.query("stays-1"))) == 20
    assert Connection.get("stays-1").user_id == "alice"


def test_disconnect_of_an_unknown_connection_is_200(aws: Settings, handlers: dict[str, ModuleType]) -> None:
    assert handlers["disconnect"].handler(ws_event("disconnect", "never-seen"), FakeContext()) == {
        "statusCode": 200
    }


def test_forget_connection_deletes_subscriptions_in_batches_of_25(
    aws: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynamodb.connection.base import Connection as DynamoConnection

    registry.register_connection("many", "alice", CONNECTED_AT)
    for n in range(60):
        registry.subscribe(f"job:j{n}", "many", "alice", CONNECTED_AT)
    calls: list[tuple[str, int]] = []
    original = DynamoConnection._make_api_call

    def recording(self: DynamoConnection, operation: str, kwargs: dict[str, Any]) -> Any:
        if operation == "BatchWriteItem":
            calls.append((operation, sum(len(requests) for requests in kwargs["RequestItems"].values())))
        elif operation == "DeleteItem":
            calls.append((operation, 1))
        return original(self, operation, kwargs)

    monkeypatch.setattr(DynamoConnection, "_make_api_call", recording)
    assert registry.forget_connection("many") == 60
    batches = [("BatchWriteItem", 25), ("BatchWriteItem", 25), ("BatchWriteItem", 10)]
    assert calls == [*batches, ("DeleteItem", 1)]
    assert list(Subscription.by_connection.query("many")) == []
    assert Connection.count("many") == 0
