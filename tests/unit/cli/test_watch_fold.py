"""The watch state machine: the seq rule across snapshots and live messages, and how a watch ends."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tidings.watch_view import EXIT_COMPLETED, EXIT_FAILED, EXIT_REFUSED, WatchState, fold

JOB = "j-1"


def progress(seq: int, percent: float = 0.0, stage: str = "transcoding", **extra: Any) -> dict[str, Any]:
    kind = stage if stage in ("completed", "failed") else "progress"
    return {"type": kind, "jobId": JOB, "userId": "alice", "seq": seq, "stage": stage, "percent": percent,
            "emittedAt": 1_731_332_762_000 + seq, "sentAt": 1_731_332_762_100 + seq, **extra}  # fmt: skip


def snapshot(*jobs: dict[str, Any], topic: str = f"job:{JOB}") -> dict[str, Any]:
    return {"type": "snapshot", "topic": topic, "jobs": list(jobs)}


def run(*messages: Any) -> WatchState:
    state = WatchState(JOB)
    for message in messages:
        state = fold(state, message).state
    return state


def test_subscribed_then_a_queued_snapshot() -> None:
    state = run({"type": "subscribed", "topic": f"job:{JOB}"}, snapshot(progress(0, stage="queued")))
    assert state.subscribed
    assert state.job is not None and (state.job.seq, state.job.stage) == (0, "queued")
    assert state.exit_code is None


def test_a_higher_seq_replaces_and_reports_the_message() -> None:
    state = run(progress(3, 30.0))
    result = fold(state, progress(4, 40.0, etaSeconds=6.5, speed=2.0))
    assert result.state.job is not None
    assert (result.state.job.seq, result.state.job.percent, result.state.job.eta_seconds) == (4, 40.0, 6.5)
    assert [m["seq"] for m in result.accepted] == [4]


def test_duplicates_and_older_messages_change_nothing() -> None:
    state = run(progress(5, 50.0))
    for stale in (progress(5, 55.0), progress(2, 20.0)):
        result = fold(state, stale)
        assert result.state is state
        assert result.accepted == ()


def test_a_snapshot_older_than_a_live_update_is_ignored() -> None:
    # a live message can overtake the snapshot that was read before it was stored
    state = run({"type": "subscribed", "topic": f"job:{JOB}"}, progress(7, 70.0))
    result = fold(state, snapshot(progress(6, 60.0)))
    assert result.state.job is not None and result.state.job.seq == 7 and result.state.job.percent == 70.0
    assert result.accepted == ()


def test_a_newer_snapshot_after_a_reconnect_catches_up() -> None:
    state = run(progress(2, 20.0), snapshot(progress(9, 90.0)))
    assert state.job is not None and (state.job.seq, state.job.percent) == (9, 90.0)


def test_messages_for_other_jobs_and_topics_are_ignored() -> None:
    other = {**progress(99, 99.0), "jobId": "j-2"}
    state = run(progress(1, 10.0), other, snapshot(progress(50, 50.0), topic="user:alice"))
    assert state.job is not None and state.job.seq == 1
    assert not run({"type": "subscribed", "topic": "job:j-2"}).subscribed


@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=30))
def test_any_delivery_order_ends_on_the_highest_seq(seqs: list[int]) -> None:
    state = run(*(progress(seq, float(seq)) for seq in seqs))
    assert state.job is not None and state.job.seq == max(seqs) and state.job.percent == float(max(seqs))


def test_completed_ends_with_exit_zero_and_keeps_the_output() -> None:
    output = {"bucket": "out", "key": "jobs/j-1/video.mp4", "sizeBytes": 1234, "durationSeconds": 10.0}
    state = run(progress(3, 30.0), progress(4, 100.0, stage="completed", output=output))
    assert state.exit_code == EXIT_COMPLETED
    assert state.job is not None and state.job.output == output


def test_failed_ends_with_exit_one_and_keeps_the_error() -> None:
    error = {"code": "ffmpeg_exit", "message": "segment 2: exit status 1", "retryable": True}
    state = run(progress(3, 30.0), progress(4, 30.0, stage="failed", error=error))
    assert state.exit_code == EXIT_FAILED
    assert state.job is not None and state.job.error == error


def test_a_completion_in_the_snapshot_ends_the_watch() -> None:
    assert run(snapshot(progress(12, 100.0, stage="completed"))).exit_code == EXIT_COMPLETED


def test_a_stale_failure_cannot_override_a_later_completion() -> None:
    state = run(progress(8, 100.0, stage="completed"), progress(7, 50.0, stage="failed"))
    assert state.exit_code == EXIT_COMPLETED


def test_forbidden_or_not_found_refuses_the_watch_but_other_errors_do_not() -> None:
    refused = fold(WatchState(JOB), {"type": "error", "code": "not_found", "message": "no such job"})
    assert refused.state.exit_code == EXIT_REFUSED
    assert refused.state.refusal == ("not_found", "no such job")
    internal = fold(WatchState(JOB), {"type": "error", "code": "internal", "message": "retry"})
    assert internal.state.exit_code is None and internal.server_error == ("internal", "retry")


def test_malformed_messages_are_ignored() -> None:
    state = run(progress(2, 20.0))
    junk = [
        None, [], "x", {"type": "progress", "jobId": JOB}, {**progress(3), "seq": "3"},
        {**progress(4), "seq": True}, {**progress(5), "stage": None}, {"type": "pong", "id": 1},
    ]  # fmt: skip
    for message in junk:
        assert fold(state, message).state is state


def test_odd_field_values_are_clamped_or_dropped() -> None:
    state = run(progress(1, 250.0, speed="fast", segments=[{"index": 1, "percent": 50, "state": "running"},
                                                          {"percent": 3}, {"index": 0, "percent": 100,
                                                                           "state": "done"}]))  # fmt: skip
    assert state.job is not None
    assert state.job.percent == 100.0 and state.job.speed is None
    assert [segment.index for segment in state.job.segments] == [0, 1]
