"""Job events on the bus, schema version 1 (`docs/events.md`).

Unknown fields are ignored, so a publisher may add optional fields within version 1 without
breaking older notifiers; a breaking change gets a new `version`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import settings

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "tidings.transcode"
DETAIL_TYPE = "JobProgress"
MAX_ENTRY_BYTES = 256 * 1024  # EventBridge's PutEvents entry limit
ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"

Stage = Literal["queued", "probing", "transcoding", "merging", "completed", "failed"]
TERMINAL_STAGES: frozenset[str] = frozenset({"completed", "failed"})


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Segment(_Part):
    index: int = Field(ge=0)
    percent: float = Field(ge=0, le=100)
    state: Literal["pending", "running", "done", "failed"]
    frames: int | None = Field(default=None, ge=0)


class InputInfo(_Part):
    bucket: str
    key: str
    durationSeconds: float | None = Field(default=None, ge=0)
    width: int | None = Field(default=None, ge=0)
    height: int | None = Field(default=None, ge=0)
    fps: float | None = Field(default=None, ge=0)


class OutputInfo(_Part):
    bucket: str
    key: str
    posterKey: str | None = None
    durationSeconds: float | None = Field(default=None, ge=0)
    sizeBytes: int | None = Field(default=None, ge=0)
    elapsedSeconds: float | None = Field(default=None, ge=0)


class JobError(_Part):
    code: str
    message: str
    retryable: bool = False


class JobEvent(_Part):
    """The `detail` of a `JobProgress` event."""

    version: Literal[1] = 1
    jobId: str = Field(pattern=ID_PATTERN)
    userId: str = Field(pattern=ID_PATTERN)
    seq: int = Field(ge=0)
    stage: Stage
    percent: float = Field(ge=0, le=100)
    emittedAt: int = Field(gt=0)  # epoch ms
    etaSeconds: float | None = Field(default=None, ge=0)
    speed: float | None = Field(default=None, ge=0)
    fps: float | None = Field(default=None, ge=0)
    frames: int | None = Field(default=None, ge=0)
    totalFrames: int | None = Field(default=None, ge=0)
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


def parse_job_event(detail: Any) -> JobEvent:
    """Validate an event's detail (a dict, or JSON text as some targets deliver it)."""
    try:
        if isinstance(detail, str | bytes):
            return JobEvent.model_validate_json(detail)
        return JobEvent.model_validate(detail)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "detail" for err in exc.errors()})
        raise InvalidJobEvent(f"invalid job event fields: {', '.join(fields)}") from None


def detail_json(detail: JobEvent) -> str:
    return detail.model_dump_json(exclude_none=True)


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
