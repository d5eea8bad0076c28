"""The Step Functions steps end to end against a moto server (ffmpeg range-reads presigned URLs),
with the real registry for seq and segment percents, and the handlers' failure path."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from testkit import load_handler  # tests/testkit.py
from transcoder import steps, storage
from transcoder.errors import CorruptInput
from transcoder.sinks import BusSink

from tidings_core import config, models, registry
from tidings_core.events import JobEvent

from .conftest import Clips, decode_gray


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[storage.WorkerSettings]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "CONNECTIONS_TABLE": "t-connections",
        "SUBSCRIPTIONS_TABLE": "t-subscriptions",
        "JOBS_TABLE": "t-jobs",
        "EVENT_BUS_NAME": "t-bus",
        "INPUT_BUCKET": "t-input",
        "OUTPUT_BUCKET": "t-output",
        "WORK_BUCKET": "t-work",
        "SEGMENT_SECONDS": "1",
        "POWERTOOLS_SERVICE_NAME": "tidings",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        config.settings.cache_clear()
        storage.s3.cache_clear()
        for model in models.ALL_MODELS:
            monkeypatch.setattr(model, "_connection", None)
        models.create_tables(config.settings())
        registry.configure(config.settings())
        s3 = boto3.client("s3")
        for bucket in ("t-input", "t-output", "t-work"):
            s3.create_bucket(Bucket=bucket)
        yield storage.WorkerSettings.from_env()
    finally:
        storage.s3.cache_clear()
        config.settings.cache_clear()
        server.stop()


def upload(path: Path, key: str) -> None:
    boto3.client("s3").upload_file(str(path), "t-input", key)


def s3_event(key: str) -> dict[str, Any]:
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "t-input"}, "object": {"key": key}},
    }


def test_plan_segments_audio_merge(
    ffmpeg: str, clips: Clips, stack: storage.WorkerSettings, tmp_path: Path
) -> None:
    published: list[JobEvent] = []
    sink = BusSink(publish=published.append)
    key = "uploads/alice/job-7/main.mp4"
    registry.create_job("job-7", "alice")
    upload(clips.main, key)

    plan = json.loads(json.dumps(steps.plan_step(s3_event(key), stack, sink)))  # through JSON, as in AWS
    assert plan["segments"] == [0, 1, 2, 3]
    for index in reversed(plan["segments"]):  # any order, as a Map runs them
        assert steps.segment_step({"job": plan["job"], "segment": index}, sink, concurrency=4)["frames"] == 25
    assert steps.audio_step({"job": plan["job"]}) == {"audio": True}
    result = steps.merge_step({"job": plan["job"]}, sink)

    output = tmp_path / "downloaded.mp4"
    boto3.client("s3").download_file("t-output", result["output"]["key"], str(output))
    assert result["output"]["key"] == "outputs/alice/job-7/main-720p.mp4"
    _, _, frames = decode_gray(ffmpeg, output)
    assert len(frames) == 100
    poster = (
        boto3.client("s3").get_object(Bucket="t-output", Key=result["output"]["posterKey"])["Body"].read()
    )
    assert poster[:3] == b"\xff\xd8\xff"
    assert boto3.client("s3").list_objects_v2(Bucket="t-work").get("KeyCount") == 0  # intermediates removed

    assert [e.seq for e in published] == list(range(1, len(published) + 1))
    assert [e.stage for e in published][:2] == ["probing", "probing"]
    assert published[-1].stage == "completed" and published[-1].percent == 100
    transcoding = [e for e in published if e.stage == "transcoding"]
    assert [e.percent for e in transcoding] == sorted(e.percent for e in transcoding)
    assert transcoding[-1].percent == 92.0  # every segment recorded 100 in the registry
    stored = registry.get_job("job-7")
    assert stored is not None and int(stored.progress_seq) == published[-1].seq


def test_corrupt_upload_fails_through_the_handlers(clips: Clips, stack: storage.WorkerSettings) -> None:
    key = "uploads/bob/job-8/corrupt.mp4"
    registry.create_job("job-8", "bob")
    upload(clips.corrupt, key)
    published: list[JobEvent] = []
    sink = BusSink(publish=published.append)
    with pytest.raises(CorruptInput) as caught:
        steps.plan_step(s3_event(key), stack, sink)
    # what Step Functions hands the Catch: the error name and the Lambda error document
    error = {"Error": type(caught.value).__name__, "Cause": json.dumps({"errorMessage": str(caught.value)})}
    report = steps.fail_step({**s3_event(key), "error": error}, stack, sink)
    assert report["published"] is True
    failed = published[-1]
    assert failed.stage == "failed" and failed.error is not None
    assert (failed.error.code, failed.error.retryable) == ("corrupt_input", False)
    assert "not a readable media file" in failed.error.message
    assert [e.seq for e in published] == list(range(1, len(published) + 1))


def test_plan_handler_refuses_an_upload_for_someone_elses_job(
    clips: Clips, stack: storage.WorkerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_handler("transcode_worker")
    registry.create_job("job-9", "alice")
    key = "uploads/mallory/job-9/main.mp4"
    upload(clips.main, key)
    with pytest.raises(app.UnknownJob):
        app.plan_handler(s3_event(key), FakeContext())
    published: list[JobEvent] = []
    monkeypatch.setattr(app, "sink", BusSink(publish=published.append))
    error = {"Error": "UnknownJob", "Cause": "{}"}
    assert app.fail_handler({**s3_event(key), "error": error}, FakeContext()) == {"published": False}
    assert published == []  # alice's job hears nothing about mallory's upload


class FakeContext:
    function_name = "transcode-test"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:transcode-test"
    aws_request_id = "00000000-0000-0000-0000-000000000001"
