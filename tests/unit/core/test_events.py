"""Job event schema v1 and publishing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tidings_core import events

SAMPLE = json.loads((Path(__file__).parents[2] / "events" / "eventbridge_job_progress.json").read_text())


def test_the_captured_sample_validates() -> None:
    event = events.parse_job_event(SAMPLE["detail"])
    assert (
        event.jobId == "job-1" and event.seq == 7 and event.segments and event.segments[1].state == "running"
    )


def test_json_text_detail_is_accepted() -> None:
    assert events.parse_job_event(json.dumps(SAMPLE["detail"])).percent == 42.5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 2),
        ("seq", -1),
        ("seq", "seven"),
        ("stage", "dancing"),
        ("percent", 101),
        ("percent", -0.1),
        ("emittedAt", 0),
        ("jobId", ""),
        ("jobId", "has space"),
        ("userId", "x" * 129),
        ("segments", [{"index": 0, "percent": 5, "state": "lost"}]),
        ("error", {"message": "no code"}),
    ],
)
def test_invalid_fields_are_rejected_with_their_names(field: str, value: Any) -> None:
    detail = {**SAMPLE["detail"], field: value}
    with pytest.raises(events.InvalidJobEvent) as caught:
        events.parse_job_event(detail)
    assert field in caught.value.reason


@pytest.mark.parametrize("missing", ["jobId", "userId", "seq", "stage", "percent", "emittedAt"])
def test_required_fields(missing: str) -> None:
    detail = {k: v for k, v in SAMPLE["detail"].items() if k != missing}
    with pytest.raises(events.InvalidJobEvent):
        events.parse_job_event(detail)


@pytest.mark.parametrize("detail", [None, "not json", 5, []])
def test_non_objects_are_rejected(detail: Any) -> None:
    with pytest.raises(events.InvalidJobEvent):
        events.parse_job_event(detail)


def test_unknown_fields_are_ignored() -> None:
    event = events.parse_job_event({**SAMPLE["detail"], "futureField": 1})
    assert "futureField" not in events.as_json_value(event)


class FakeEvents:
    def __init__(self, failed: int = 0) -> None:
        self.failed = failed
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        if self.failed:
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "Throttled", "ErrorMessage": "slow"}]}
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]}


def test_publish_sends_source_detail_type_and_bus() -> None:
    client = FakeEvents()
    event = events.parse_job_event(SAMPLE["detail"])
    assert events.publish_job_event(event, bus_name="bus", client=client) == "e-1"  # type: ignore[arg-type]
    [entry] = client.entries
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        "tidings.transcode",
        "JobProgress",
        "bus",
    )
    assert json.loads(entry["Detail"])["seq"] == 7


def test_publish_raises_on_failed_entries() -> None:
    with pytest.raises(events.PublishError, match="Throttled"):
        events.publish_job_event(
            events.parse_job_event(SAMPLE["detail"]),
            bus_name="bus",
            client=FakeEvents(failed=1),  # type: ignore[arg-type]
        )
