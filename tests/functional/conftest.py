"""Handlers under moto with tables created from the pynamodb models, and a fake management API.

moto's post_to_connection never answers 410 or 429, so the management client is replaced at
the push.py seam by `FakeManagement`, which can answer like API Gateway does for chosen ids.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from testkit import load_handler  # tests/testkit.py

from tidings_core import config, models, push, registry, tokens
from tidings_core.config import Settings

EVENTS = Path(__file__).resolve().parents[1] / "events"
SECRET = "functional-test-signing-key-0123456789abcdef"
CALLBACK_URL = "https://abcdef1234.execute-api.us-east-1.amazonaws.com/dev"
CONNECTED_AT = 1_731_332_746_000
# Powertools reads these when a handler module is imported (module-level Logger/Metrics)
POWERTOOLS_ENV = {
    "POWERTOOLS_SERVICE_NAME": "tidings",
    "POWERTOOLS_METRICS_NAMESPACE": "Tidings",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return loaded


@dataclass
class FakeContext:
    function_name: str = "tidings-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tidings-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


class GoneException(ClientError):
    """botocore's modeled exception for a 410 that carries the GoneException error type."""


def gone_typed() -> ClientError:
    return GoneException(
        {"Error": {"Code": "GoneException", "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": 410}},
        "PostToConnection",
    )


def gone_bare() -> ClientError:
    return ClientError(
        {"Error": {"Code": "410", "Message": "Gone"}, "ResponseMetadata": {"HTTPStatusCode": 410}},
        "PostToConnection",
    )


def throttled() -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "LimitExceededException", "Message": ""},
            "ResponseMetadata": {"HTTPStatusCode": 429},
        },
        "PostToConnection",
    )


@dataclass
class FakeManagement:
    """Records delivered posts; `script[id]` lists errors to raise on that id's next posts."""

    script: dict[str, list[Exception]] = field(default_factory=dict)
    posted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        with self.lock:
            self.calls[ConnectionId] += 1
            steps = self.script.get(ConnectionId)
            error = steps.pop(0) if steps else None
            if error is None:
                self.posted.append((ConnectionId, json.loads(Data)))
        if error is not None:
            raise error
        return {}

    def to(self, connection_id: str) -> list[dict[str, Any]]:
        return [message for cid, message in self.posted if cid == connection_id]


# The functions' environment under moto (TOKEN_SECRET_ARN is added once the secret exists)
FUNCTION_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "CONNECTIONS_TABLE": "tidings-connections",
    "SUBSCRIPTIONS_TABLE": "tidings-subscriptions",
    "JOBS_TABLE": "tidings-jobs",
    "FANOUT_TABLE": "tidings-fanout",
    "DELIVER_FUNCTION": "tidings-deliver",
    "CALLBACK_URL": CALLBACK_URL,
    "TOKEN_AUDIENCE": "tidings",
    "EVENT_BUS_NAME": "tidings-jobs",
    **POWERTOOLS_ENV,
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    for name, value in FUNCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        secret = boto3.client("secretsmanager").create_secret(Name="tidings-token", SecretString=SECRET)
        monkeypatch.setenv("TOKEN_SECRET_ARN", secret["ARN"])
        config.settings.cache_clear()
        for model in models.ALL_MODELS:
            monkeypatch.setattr(model, "_connection", None)
        settings = config.settings()
        models.create_tables(settings)
        registry.configure(settings)
        monkeypatch.setattr(registry, "QUERY_PAGE_SIZE", 7)  # force many Query pages
        yield settings
    config.settings.cache_clear()


@pytest.fixture
def management(monkeypatch: pytest.MonkeyPatch) -> FakeManagement:
    fake = FakeManagement()
    pusher = push.Pusher(fake, sleep=lambda _: None)  # type: ignore[arg-type]
    monkeypatch.setattr(push, "pusher", lambda: pusher)
    return fake


@pytest.fixture(scope="session")
def handlers() -> Iterator[dict[str, ModuleType]]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in POWERTOOLS_ENV.items():
            patch.setenv(name, value)
        yield {
            name: load_handler(name)
            for name in ("authorize", "connect", "disconnect", "subscribe", "notify", "deliver")
        }


def token(user_id: str = "alice", secret: str = SECRET, ttl: int = 600, audience: str = "tidings") -> str:
    return tokens.issue_token(secret, user_id, ttl, audience)


def ws_event(kind: str, connection_id: str, user_id: str = "alice", body: Any = None) -> dict[str, Any]:
    event = copy.deepcopy(sample(f"websocket_{kind}"))
    context = event["requestContext"]
    context["connectionId"] = connection_id
    context["authorizer"].update(userId=user_id, principalId=user_id)
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
        context["routeKey"] = body.get("action", "$default") if isinstance(body, dict) else "$default"
    return event


def bus_event(event_id: str = "ev-1", **detail: Any) -> dict[str, Any]:
    event = copy.deepcopy(sample("eventbridge_job_progress"))
    event["id"] = event_id
    event["detail"].update(detail)
    return event
