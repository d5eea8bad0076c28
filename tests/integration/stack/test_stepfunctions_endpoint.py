"""The transcoding state machine through `tidings dev`'s AWS endpoint, as a boto3 user sees it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from stack_harness import create_job  # tests/stack_harness.py
from testkit import require_tool  # tests/testkit.py

from .conftest import RunningStack, local_token


def transcode_machine(sfn: Any) -> str:
    [arn] = [
        m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"] if "transcode" in m["name"]
    ]
    return str(arn)


def wait_stopped(sfn: Any, execution_arn: str, limit_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.1)
    raise AssertionError(f"{execution_arn} still RUNNING after {limit_s} s")


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
    return [event for page in pages for event in page["events"]]


def test_start_execution_runs_the_transcoder_to_its_failure_path(tidings_stack: RunningStack) -> None:
    sfn = tidings_stack.boto3_client("stepfunctions")
    upload = {"detail": {"bucket": {"name": "nowhere"}, "object": {"key": "uploads/nobody/nojob/clip.mp4"}}}
    started = sfn.start_execution(stateMachineArn=transcode_machine(sfn), input=json.dumps(upload))
    described = wait_stopped(sfn, started["executionArn"], limit_s=120)
    # Plan refuses a job that does not exist; Catch States.ALL -> ReportFailure -> JobFailed
    assert (described["status"], described["error"]) == ("FAILED", "TranscodeFailed"), described
    events = history(sfn, started["executionArn"])
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    assert entered == ["Plan", "ReportFailure", "JobFailed"]
    assert [e["type"] for e in events][-2:] == ["FailStateEntered", "ExecutionFailed"]
    plan_failure = next(e for e in events if e["type"] == "LambdaFunctionFailed")
    assert plan_failure["lambdaFunctionFailedEventDetails"]["error"] == "UnknownJob"


async def test_an_uploaded_job_runs_an_execution_the_api_describes(
    tidings_stack: RunningStack, tmp_path: Path
) -> None:
    """The S3 upload starts the execution (EventBridge rule); the API shows that very run."""
    from tidings.demo import ffmpeg_exe, make_sample_video

    require_tool("ffmpeg", ffmpeg_exe())
    clip = await asyncio.to_thread(make_sample_video, tmp_path / "clip.mp4", seconds=2.0, size="320x240")
    token = await asyncio.to_thread(local_token, tidings_stack, "sfn-user")
    job_id = await asyncio.to_thread(
        create_job, tidings_stack, token, clip.stat().st_size
    )  # POST /jobs: filename clip.mp4
    s3 = tidings_stack.boto3_client("s3")
    [bucket] = [b["Name"] for b in s3.list_buckets()["Buckets"] if "input" in b["Name"].lower()]
    key = f"uploads/sfn-user/{job_id}/clip.mp4"
    await asyncio.to_thread(s3.put_object, Bucket=bucket, Key=key, Body=clip.read_bytes())
    sfn = tidings_stack.boto3_client("stepfunctions")

    def this_jobs_execution() -> str | None:
        for item in sfn.list_executions(stateMachineArn=transcode_machine(sfn))["executions"]:
            described = sfn.describe_execution(executionArn=item["executionArn"])
            if job_id in described["input"]:
                return str(item["executionArn"])
        return None

    async with asyncio.timeout(30):
        while (execution_arn := await asyncio.to_thread(this_jobs_execution)) is None:  # noqa: ASYNC110 - polling the API
            await asyncio.sleep(0.2)
    described = await asyncio.to_thread(wait_stopped, sfn, execution_arn, 240)
    assert described["status"] == "SUCCEEDED", described
    events = await asyncio.to_thread(history, sfn, execution_arn)
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    assert entered[:3] == ["Plan", "Encode", "Segments"] and entered[-1] == "Merge"
    assert {"EncodeSegment", "EncodeAudio"} <= set(entered)
    types = [e["type"] for e in events]
    assert {"MapRunStarted", "MapRunSucceeded", "ParallelStateSucceeded"} <= set(types)
    assert types[-1] == "ExecutionSucceeded"
