"""POST /jobs and GET /jobs/{jobId} through the HTTP API handler (payload 2.0) under moto."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tidings_core import registry

from ..conftest import FakeContext


def http_event(method: str, path: str, user_id: str | None = "alice", body: Any = None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "api1234567",
        "domainName": "api1234567.execute-api.us-east-1.amazonaws.com",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.9",
            "userAgent": "t",
        },
        "requestId": "req-1",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Nov/2026:10:00:00 +0000",
        "timeEpoch": 1_794_650_400_000,
    }
    if user_id is not None:
        context["authorizer"] = {"lambda": {"userId": user_id}}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": context,
        "body": body if body is None or isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }


def call(api: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = api.handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def test_create_job_returns_a_presigned_put(api: ModuleType) -> None:
    status, body = call(
        api,
        http_event(
            "POST", "/jobs", body={"filename": "My Clip.mp4", "contentType": "video/mp4", "size": 1000}
        ),
    )
    assert status == 201
    job_id = body["jobId"]
    upload = body["upload"]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "video/mp4", "Content-Length": "1000", "If-None-Match": "*"}
    url = urlparse(upload["url"])
    assert url.path.endswith(f"/uploads/alice/{job_id}/My-Clip.mp4")
    # S3 itself refuses another size (signed Content-Length) and a second PUT (If-None-Match)
    signed = parse_qs(url.query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-type", "content-length", "if-none-match", "host"} <= set(signed)
    job = registry.get_job(job_id)
    assert job is not None and job.user_id == "alice" and job.stage == "queued"
    assert job.input is not None and job.input.as_dict()["key"] == f"uploads/alice/{job_id}/My-Clip.mp4"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("not json", "JSON"),
        ({"filename": "a.png", "contentType": "image/png", "size": 10}, "not a supported video type"),
        ({"filename": "a.mp4", "contentType": "video/mp4", "size": 3 * 1024**3}, "2 GiB"),
    ],
)
def test_bad_requests_are_400_and_create_nothing(api: ModuleType, body: Any, fragment: str) -> None:
    status, answer = call(api, http_event("POST", "/jobs", body=body))
    assert status == 400
    assert answer["error"]["code"] == "invalid_request" and fragment in answer["error"]["message"]
    assert registry.recent_jobs("alice", limit=5) == []


def test_missing_authorizer_context_is_refused(api: ModuleType) -> None:
    status, _ = call(api, http_event("POST", "/jobs", user_id=None, body={"filename": "a.mp4"}))
    assert status == 401


def test_read_job_only_for_its_owner(api: ModuleType) -> None:
    _, created = call(
        api, http_event("POST", "/jobs", body={"filename": "a.mp4", "contentType": "video/mp4", "size": 5})
    )
    job_id = created["jobId"]
    status, job = call(api, http_event("GET", f"/jobs/{job_id}"))
    assert status == 200 and job["jobId"] == job_id and job["stage"] == "queued" and job["percent"] == 0
    assert call(api, http_event("GET", f"/jobs/{job_id}", user_id="mallory"))[0] == 404
    assert call(api, http_event("GET", "/jobs/no-such-job"))[0] == 404


def _complete(job_id: str, output: dict[str, Any]) -> None:
    message = {"type": "completed", "jobId": job_id, "userId": "alice", "seq": 9, "stage": "completed"}
    registry.claim_job_event(job_id, "alice", 9, "completed", 100.0, {**message, "output": output})


def test_a_completed_job_carries_presigned_links_to_its_output_only(api: ModuleType) -> None:
    _, created = call(
        api, http_event("POST", "/jobs", body={"filename": "a.mp4", "contentType": "video/mp4", "size": 5})
    )
    job_id = created["jobId"]
    key, poster = f"outputs/alice/{job_id}/a-720p.mp4", f"outputs/alice/{job_id}/poster.jpg"
    _complete(job_id, {"bucket": "tidings-outputs", "key": key, "posterKey": poster})
    status, job = call(api, http_event("GET", f"/jobs/{job_id}"))
    assert status == 200 and job["stage"] == "completed"
    video, image = urlparse(job["output"]["url"]), urlparse(job["output"]["posterUrl"])
    assert video.path.endswith(key) and image.path.endswith(poster)
    assert "X-Amz-Signature" in parse_qs(video.query) and job["output"]["urlExpiresIn"] == 3600


def test_output_keys_outside_outputs_are_never_signed(api: ModuleType) -> None:
    _, created = call(
        api, http_event("POST", "/jobs", body={"filename": "a.mp4", "contentType": "video/mp4", "size": 5})
    )
    job_id = created["jobId"]
    _complete(job_id, {"bucket": "tidings-outputs", "key": "uploads/bob/secret.mp4"})
    _, job = call(api, http_event("GET", f"/jobs/{job_id}"))
    assert "url" not in job["output"] and job["output"]["key"] == "uploads/bob/secret.mp4"


def test_a_21st_unfinished_job_is_429(api: ModuleType) -> None:
    """Issue 14, item 13: at most 20 unfinished jobs per user; finished ones do not count."""
    request = {"filename": "a.mp4", "contentType": "video/mp4", "size": 10}
    created = []
    for _ in range(20):
        status, body = call(api, http_event("POST", "/jobs", body=request))
        assert status == 201
        created.append(body["jobId"])
    status, answer = call(api, http_event("POST", "/jobs", body=request))
    assert status == 429
    assert answer["error"]["code"] == "too_many_jobs" and "20" in answer["error"]["message"]
    status, _ = call(api, http_event("POST", "/jobs", user_id="bob", body=request))
    assert status == 201  # per user
    registry.claim_job_event(created[0], "alice", 9, "completed", 100, {"stage": "completed"})
    status, _ = call(api, http_event("POST", "/jobs", body=request))
    assert status == 201  # a finished job frees a place


def test_queued_jobs_without_an_upload_are_hidden_after_an_hour(
    api: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = {"filename": "a.mp4", "contentType": "video/mp4", "size": 10}
    _, ghost = call(api, http_event("POST", "/jobs", body=request))
    job = registry.get_job(ghost["jobId"])
    assert job is not None and job.ttl is not None
    # deleted by TTL an hour after creation, not 7 days
    assert int(job.ttl.timestamp()) == int(job.updated_at) // 1000 + registry.QUEUED_JOB_SECONDS
    assert [j.job_id for j in registry.recent_jobs("alice", limit=50)] == [ghost["jobId"]]
    later = registry.now_ms() + registry.QUEUED_JOB_SECONDS * 1000 + 1
    monkeypatch.setattr(registry, "now_ms", lambda: later)
    assert registry.recent_jobs("alice", limit=50) == []  # TTL deletes take days: hidden at read time
    assert registry.releasable(registry.get_job(ghost["jobId"]), later)  # and its slot may be taken back
