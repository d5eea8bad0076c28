"""Issue 14, item 13: at most 20 unfinished jobs per user, held as slots taken atomically.

`POST /jobs` puts the job and its slot (an entry in the user's `slots#<userId>` item) in one
TransactWriteItems conditioned on `size(held) < 20`; a terminal event releases the job's own entry;
the slots of jobs gone idle for an hour (ghosts nobody uploaded to, runs that died unreported) or
deleted by TTL are taken back when the limit is hit. Handlers and registry under moto.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler

from tidings_core import registry
from tidings_core.models import JobState

from .test_uploads_api import call, http_event

REQUEST = {"filename": "a.mp4", "contentType": "video/mp4", "size": 10}
HOUR_MS = registry.QUEUED_JOB_SECONDS * 1000


@pytest.fixture
def atomic_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """One DynamoDB request at a time, as DynamoDB applies each request (and each transaction)
    atomically; moto's in-process handler interleaves them across threads (the local stack
    serializes them the same way: `tidings.local.aws.make_dynamodb_atomic`)."""
    lock = threading.RLock()
    original = DynamoHandler.call_action

    def call_action(handler: DynamoHandler) -> Any:
        with lock:
            return original(handler)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)


def post(api: ModuleType, user_id: str = "alice") -> tuple[int, dict[str, Any]]:
    return call(api, http_event("POST", "/jobs", user_id=user_id, body=REQUEST))


def fill(api: ModuleType, count: int = 20) -> list[str]:
    created = []
    for _ in range(count):
        status, body = post(api)
        assert status == 201, body
        created.append(body["jobId"])
    return created


def finish(job_id: str, stage: str = "completed", seq: int = 9) -> registry.Claim:
    message = {"type": stage, "jobId": job_id, "userId": "alice", "seq": seq, "stage": stage}
    return registry.claim_job_event(job_id, "alice", seq, stage, 100.0, message).claim


def at(monkeypatch: pytest.MonkeyPatch, now: int) -> Callable[[], int]:
    clock = lambda: now  # noqa: E731
    monkeypatch.setattr(registry, "now_ms", clock)
    return clock


def test_thirty_concurrent_posts_of_one_user_create_exactly_twenty_jobs(
    api: ModuleType,
    atomic_dynamodb: None,
) -> None:
    start = threading.Barrier(30)

    def one(_: int) -> tuple[int, dict[str, Any]]:
        start.wait()
        return post(api)

    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(one, range(30)))
    accepted = [body["jobId"] for status, body in answers if status == 201]
    refused = [body for status, body in answers if status == 429]
    assert len(accepted) == 20 and len(refused) == 10, [status for status, _ in answers]
    assert all(body["error"]["code"] == "too_many_jobs" for body in refused)
    assert all("20 unfinished jobs" in body["error"]["message"] for body in refused)
    # every accepted job exists and holds a slot; no refused request left a job behind
    assert sorted(registry.held_slots("alice")) == sorted(accepted)
    assert len(registry.recent_jobs("alice", limit=50)) == 20


def test_a_completed_or_failed_job_gives_its_slot_back(api: ModuleType) -> None:
    jobs = fill(api)
    assert post(api)[0] == 429
    assert finish(jobs[0], "completed") is registry.Claim.NEW
    assert jobs[0] not in registry.held_slots("alice")
    assert post(api)[0] == 201
    assert finish(jobs[1], "failed") is registry.Claim.NEW
    assert post(api)[0] == 201
    assert post(api)[0] == 429


def test_a_replayed_or_second_terminal_event_releases_nothing_more(api: ModuleType) -> None:
    jobs = fill(api)
    assert finish(jobs[0]) is registry.Claim.NEW
    replacement = post(api)
    assert replacement[0] == 201  # the released slot is taken again: 20 held
    assert finish(jobs[0]) is registry.Claim.DUPLICATE  # the bus redelivers the completed event
    assert finish(jobs[0], "failed", seq=10) is registry.Claim.STALE  # terminal states are final
    assert registry.release_slot("alice", jobs[0]) is False  # released once already
    assert len(registry.held_slots("alice")) == 20
    status, body = post(api)
    assert status == 429 and body["error"]["code"] == "too_many_jobs"


def test_a_slot_comes_back_when_a_crash_came_between_the_terminal_claim_and_its_release(
    api: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = fill(api)

    def crash(user_id: str, job_id: str) -> bool:
        raise RuntimeError("notify killed")

    release = registry.release_slot
    monkeypatch.setattr(registry, "release_slot", crash)
    with pytest.raises(RuntimeError):
        finish(jobs[0])
    monkeypatch.setattr(registry, "release_slot", release)
    assert jobs[0] in registry.held_slots("alice")
    assert finish(jobs[0]) is registry.Claim.DUPLICATE  # the bus's retry of the failed notify
    assert jobs[0] not in registry.held_slots("alice")
    assert post(api)[0] == 201


def test_a_ghost_gives_its_slot_back_after_an_hour_and_live_jobs_keep_theirs(
    api: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created_at = registry.now_ms()
    at(monkeypatch, created_at)
    jobs = fill(api)
    ghost, running = jobs[0], jobs[1:]
    at(monkeypatch, created_at + HOUR_MS // 2)
    for job_id in running:  # they got their upload: progress keeps updating them
        message = {"type": "progress", "jobId": job_id, "userId": "alice", "seq": 1, "stage": "transcoding"}
        registry.claim_job_event(job_id, "alice", 1, "transcoding", 10.0, message)
    at(monkeypatch, created_at + HOUR_MS - 1)
    assert post(api)[0] == 429  # the ghost is not an hour old yet
    at(monkeypatch, created_at + HOUR_MS + 1)
    status, body = post(api)
    assert status == 201
    held = registry.held_slots("alice")
    assert ghost not in held and set(running) <= set(held) and body["jobId"] in held
    assert post(api)[0] == 429  # the running jobs keep their slots


def test_a_job_deleted_by_ttl_gives_its_slot_back(api: ModuleType) -> None:
    jobs = fill(api)
    JobState(jobs[3]).delete()  # DynamoDB's TTL removed it (its slot entry stays)
    assert post(api)[0] == 201
    assert jobs[3] not in registry.held_slots("alice")


def test_a_job_that_started_since_it_was_read_keeps_its_slot(
    api: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The slot is taken back in a transaction that checks its job again: a job that progressed
    after the read that found it idle keeps its slot."""
    fill(api)
    monkeypatch.setattr(registry, "releasable", lambda job, now: True)  # a read that saw them idle
    status, body = post(api)
    assert status == 429 and body["error"]["code"] == "too_many_jobs"
    assert len(registry.held_slots("alice")) == 20


