"""Tidings' fault switch: killAfterPosts counting only the posts of one job."""

from __future__ import annotations

import json

import pytest

from tidings.devtools.faults import POST_FILTERS, job_id_of
from tidings.local.faults import FaultRequestError, Faults, parse_request

FUNCTIONS = {"NotifyFunction"}


def test_job_id_of_reads_job_messages_only() -> None:
    assert job_id_of(json.dumps({"type": "progress", "jobId": "j-1"}).encode()) == "j-1"
    assert job_id_of(b"not json") is None
    assert job_id_of(b"[1]") is None


def test_kill_after_posts_of_one_job() -> None:
    faults = Faults()
    spec = {"function": "NotifyFunction", "posts": 5, "jobId": "j-1"}
    parse_request(FUNCTIONS, {"killAfterPosts": spec}, POST_FILTERS).apply(faults)
    kill = faults.kill_after_posts
    assert kill is not None and faults.snapshot()["killAfterPosts"]["jobId"] == "j-1"
    assert kill.counts(json.dumps({"jobId": "j-1"}).encode())
    assert not kill.counts(json.dumps({"jobId": "j-2"}).encode())
    with pytest.raises(FaultRequestError, match="jobId must be a string"):
        parse_request(FUNCTIONS, {"killAfterPosts": {**spec, "jobId": 1}}, POST_FILTERS)
