"""The client protocol `tidings.v1`: client frames, server replies and job messages (`docs/protocol.md`)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the event schema stays out of handlers that never see a job event
    from .events import JobEvent

SUBPROTOCOL = "tidings.v1"
MAX_FRAME_BYTES = 4096  # application limit on a client frame (API Gateway allows 32 KB)
MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's limit on one @connections post
SNAPSHOT_JOB_LIMIT = 50  # jobs in a `user:` snapshot, newest first
MAX_PING_ID_CHARS = 128
TOPIC_PATTERN = re.compile(r"^(job|user):([A-Za-z0-9_.:@-]{1,128})$")
# dropped in this order when a job message would exceed MAX_MESSAGE_BYTES
_SHEDDABLE_FIELDS = ("segments", "warnings", "input", "output")
_OPTIONAL_EVENT_FIELDS = (
    "etaSeconds", "speed", "fps", "frames", "totalFrames", "segments", "input", "output", "error", "warnings",
)  # fmt: skip

ErrorCode = Literal[
    "bad_json", "unknown_action", "bad_topic", "forbidden", "not_found", "too_large", "rate_limited",
    "internal",
]  # fmt: skip


class ProtocolError(Exception):
    """A client frame the server refuses; becomes an `error` reply, the connection stays open."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


class MessageTooLarge(ValueError):
    """A server message that cannot fit in one post even after shedding optional fields."""


@dataclass(frozen=True, slots=True)
class Topic:
    kind: Literal["job", "user"]
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class Subscribe:
    topic: Topic


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topic: Topic


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | int | None = None


ClientAction = Subscribe | Unsubscribe | Ping


def job_topic(job_id: str) -> str:
    return f"job:{job_id}"


def user_topic(user_id: str) -> str:
    return f"user:{user_id}"


def parse_topic(value: Any) -> Topic:
    if not isinstance(value, str) or not (match := TOPIC_PATTERN.fullmatch(value)):
        raise ProtocolError("bad_topic", "topic must be job:<id> or user:<id>, id 1-128 of [A-Za-z0-9_.:@-]")
    kind: Literal["job", "user"] = "job" if match.group(1) == "job" else "user"
    return Topic(kind, match.group(2))


def parse_frame(body: str | bytes | None) -> ClientAction:
    """Parse one client frame; raises ProtocolError with the reply's error code."""
    raw = body.encode() if isinstance(body, str) else (body or b"")
    if len(raw) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("bad_json", "the frame is not a JSON object") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_json", "the frame is not a JSON object")
    action = frame.get("action")
    if action == "subscribe":
        return Subscribe(parse_topic(frame.get("topic")))
    if action == "unsubscribe":
        return Unsubscribe(parse_topic(frame.get("topic")))
    if action == "ping":
        ping_id = frame.get("id")
        valid = ping_id is None or (isinstance(ping_id, int) and not isinstance(ping_id, bool))
        if not valid and not (isinstance(ping_id, str) and len(ping_id) <= MAX_PING_ID_CHARS):
            raise ProtocolError("bad_json", f"ping id must be a number or a string of <= {MAX_PING_ID_CHARS}")
        return Ping(ping_id)
    raise ProtocolError("unknown_action", "action must be one of subscribe, unsubscribe, ping")


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def offered_subprotocols(headers: Mapping[str, str] | None) -> list[str]:
    """The values of `Sec-WebSocket-Protocol` (any header case), in the client's order."""
    value = _header(headers, "sec-websocket-protocol") or ""
    return [part.strip() for part in value.split(",") if part.strip()]


def offers_subprotocol(headers: Mapping[str, str] | None) -> bool:
    return SUBPROTOCOL in offered_subprotocols(headers)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def subscribed(topic: Topic) -> dict[str, Any]:
    return {"type": "subscribed", "topic": str(topic)}


def snapshot(topic: Topic, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "snapshot", "topic": str(topic), "jobs": jobs}


def unsubscribed(topic: Topic) -> dict[str, Any]:
    return {"type": "unsubscribed", "topic": str(topic)}


def pong(ping: Ping) -> dict[str, Any]:
    return {"type": "pong", "id": ping.id, "serverTime": now_ms()}


def error(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def job_message(event: JobEvent, *, sent_at: int | None = None) -> dict[str, Any]:
    """The server message for a job event; `type` is the terminal stage or `progress`."""
    kind = event.stage if event.stage in ("completed", "failed") else "progress"
    message: dict[str, Any] = {
        "type": kind,
        "jobId": event.jobId,
        "userId": event.userId,
        "seq": event.seq,
        "stage": event.stage,
        "percent": event.percent,
        "emittedAt": event.emittedAt,
        "sentAt": now_ms() if sent_at is None else sent_at,
    }
    from .events import as_json_value  # imported already wherever there is an event

    for name in _OPTIONAL_EVENT_FIELDS:
        value = getattr(event, name)
        if value is not None:
            message[name] = as_json_value(value)
    return message


def _dump(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _shed(message: dict[str, Any]) -> dict[str, Any]:
    trimmed = {k: v for k, v in message.items() if k not in _SHEDDABLE_FIELDS}
    if len(trimmed) != len(message):
        trimmed["truncated"] = True
    return trimmed


def encode(message: dict[str, Any]) -> bytes:
    """Compact JSON of a server message, shedding bulky optional fields to stay under 128 KB.

    A job message loses segments, warnings, input and output (and gains `truncated: true`); a
    snapshot loses them from every job, then its oldest jobs. Raises MessageTooLarge otherwise.
    """
    data = _dump(message)
    if len(data) <= MAX_MESSAGE_BYTES:
        return data
    if isinstance(message.get("jobs"), list):
        jobs = [_shed(job) for job in message["jobs"]]
        while True:
            data = _dump({**message, "jobs": jobs, "truncated": True})
            if len(data) <= MAX_MESSAGE_BYTES or not jobs:
                break
            jobs.pop()  # newest first: the oldest goes
    else:
        data = _dump(_shed(message))
    if len(data) <= MAX_MESSAGE_BYTES:
        return data
    raise MessageTooLarge(f"{message.get('type')} message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
