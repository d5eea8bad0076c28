"""The HTTP API Lambda authorizer (payload 2.0, simple responses) under moto with a real secret."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import jwt
import pytest

from tidings_core.config import Settings

from .conftest import SECRET, FakeContext, token

FOREVER_CLAIMS = {"sub": "alice", "aud": "tidings", "iat": 1, "exp": 2**40}
ROUTE_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/$default/POST/jobs"


def http_authorizer_event(authorization: str | None) -> dict[str, Any]:
    """The shape API Gateway sends a payload 2.0 Lambda authorizer (headers arrive lower-cased)."""
    headers = {"content-type": "application/json", "host": "jobs.example.com"}
    if authorization is not None:
        headers["authorization"] = authorization
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": ROUTE_ARN,
        "identitySource": [authorization] if authorization is not None else [],
        "routeKey": "POST /jobs",
        "rawPath": "/jobs",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "jobs.example.com",
            "domainPrefix": "jobs",
            "http": {
                "method": "POST",
                "path": "/jobs",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "tidings-cli",
            },
            "requestId": "id-1",
            "routeKey": "POST /jobs",
            "stage": "$default",
            "time": "11/Nov/2024:13:45:46 +0000",
            "timeEpoch": 1731332746005,
        },
    }


def test_a_valid_bearer_token_is_authorized_with_the_user_in_context(
    aws: Settings, handlers: dict[str, ModuleType]
) -> None:
    result = handlers["authorize"].http_handler(
        http_authorizer_event(f"Bearer {token('alice')}"), FakeContext()
    )
    assert result == {"isAuthorized": True, "context": {"userId": "alice"}}


def test_the_scheme_is_case_insensitive(aws: Settings, handlers: dict[str, ModuleType]) -> None:
    result = handlers["authorize"].http_handler(
        http_authorizer_event(f"bearer {token('bob')}"), FakeContext()
    )
    assert result == {"isAuthorized": True, "context": {"userId": "bob"}}


def _expired() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "aud": "tidings", "iat": now - 100, "exp": now - 10}, SECRET)


@pytest.mark.parametrize(
    "authorization",
    [
        lambda: None,
        lambda: "",
        lambda: token("alice"),  # no scheme
        lambda: f"Basic {token('alice')}",
        lambda: "Bearer ",
        lambda: "Bearer not-a-jwt",
        lambda: f"Bearer {token('alice', secret='another-signing-key-0123456789abcdef')}",
        lambda: f"Bearer {token('alice', audience='other')}",
        lambda: f"Bearer {_expired()}",
        lambda: "Bearer " + jwt.encode(FOREVER_CLAIMS, None, "none"),
    ],
    ids=[
        "missing", "empty", "no-scheme", "basic", "empty-bearer", "malformed",
        "bad-signature", "wrong-audience", "expired", "alg-none",
    ],
)  # fmt: skip
def test_missing_malformed_or_bad_tokens_are_refused_without_context(
    aws: Settings, handlers: dict[str, ModuleType], authorization: Any
) -> None:
    result = handlers["authorize"].http_handler(http_authorizer_event(authorization()), FakeContext())
    assert result == {"isAuthorized": False}


def test_the_token_never_reaches_the_log(
    aws: Settings, handlers: dict[str, ModuleType], caplog: pytest.LogCaptureFixture
) -> None:
    good, forged = token("alice"), token("alice", secret="another-signing-key-0123456789abcdef")
    with caplog.at_level("DEBUG", logger="tidings"):  # botocore's own DEBUG wire logs are not ours
        handlers["authorize"].http_handler(http_authorizer_event(f"Bearer {good}"), FakeContext())
        handlers["authorize"].http_handler(http_authorizer_event(f"Bearer {forged}"), FakeContext())
    ours = [record for record in caplog.records if record.name == "tidings"]
    messages = [record.getMessage() for record in ours]
    assert "request allowed" in messages and "request refused" in messages
    logged = " ".join(str(vars(record)) for record in ours)  # message, extras and keys
    for secret_text in (good, forged, good.split(".")[2], forged.split(".")[2], SECRET):
        assert secret_text not in logged
