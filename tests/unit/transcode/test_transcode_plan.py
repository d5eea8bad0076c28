"""Segment windows, output sizing, the Step Functions state and error mapping, the ASL."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit import SRC
from transcoder import storage
from transcoder.errors import CorruptInput, FfmpegFailed, InternalError, WorkerLost
from transcoder.media import SourceFacts
from transcoder.plan import PRESETS, SegmentPlan, output_size, plan_segments, segment_weights
from transcoder.reporting import JobRef
from transcoder.steps import InvalidRequest, JobPlan, error_from_catch, job_from_input

FPS = [Fraction(25), Fraction(30000, 1001), Fraction(24000, 1001), Fraction(60), Fraction(15, 2)]


@given(
    frames=st.integers(min_value=1, max_value=200_000),
    fps=st.sampled_from(FPS),
    target=st.floats(min_value=0.2, max_value=120),
)
def test_windows_cover_every_frame_exactly_once(frames: int, fps: Fraction, target: float) -> None:
    segments = plan_segments(frames, fps, target_seconds=target, max_segments=500)
    assert [s.index for s in segments] == list(range(len(segments)))
    assert segments[0].start_frame == 0
    for a, b in itertools.pairwise(segments):
        assert b.start_frame == a.start_frame + a.frames
    assert sum(s.frames for s in segments) == frames
    assert max(s.frames for s in segments) - min(s.frames for s in segments) <= 1
    assert len(segments) <= 500


def test_window_sizes_follow_the_target() -> None:
    segments = plan_segments(100, Fraction(25), target_seconds=1.0)
    assert [(s.start_frame, s.frames) for s in segments] == [(0, 25), (25, 25), (50, 25), (75, 25)]
    assert segments[2].start_s == 2.0 and segments[2].duration_s == 1.0


def test_seek_lands_half_a_frame_early_and_not_for_the_first() -> None:
    first, second = plan_segments(60, Fraction(30000, 1001), target_seconds=1.0)
    assert first.seek_s is None
    assert second.seek_s == pytest.approx((30 - 0.5) * 1001 / 30000)


def test_variable_frame_rate_is_one_window() -> None:
    assert [
        (s.start_frame, s.frames) for s in plan_segments(500, Fraction(30), target_seconds=1, split=False)
    ] == [(0, 500)]


def test_bad_plan_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_segments(0, Fraction(25), target_seconds=1)
    with pytest.raises(ValueError):
        plan_segments(10, Fraction(25), target_seconds=0)


def test_weights_are_frame_counts() -> None:
    segments = [SegmentPlan(0, 0, 30, 30, 1), SegmentPlan(1, 30, 10, 30, 1)]
    assert segment_weights(segments) == {0: 30.0, 1: 10.0}


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), (1280, 720)),
        ((1080, 1920), (720, 1280)),  # portrait: the short side is bounded
        ((320, 240), (320, 240)),  # never upscaled
        ((321, 241), (320, 240)),  # even, rounded down
        ((3840, 1600), (1280, 532)),
        ((1280, 718), (1280, 718)),
    ],
)
def test_output_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert output_size(*size, PRESETS["720p"]) == expected


SETTINGS = storage.WorkerSettings.from_env({"INPUT_BUCKET": "in", "OUTPUT_BUCKET": "out"})


def test_job_from_an_s3_object_created_event() -> None:
    event = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "in"}, "object": {"key": "uploads/alice/job-1/clip.mp4", "size": 10}},
    }
    assert job_from_input(event, SETTINGS) == JobRef("job-1", "alice", "in", "uploads/alice/job-1/clip.mp4")


def test_job_from_a_direct_request_and_mismatches() -> None:
    direct = {"key": "uploads/alice/job-1/clip.mp4", "jobId": "job-1", "userId": "alice"}
    assert job_from_input(direct, SETTINGS).bucket == "in"
    with pytest.raises(InvalidRequest):
        job_from_input({**direct, "userId": "mallory"}, SETTINGS)
    with pytest.raises(InvalidRequest):
        job_from_input({"key": "elsewhere/clip.mp4"}, SETTINGS)


def test_job_plan_survives_the_state_machine() -> None:
    facts = SourceFacts(100, 25, 1, 4.0, 320, 240, True, 4.0, True)
    segments = plan_segments(100, Fraction(25), target_seconds=1.0)
    plan = JobPlan(
        JobRef("j", "u", "in", "uploads/u/j/a.mp4"),
        facts,
        segments,
        (320, 240),
        "720p",
        "w",
        "work/j/",
        "out",
        "o.mp4",
        "p.jpg",
        1.0,
    )
    state = json.loads(json.dumps(plan.to_state()))
    assert state["segments"] == [0, 1, 2, 3]
    assert JobPlan.from_job_state(state["job"]) == plan
    assert plan.segment_key(3) == "work/j/segments/00003.mp4"


def test_catch_errors_map_to_codes() -> None:
    corrupt = error_from_catch(
        {
            "Error": "CorruptInput",
            "Cause": json.dumps({"errorMessage": "not a readable media file", "errorType": "CorruptInput"}),
        }
    )
    assert isinstance(corrupt, CorruptInput) and corrupt.message == "not a readable media file"
    assert not corrupt.retryable
    lost = error_from_catch({"Error": "Sandbox.Timedout", "Cause": "Task timed out after 900.00 seconds"})
    assert isinstance(lost, WorkerLost) and lost.code == "worker_lost" and lost.retryable
    assert isinstance(error_from_catch({"Error": "FfmpegFailed", "Cause": "{}"}), FfmpegFailed)
    other = error_from_catch({"Error": "KeyError", "Cause": "not json"})
    assert isinstance(other, InternalError) and "KeyError" in other.message


def test_state_machine_definition() -> None:
    text = (SRC / "transcode_worker" / "statemachine.asl.json").read_text()
    for name in (
        "PlanFunctionArn",
        "SegmentFunctionArn",
        "AudioFunctionArn",
        "MergeFunctionArn",
        "FailFunctionArn",
        "MaxConcurrency",
    ):
        assert "${" + name + "}" in text
    asl = json.loads(text)
    states = asl["States"]
    for name in ("Plan", "Encode", "Merge"):
        assert states[name]["Catch"][-1]["Next"] == "ReportFailure"
        assert states[name]["Catch"][-1]["ErrorEquals"] == ["States.ALL"]
    # a second execution for one job (issue 14, item 10) ends quietly, before the catch-all
    assert states["Plan"]["Catch"][0] == {
        "ErrorEquals": ["DuplicateUpload"],
        "ResultPath": None,
        "Next": "AlreadyTranscoding",
    }
    assert states["AlreadyTranscoding"]["Type"] == "Succeed"
    assert states["Plan"]["Parameters"]["executionId.$"] == "$$.Execution.Id"
    segments = states["Encode"]["Branches"][0]["States"]["Segments"]
    assert segments["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    retry = segments["ItemProcessor"]["States"]["EncodeSegment"]["Retry"]
    assert any("WorkerLost" in r["ErrorEquals"] for r in retry)
    assert states["ReportFailure"]["Next"] == "JobFailed" and states["JobFailed"]["Type"] == "Fail"