def test_slots_are_per_user_and_no_job(api: ModuleType) -> None:
    fill(api)
    assert post(api, "bob")[0] == 201
    assert registry.get_job("slots#alice") is None
    assert call(api, http_event("GET", "/jobs/slots%23alice"))[0] == 404
    assert [job.user_id for job in registry.recent_jobs("alice", limit=50)] == ["alice"] * 20


def test_a_transaction_cancelled_by_a_conflict_is_tried_again(
    api: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB cancels a transaction that meets another one on the same item (the slots item,
    with concurrent POSTs) with `TransactionConflict`; the job is created on a later attempt."""
    original = DynamoDBBackend.transact_write_items
    conflicts = [2]  # the next two transactions conflict

    def transact(backend: DynamoDBBackend, items: list[dict[str, Any]]) -> None:
        if conflicts[0]:
            conflicts[0] -= 1
            raise TransactionCanceledException(
                [(None, None, None), ("TransactionConflict", "Transaction is ongoing for the item", None)]
            )
        original(backend, items)

    slept: list[float] = []
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", transact)
    monkeypatch.setattr(registry.time, "sleep", slept.append)
    status, body = post(api)
    assert status == 201 and registry.held_slots("alice") == [body["jobId"]]
    assert len(slept) == 2 and conflicts == [0]
