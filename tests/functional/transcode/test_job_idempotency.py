"""Issue 14, item 10: one transcode per job, terminal states final, a second upload refused.

The handlers and steps run against a moto server (as in test_transcode_steps.py); job events go
through `registry.claim_job_event`, the write notify makes, so the stored state is what
subscribers would see.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from testkit import load_handler  # tests/testkit.py
from transcoder import steps, storage
from transcoder.errors import UploadMismatch
from transcoder.sinks import BusSink

from tidings_core import protocol, registry
from tidings_core.events import JobEvent

from .conftest import Clips
from .test_transcode_steps import FakeContext, s3_event, stack, upload  # noqa: F401 - the fixture

# moto's backends live as long as the process, so every test uses its own job ids
JOB = ""
KEY = ""


@pytest.fixture(autouse=True)
def job_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = uuid.uuid4().hex
    monkeypatch.setitem(globals(), "JOB", job_id)
    monkeypatch.setitem(globals(), "KEY", f"uploads/alice/{job_id}/main.mp4")


def notify_store(event: JobEvent) -> None:
    """What notify stores for a published event (delivery itself is tested elsewhere)."""
    registry.claim_job_event(
        event.jobId, event.userId, event.seq, event.stage, event.percent, protocol.job_message(event)
    )


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, stack: storage.WorkerSettings) -> ModuleType:  # noqa: F811
    module = load_handler("transcode_worker")
    monkeypatch.setattr(module, "sink", BusSink(publish=notify_store))
    return module


def create(clips: Clips, *, declared: int | None = None) -> None:
    size = clips.main.stat().st_size
    registry.create_job(JOB, "alice", input={"bucket": "t-input", "key": KEY, "sizeBytes": declared or size})


def planned(app: ModuleType, execution: str) -> dict[str, Any]:
    result: dict[str, Any] = app.plan_handler({**s3_event(KEY), "executionId": execution}, FakeContext())
    return result


def state() -> tuple[str | None, float, int, int]:
    job = registry.get_job(JOB)
    assert job is not None
    return job.stage, float(job.percent or 0), int(job.seq), int(job.progress_seq)


def test_a_second_execution_mid_transcode_is_ignored(clips: Clips, app: ModuleType) -> None:
    """The re-PUT mid-transcode race: the second execution must not restart the job at 0%."""
    create(clips)
    upload(clips.main, KEY)
    plan = planned(app, "exec-1")
    steps.segment_step({"job": plan["job"], "segment": 0}, BusSink(publish=notify_store), concurrency=4)
    before = state()
    assert before[0] == "transcoding" and before[1] > 0

    with pytest.raises(app.DuplicateUpload):
        planned(app, "exec-2")  # a second upload (or a redelivered S3 event) started another execution
    assert state() == before  # no probing at 0%, no seq taken
    job = registry.get_job(JOB)
    assert job is not None and job.transcode_execution == "exec-1"
    assert planned(app, "exec-1")["segmentCount"] == plan["segmentCount"]  # its own retry still runs
    storage.delete_prefix(
        plan["job"]["work"]["bucket"], plan["job"]["work"]["prefix"]
    )  # moto is process-wide


def test_an_upload_after_completion_neither_runs_nor_fails_the_job(clips: Clips, app: ModuleType) -> None:
    create(clips)
    upload(clips.main, KEY)
    plan = planned(app, "exec-1")
    sink = BusSink(publish=notify_store)
    for index in plan["segments"]:
        steps.segment_step({"job": plan["job"], "segment": index}, sink, concurrency=4)
    steps.audio_step({"job": plan["job"]})
    steps.merge_step({"job": plan["job"]}, sink)
    assert state()[0] == "completed"

    with pytest.raises(app.DuplicateUpload):
        planned(app, "exec-2")
    # the second execution's catch-all would report a failure: it can change nothing
    error = {"Error": "DuplicateUpload", "Cause": "{}"}
    assert app.fail_handler({**s3_event(KEY), "error": error}, FakeContext()) == {"published": False}
    assert state()[:2] == ("completed", 100.0)


def test_a_late_event_cannot_turn_completed_into_failed(app: ModuleType, clips: Clips) -> None:
    create(clips)
    message: Callable[[int, str], dict[str, Any]] = lambda seq, stage: {"seq": seq, "stage": stage}  # noqa: E731
    assert registry.claim_job_event(JOB, "alice", 5, "completed", 100, message(5, "completed")).claim is (
        registry.Claim.NEW
    )
    late = registry.claim_job_event(JOB, "alice", 6, "failed", 40, message(6, "failed"))
    assert late.claim is registry.Claim.STALE
    assert late.stored_seq == 5
    assert state()[:3] == ("completed", 100.0, 5)
    # failed is final too
    other = uuid.uuid4().hex
    registry.create_job(other, "alice")
    registry.claim_job_event(other, "alice", 3, "failed", 10, message(3, "failed"))
    assert registry.claim_job_event(other, "alice", 4, "transcoding", 50, message(4, "x")).claim is (
        registry.Claim.STALE
    )


def test_an_upload_of_another_size_than_declared_is_refused_before_transcoding(
    clips: Clips, app: ModuleType
) -> None:
    create(clips, declared=clips.main.stat().st_size + 1)
    upload(clips.main, KEY)
    with pytest.raises(UploadMismatch, match="declared"):
        planned(app, "exec-1")
    assert state()[0] == "queued"


def test_the_presigned_upload_refuses_a_second_put(stack: storage.WorkerSettings) -> None:  # noqa: F811
    """The signed `If-None-Match: *`: S3 (here moto) answers 412 to a re-PUT of the key."""
    uploads = load_handler("uploads", "upload_rules")
    request = uploads.UploadRequest("clip.mp4", "video/mp4", 5)
    signer = boto3.client("s3", config=Config(signature_version="s3v4"))  # as src/uploads/app.py
    form = uploads.presigned_put(signer, "t-input", KEY, request)
    assert "content-length" in form["url"].lower() and "if-none-match" in form["url"].lower()
    first = requests.put(form["url"], data=b"12345", headers=form["headers"], timeout=10)
    assert first.status_code == 200
    again = requests.put(form["url"], data=b"54321", headers=form["headers"], timeout=10)
    assert again.status_code == 412
    body = boto3.client("s3").get_object(Bucket="t-input", Key=KEY)["Body"].read()
    assert body == b"12345"
