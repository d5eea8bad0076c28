"""`$connect` refuses browsers from origins not in ALLOWED_ORIGINS; clients without Origin pass."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tidings_core import origins
from tidings_core.config import Settings

from .conftest import FakeContext, sample, token

ALLOWED = "https://app.example.com, http://localhost:3000,https://Admin.Example.com:8443"


def connect_event(origin: str | None, token_value: str | None = None) -> dict[str, Any]:
    event = copy.deepcopy(sample("authorizer_request"))
    protocol_header = f"tidings.v1, {token_value or token('alice')}"
    event["headers"]["Sec-WebSocket-Protocol"] = protocol_header
    event["multiValueHeaders"]["Sec-WebSocket-Protocol"] = [protocol_header]
    if origin is not None:
        event["headers"]["Origin"] = origin
        event["multiValueHeaders"]["Origin"] = [origin]
    return event


@pytest.fixture
def allowed_origins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ALLOWED_ORIGINS", ALLOWED)
    origins.policy_from_env.cache_clear()
    yield
    origins.policy_from_env.cache_clear()


def effect(result: dict[str, Any]) -> str:
    [statement] = result["policyDocument"]["Statement"]
    return str(statement["Effect"])


@pytest.mark.parametrize(
    "origin",
    [
        None,  # wscat, the CLI, servers: not a browser
        "https://app.example.com",
        "https://APP.example.com",  # hosts compare case-insensitively
        "HTTPS://app.example.com",
        "https://app.example.com:443",  # the default port is the same origin
        "http://localhost:3000",
        "https://admin.example.com:8443",
    ],
)
def test_listed_origins_and_clients_without_origin_connect(
    aws: Settings, handlers: dict[str, ModuleType], allowed_origins: None, origin: str | None
) -> None:
    result = handlers["authorize"].handler(connect_event(origin), FakeContext())
    assert effect(result) == "Allow"
    assert result["context"]["userId"] == "alice"


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "http://app.example.com",  # another scheme is another origin
        "https://app.example.com:8443",  # another port too
        "http://localhost:3001",
        "https://app.example.com.evil.net",  # no prefix or suffix matching
        "https://admin.example.com",  # listed only with :8443
        "null",  # sandboxed iframes and file:// pages
        "",
        "not an origin",
    ],
)
def test_other_browser_origins_are_denied_even_with_a_valid_token(
    aws: Settings, handlers: dict[str, ModuleType], allowed_origins: None, origin: str
) -> None:
    event = connect_event(origin)
    result = handlers["authorize"].handler(event, FakeContext())
    assert effect(result) == "Deny"
    assert result["policyDocument"]["Statement"][0]["Resource"] == event["methodArn"]
    assert result["context"] == {}


def test_the_origin_header_is_found_in_any_case(
    aws: Settings, handlers: dict[str, ModuleType], allowed_origins: None
) -> None:
    event = connect_event(None)
    event["headers"]["origin"] = "https://evil.example.com"
    assert effect(handlers["authorize"].handler(event, FakeContext())) == "Deny"


def test_a_listed_origin_still_needs_a_valid_token(
    aws: Settings, handlers: dict[str, ModuleType], allowed_origins: None
) -> None:
    forged = token("alice", secret="another-signing-key-0123456789abcdef")
    result = handlers["authorize"].handler(connect_event("https://app.example.com", forged), FakeContext())
    assert effect(result) == "Deny"


@pytest.mark.parametrize("setting", ["*", "", "https://app.example.com,*"])
def test_a_star_or_unset_list_allows_every_origin(
    aws: Settings, handlers: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", setting)
    origins.policy_from_env.cache_clear()
    try:
        result = handlers["authorize"].handler(connect_event("https://anything.example.net"), FakeContext())
    finally:
        origins.policy_from_env.cache_clear()
    assert effect(result) == "Allow"


def test_the_default_without_the_variable_allows_every_origin(
    aws: Settings, handlers: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALLOWED_ORIGINS", raising=False)
    origins.policy_from_env.cache_clear()
    try:
        result = handlers["authorize"].handler(connect_event("https://anything.example.net"), FakeContext())
    finally:
        origins.policy_from_env.cache_clear()
    assert effect(result) == "Allow"


@pytest.mark.parametrize(
    "entry", ["https://app.example.com/path", "ftp://files.example.com", "app.example.com", "https://"]
)
def test_a_misconfigured_entry_is_a_clear_error_not_a_silent_mismatch(entry: str) -> None:
    with pytest.raises(origins.InvalidOrigin, match="origin"):
        origins.OriginPolicy.parse(f"https://ok.example.com,{entry}")
