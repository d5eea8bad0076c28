"""The connection registry, pure: what the gateway knows about each connection.

Every operation is a dict access (O(1)); the @connections API and the console read from here.
Times are epoch seconds passed in by the caller (clocks are injected, never read here).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any


class ConnectionState(Enum):
    CONNECTING = "connecting"  # authorizer / $connect running: posts answer 410 (C5)
    OPEN = "open"


@dataclass
class ConnectionRecord:
    connection_id: str
    connected_at_s: float
    source_ip: str
    user_agent: str
    last_active_s: float
    state: ConnectionState = ConnectionState.CONNECTING
    # `requestContext.authorizer` for every event of this connection (principalId + context)
    authorizer: dict[str, Any] | None = None
    messages_in: int = 0
    messages_out: int = 0

    @property
    def connected_at_ms(self) -> int:
        return round(self.connected_at_s * 1000)

    @property
    def principal_id(self) -> str | None:
        if self.authorizer is None:
            return None
        principal = self.authorizer.get("principalId")
        return None if principal is None else str(principal)

    def summary(self) -> dict[str, Any]:
        """One row of the live connection list (console, logs)."""
        return {
            "connectionId": self.connection_id,
            "principalId": self.principal_id,
            "state": self.state.value,
            "sourceIp": self.source_ip,
            "connectedAt": iso8601(self.connected_at_s),
            "lastActiveAt": iso8601(self.last_active_s),
            "messagesIn": self.messages_in,
            "messagesOut": self.messages_out,
        }


def iso8601(epoch_s: float) -> str:
    """`2024-11-11T13:45:46.000Z`, the format of GetConnection's timestamps."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class ConnectionRegistry:
    _records: dict[str, ConnectionRecord] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[ConnectionRecord]:
        return iter(list(self._records.values()))

    def begin(self, connection_id: str, now_s: float, source_ip: str, user_agent: str) -> ConnectionRecord:
        if connection_id in self._records:
            raise ValueError(f"connection id {connection_id} is already in use")
        record = ConnectionRecord(connection_id, now_s, source_ip, user_agent, last_active_s=now_s)
        self._records[connection_id] = record
        return record

    def open(self, connection_id: str) -> ConnectionRecord:
        record = self._records[connection_id]
        record.state = ConnectionState.OPEN
        return record

    def get(self, connection_id: str) -> ConnectionRecord | None:
        return self._records.get(connection_id)

    def get_open(self, connection_id: str) -> ConnectionRecord | None:
        """The record when the connection can receive messages; None means 410 Gone."""
        record = self._records.get(connection_id)
        if record is None or record.state is not ConnectionState.OPEN:
            return None
        return record

    def touch(self, connection_id: str, now_s: float, *, inbound: bool | None = None) -> None:
        """Record activity; `inbound` True/False also counts a message in/out, None only moves the time."""
        record = self._records.get(connection_id)
        if record is None:
            return
        record.last_active_s = max(record.last_active_s, now_s)
        if inbound is True:
            record.messages_in += 1
        elif inbound is False:
            record.messages_out += 1

    def remove(self, connection_id: str) -> ConnectionRecord | None:
        return self._records.pop(connection_id, None)

    def info(self, connection_id: str) -> dict[str, Any] | None:
        """The GetConnection response body, or None (410) when not open."""
        record = self.get_open(connection_id)
        if record is None:
            return None
        return {
            "connectedAt": iso8601(record.connected_at_s),
            "identity": {"sourceIp": record.source_ip, "userAgent": record.user_agent},
            "lastActiveAt": iso8601(record.last_active_s),
        }

    def live(self) -> list[dict[str, Any]]:
        return [record.summary() for record in self._records.values()]
