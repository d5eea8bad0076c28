"""API Gateway WebSocket limits and the pure rules that apply them (no clocks of its own)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MAX_FRAME_BYTES = 32 * 1024
MAX_MESSAGE_BYTES = 128 * 1024
MAX_POST_BYTES = 131_072  # botocore's `Data` shape: max 131072
IDLE_TIMEOUT_S = 600.0
MAX_LIFETIME_S = 7200.0
MAX_AUTHORIZER_RESULT_BYTES = 8 * 1024
# Messages waiting for a slow client before @connections answers 429 (the client's buffer is full)
OUTBOUND_QUEUE_LIMIT = 1024

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_MESSAGE_TOO_BIG = 1009


class ExpiryReason(Enum):
    IDLE = "idle"
    LIFETIME = "lifetime"


@dataclass(frozen=True)
class ConnectionTimeouts:
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_lifetime_s: float = MAX_LIFETIME_S

    def __post_init__(self) -> None:
        if self.idle_timeout_s <= 0 or self.max_lifetime_s <= 0:
            raise ValueError("idle timeout and maximum lifetime must be positive")

    def deadline(self, connected_at_s: float, last_active_s: float) -> tuple[float, ExpiryReason]:
        """When the connection expires if nothing else happens, and why."""
        idle_deadline = last_active_s + self.idle_timeout_s
        lifetime_deadline = connected_at_s + self.max_lifetime_s
        if lifetime_deadline <= idle_deadline:
            return lifetime_deadline, ExpiryReason.LIFETIME
        return idle_deadline, ExpiryReason.IDLE

    def expired(self, now_s: float, connected_at_s: float, last_active_s: float) -> ExpiryReason | None:
        deadline, reason = self.deadline(connected_at_s, last_active_s)
        return reason if now_s >= deadline else None


def post_too_large(size: int) -> bool:
    return size > MAX_POST_BYTES


def disconnect_reason(code: int, reason: str) -> str:
    """The `disconnectReason` API Gateway reports for a close code and the peer's reason text."""
    if code == CLOSE_NO_STATUS:
        return "Client-side close frame status not set"
    if reason:
        return reason
    return {
        CLOSE_NORMAL: "Normal closure",
        CLOSE_GOING_AWAY: "Going away",
        CLOSE_UNSUPPORTED_DATA: "Unsupported data",
        CLOSE_ABNORMAL: "Connection closed abnormally",
        CLOSE_MESSAGE_TOO_BIG: "Message too big",
    }.get(code, f"Closed with status {code}")
