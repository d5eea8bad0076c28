"""Keys, indexes and TTLs: seconds, longer than a connection's 2-hour life, never milliseconds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tidings_core import models, registry
from tidings_core.config import ConfigError, Settings


def test_connection_ttl_is_seconds_past_the_two_hour_maximum() -> None:
    connected_at = int(time.time() * 1000)
    ttl = registry.connection_ttl(connected_at)
    assert connected_at // 1000 + 7200 < ttl <= connected_at // 1000 + 7200 + 3600
    assert ttl < 10**11  # a seconds value, not milliseconds


@pytest.mark.parametrize("bad", [int(time.time()), int(time.time() * 1_000_000), 0, -5])
def test_connected_at_must_be_milliseconds(bad: int) -> None:
    with pytest.raises(ValueError, match="milliseconds"):
        registry.connection_ttl(bad)


def test_job_ttl_is_seven_days_in_seconds() -> None:
    updated = 1_731_332_762_000
    assert registry.job_ttl(updated) == updated // 1000 + 7 * 86400


def test_table_properties_match_the_documented_keys() -> None:
    conn = models.table_properties(models.Connection)
    assert conn["KeySchema"] == [{"AttributeName": "connectionId", "KeyType": "HASH"}]
    assert conn["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    subs = models.table_properties(models.Subscription)
    assert subs["KeySchema"] == [
        {"AttributeName": "topic", "KeyType": "HASH"},
        {"AttributeName": "connectionId", "KeyType": "RANGE"},
    ]
    [by_connection] = subs["GlobalSecondaryIndexes"]
    assert by_connection == {
        "IndexName": "ByConnection",
        "KeySchema": [
            {"AttributeName": "connectionId", "KeyType": "HASH"},
            {"AttributeName": "topic", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }
    jobs = models.table_properties(models.JobState)
    assert jobs["KeySchema"] == [{"AttributeName": "jobId", "KeyType": "HASH"}]
    [by_user] = jobs["GlobalSecondaryIndexes"]
    assert by_user["IndexName"] == "ByUser" and by_user["Projection"] == {"ProjectionType": "ALL"}
    assert by_user["KeySchema"] == [
        {"AttributeName": "userId", "KeyType": "HASH"},
        {"AttributeName": "updatedAt", "KeyType": "RANGE"},
    ]
    assert {"AttributeName": "updatedAt", "AttributeType": "N"} in jobs["AttributeDefinitions"]


def test_settings_read_the_environment_and_name_missing_variables() -> None:
    settings = Settings.from_env({"JOBS_TABLE": "jobs", "TOKEN_AUDIENCE": ""})
    assert settings.jobs_table == "jobs" and settings.token_audience == "tidings"
    with pytest.raises(ConfigError, match="CALLBACK_URL"):
        settings.require("callback_url")


def test_the_account_throttle_defaults_to_api_gateways_and_refuses_nonsense() -> None:
    default = Settings.from_env({})
    assert (default.management_api_rps, default.management_api_burst) == (10_000.0, 5_000.0)
    raised = Settings.from_env({"MANAGEMENT_API_RPS": "100000", "MANAGEMENT_API_BURST": ""})
    assert (raised.management_api_rps, raised.management_api_burst) == (100_000.0, 5_000.0)
    for bad in ("fast", "0", "-5"):
        with pytest.raises(ConfigError, match="MANAGEMENT_API_RPS"):
            Settings.from_env({"MANAGEMENT_API_RPS": bad})


def test_pynamodb_honours_the_standard_endpoint_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(models.Connection, "_connection", None)  # a fresh client reads the environment
    connection = models.Connection._get_connection().connection
    assert connection.client.meta.endpoint_url == "http://127.0.0.1:4566"


@pytest.mark.parametrize(
    ("logical_id", "model"),
    [
        ("ConnectionsTable", models.Connection),
        ("SubscriptionsTable", models.Subscription),
        ("JobsTable", models.JobState),
        ("FanoutTable", models.ShardCheckpoint),
    ],
)
def test_models_match_the_tables_in_template_yaml(logical_id: str, model: type[Any]) -> None:
    from tidings.local.template import parse_template as load_template

    table = load_template(Path(__file__).resolve().parents[3] / "template.yaml")["Resources"][logical_id][
        "Properties"
    ]
    expected = models.table_properties(model)
    assert (
        sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"])
        == expected["AttributeDefinitions"]
    )
    assert table["KeySchema"] == expected["KeySchema"]
    assert table.get("GlobalSecondaryIndexes") == expected.get("GlobalSecondaryIndexes")
    assert table["TimeToLiveSpecification"] == expected["TimeToLiveSpecification"]
    assert table["BillingMode"] == expected["BillingMode"]
