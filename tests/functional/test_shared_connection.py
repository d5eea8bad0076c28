"""Every model shares one pynamodb Connection: one botocore session and client per container
(each extra one cost 60-80 ms of CPU on a cold start, bench/coldstart.py)."""

from __future__ import annotations

import botocore.session
import pytest

from tidings_core import models, registry
from tidings_core.config import Settings
from tidings_core.models import Connection, JobState, ShardCheckpoint, Subscription

from .conftest import CONNECTED_AT


def test_all_tables_are_used_through_one_botocore_client(
    aws: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for model in models.ALL_MODELS:  # as in a fresh container: no connection yet
        monkeypatch.setattr(model, "_connection", None)
    created: list[str] = []
    original = botocore.session.Session.create_client

    def counting(
        self: botocore.session.Session, service_name: str, *args: object, **kwargs: object
    ) -> object:
        created.append(service_name)
        return original(self, service_name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    registry.configure(aws)
    registry.register_connection("c-1", "alice", CONNECTED_AT)
    registry.subscribe("user:alice", "c-1", "alice", CONNECTED_AT)
    registry.create_job("job-1", "alice")
    assert Connection.get("c-1").user_id == "alice"
    assert JobState.get("job-1").user_id == "alice"
    assert list(registry.subscribers(["user:alice"])) == ["c-1"]
    assert ShardCheckpoint.count() == 0
    assert registry.forget_connection("c-1") == 1  # the ByConnection index, through the same client
    assert Subscription.count() == 0
    assert created == ["dynamodb"]
    assert len({model._get_connection().connection for model in models.ALL_MODELS}) == 1
