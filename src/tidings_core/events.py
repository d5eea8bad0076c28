"""Job events on the bus, schema version 1 (`docs/events.md`).

Unknown fields are ignored, so a publisher may add optional fields within version 1 without
breaking older notifiers; a breaking change gets a new `version`.

The schema is declared with msgspec rather than pydantic: notify validates every event, and
pydantic's import and model building cost about 110 ms of CPU on each cold start (Python 3.12,
bench/coldstart.py) against about 15 ms for msgspec, whose typed structs and constraints
(`Meta`) declare the same schema. Numbers are converted as pydantic's lax mode did
(`strict=False`): "7" is an int 7, 42 is a float 42.0.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from .config import settings

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "tidings.transcode"
DETAIL_TYPE = "JobProgress"
MAX_ENTRY_BYTES = 256 * 1024  # EventBridge's PutEvents entry limit
ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"

Stage = Literal["queued", "probing", "transcoding", "merging", "completed", "failed"]
TERMINAL_STAGES: frozenset[str] = frozenset({"completed", "failed"})

Id = Annotated[str, Meta(pattern=ID_PATTERN)]
Count = Annotated[int, Meta(ge=0)]
Amount = Annotated[float, Meta(ge=0)]
Percent = Annotated[float, Meta(ge=0, le=100)]


class _Part(Struct, frozen=True, kw_only=True):
    """Unknown fields are ignored (msgspec's default)."""


class Segment(_Part, frozen=True, kw_only=True):
    index: Count
    percent: Percent
    state: Literal["pending", "running", "done", "failed"]
    frames: Count | None = None


class InputInfo(_Part, frozen=True, kw_only=True):
    bucket: str
    key: str
    durationSeconds: Amount | None = None
    width: Count | None = None
    height: Count | None = None
    fps: Amount | None = None


class OutputInfo(_Part, frozen=True, kw_only=True):
    bucket: str
    key: str
    posterKey: str | None = None
    durationSeconds: Amount | None = None
    sizeBytes: Count | None = None
    elapsedSeconds: Amount | None = None


class JobError(_Part, frozen=True, kw_only=True):
    code: str
    message: str
    retryable: bool = False


class JobEvent(_Part, frozen=True, kw_only=True):
    """The `detail` of a `JobProgress` event."""

    version: Literal[1] = 1
    jobId: Id
    userId: Id
    seq: Count
    stage: Stage
    percent: Percent
    emittedAt: Annotated[int, Meta(gt=0)]  # epoch ms
    etaSeconds: Amount | None = None
    speed: Amount | None = None
    fps: Amount | None = None
    frames: Count | None = None
    totalFrames: Count | None = None
    segments: list[Segment] | None = None
    input: InputInfo | None = None
    output: OutputInfo | None = None
    error: JobError | None = None
    warnings: list[str] | None = None


class InvalidJobEvent(ValueError):
    """The event is not a valid version-1 job event; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PublishError(RuntimeError):
    """EventBridge refused the entry (FailedEntryCount > 0)."""


_AT = re.compile(r" - at `\$([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_INDEX = re.compile(r"\[(\d+)\]")


def _field(error: msgspec.MsgspecError) -> str:
    """The dotted path of the field an error names (`segments.0.state`), "detail" for the whole."""
    text = str(error)
    at = _AT.search(text)
    path = _INDEX.sub(r".\1", at.group(1)).lstrip(".") if at else ""
    if missing := _MISSING.search(text):
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    return path or "detail"


def parse_job_event(detail: Any) -> JobEvent:
    """Validate an event's detail (a dict, or JSON text as some targets deliver it)."""
    try:
        if isinstance(detail, str | bytes):
            return msgspec.json.decode(detail, type=JobEvent, strict=False)
        return msgspec.convert(detail, JobEvent, strict=False)
    except msgspec.MsgspecError as exc:  # ValidationError, or DecodeError for text that is not JSON
        raise InvalidJobEvent(f"invalid job event fields: {_field(exc)}") from None


def as_json_value(value: Any) -> Any:
    """An event, or a part of one, as JSON-ready dicts and lists (None fields kept)."""
    return msgspec.to_builtins(value)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def detail_json(detail: JobEvent) -> str:
    """The event as compact JSON, without its unset (None) fields at any depth."""
    return msgspec.json.encode(_without_none(as_json_value(detail))).decode()


def publish_job_event(
    detail: JobEvent, *, bus_name: str | None = None, client: EventBridgeClient | None = None
) -> str:
    """PutEvents one job event; returns its event id. Raises PublishError when the entry fails."""
    if client is None:
        import boto3  # lazy: only publishers pay for it

        client = boto3.client("events")
    entry = {
        "Source": EVENT_SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": detail_json(detail),
        "EventBusName": bus_name or settings().require("event_bus_name"),
    }
    if len(json.dumps(entry).encode()) > MAX_ENTRY_BYTES:
        raise PublishError(f"job event of {detail.jobId} exceeds {MAX_ENTRY_BYTES} bytes")
    response = client.put_events(Entries=[entry])  # type: ignore[list-item]
    if response.get("FailedEntryCount", 0):
        failed = response["Entries"][0]
        raise PublishError(f"PutEvents failed: {failed.get('ErrorCode')}: {failed.get('ErrorMessage')}")
    return response["Entries"][0]["EventId"]
