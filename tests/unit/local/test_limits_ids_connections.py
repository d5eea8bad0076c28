"""Limits, ids and the connection registry: pure rules fed with values."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.local import limits
from tidings.local.connections import ConnectionRegistry, ConnectionState, iso8601
from tidings.local.ids import is_connection_id, new_id, trace_id
from tidings.local.limits import ConnectionTimeouts, ExpiryReason


def test_ids_look_like_aws_ids() -> None:
    ids = {new_id() for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        assert len(value) == 16 and value.endswith("=")
        assert is_connection_id(value)
        assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


def test_ids_are_base64_of_the_random_bytes() -> None:
    assert new_id(lambda n: bytes(range(n))) == base64.urlsafe_b64encode(bytes(range(11))).decode()
    assert new_id(lambda n: b"\xff" * n) == "______________8="


@pytest.mark.parametrize(
    "value", ["", "abc", "BFaT_fALIAMCKug", "BFaT_fALIAMCKug==", "BFaT+fALIAMCKug=", "!!!!!!!!!!!!!!!="]
)
def test_not_connection_ids(value: str) -> None:
    assert not is_connection_id(value)


def test_trace_id_shape() -> None:
    assert trace_id(0x6731F0AA, lambda n: b"\x01" * n) == "Root=1-6731f0aa-" + "01" * 12


def test_idle_deadline_moves_with_activity() -> None:
    timeouts = ConnectionTimeouts(idle_timeout_s=600, max_lifetime_s=7200)
    assert timeouts.deadline(1000, 1000) == (1600, ExpiryReason.IDLE)
    assert timeouts.deadline(1000, 1500) == (2100, ExpiryReason.IDLE)
    assert timeouts.expired(1599, 1000, 1000) is None
    assert timeouts.expired(1600, 1000, 1000) is ExpiryReason.IDLE


def test_lifetime_wins_near_the_two_hour_mark() -> None:
    timeouts = ConnectionTimeouts()
    connected = 10_000.0
    active = connected + 7000
    assert timeouts.deadline(connected, active) == (connected + 7200, ExpiryReason.LIFETIME)
    assert timeouts.expired(connected + 7200, connected, connected + 7199) is ExpiryReason.LIFETIME


@given(st.floats(0, 1e6), st.floats(0, 1e4), st.floats(0.1, 1e4), st.floats(0.1, 1e4))
def test_deadline_never_exceeds_either_limit(
    connected: float, idle_for: float, idle: float, life: float
) -> None:
    timeouts = ConnectionTimeouts(idle, life)
    last_active = connected + idle_for
    deadline, reason = timeouts.deadline(connected, last_active)
    assert deadline <= connected + life and deadline <= last_active + idle
    assert deadline == (connected + life if reason is ExpiryReason.LIFETIME else last_active + idle)


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ConnectionTimeouts(0, 10)


def test_sizes_and_reasons() -> None:
    assert limits.MAX_FRAME_BYTES == 32_768 and limits.MAX_MESSAGE_BYTES == 131_072
    assert not limits.post_too_large(131_072) and limits.post_too_large(131_073)
    assert limits.disconnect_reason(1005, "") == "Client-side close frame status not set"
    assert limits.disconnect_reason(1001, "") == "Going away"
    assert limits.disconnect_reason(4000, "bye") == "bye"
    assert limits.disconnect_reason(4001, "") == "Closed with status 4001"


def test_registry_lifecycle() -> None:
    registry = ConnectionRegistry()
    record = registry.begin("AAAAAAAAAAAAAAA=", 1731332746.5, "203.0.113.7", "ua/1")
    assert record.state is ConnectionState.CONNECTING
    assert registry.get_open("AAAAAAAAAAAAAAA=") is None  # C5: still connecting
    assert registry.info("AAAAAAAAAAAAAAA=") is None
    registry.open("AAAAAAAAAAAAAAA=")
    registry.touch("AAAAAAAAAAAAAAA=", 1731332750.25, inbound=True)
    registry.touch("AAAAAAAAAAAAAAA=", 1731332749.0, inbound=False)  # time never moves back
    assert registry.info("AAAAAAAAAAAAAAA=") == {
        "connectedAt": "2024-11-11T13:45:46.500Z",
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "ua/1"},
        "lastActiveAt": "2024-11-11T13:45:50.250Z",
    }
    assert record.connected_at_ms == 1731332746500
    [row] = registry.live()
    assert (row["messagesIn"], row["messagesOut"], row["principalId"]) == (1, 1, None)
    with pytest.raises(ValueError):
        registry.begin("AAAAAAAAAAAAAAA=", 0, "", "")
    assert registry.remove("AAAAAAAAAAAAAAA=") is record
    assert registry.get("AAAAAAAAAAAAAAA=") is None and len(registry) == 0
    registry.touch("AAAAAAAAAAAAAAA=", 1, inbound=True)  # a late touch on a gone id is harmless


def test_principal_comes_from_the_authorizer() -> None:
    registry = ConnectionRegistry()
    record = registry.begin("BBBBBBBBBBBBBBB=", 0, "", "")
    record.authorizer = {"principalId": "alice", "userId": "alice"}
    assert record.principal_id == "alice"
    assert record.summary()["principalId"] == "alice"


def test_iso8601_is_parsed_by_botocore() -> None:
    from botocore.utils import parse_timestamp

    assert parse_timestamp(iso8601(1731332746.012)).timestamp() == pytest.approx(1731332746.012)
