"""Issue 14, items 10, 11 and 13 on the local stack: POST /jobs, the presigned PUT as S3 enforces
it (the embedded S3 checks signatures), one upload per job, and the unfinished-jobs limit."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from .conftest import RunningStack, local_token


def post_job(stack: RunningStack, token: str, size: int) -> requests.Response:
    return requests.post(
        f"{stack.http_url}/jobs",
        json={"filename": "clip.mp4", "contentType": "video/mp4", "size": size},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def read_job(stack: RunningStack, token: str, job_id: str) -> dict[str, Any]:
    response = requests.get(
        f"{stack.http_url}/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_one_upload_of_the_declared_size_per_job(tidings_stack: RunningStack) -> None:
    token = local_token(tidings_stack, "uploader")
    created = post_job(tidings_stack, token, 10)
    assert created.status_code == 201
    job_id, form = created.json()["jobId"], created.json()["upload"]
    headers = {k: v for k, v in form["headers"].items() if k.lower() != "content-length"}

    bigger = requests.put(form["url"], data=b"x" * 11, headers=headers, timeout=60)
    assert bigger.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in bigger.text
    assert requests.put(form["url"], data=b"x" * 10, headers=headers, timeout=60).status_code == 200
    again = requests.put(form["url"], data=b"y" * 10, headers=headers, timeout=60)
    assert again.status_code == 412  # a re-PUT mid-transcode or after it: refused by S3 itself

    # ten bytes are no video: the one execution ends the job failed, and it stays failed
    deadline = time.monotonic() + 120
    while (job := read_job(tidings_stack, token, job_id))["stage"] != "failed":
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["error"]["code"] == "corrupt_input"
    time.sleep(2)
    assert read_job(tidings_stack, token, job_id)["seq"] == job["seq"]


def test_concurrent_posts_beyond_20_unfinished_jobs_are_429(tidings_stack: RunningStack) -> None:
    """24 concurrent POST /jobs of one user: exactly 20 jobs, each with its slot taken in one
    TransactWriteItems (which the stack's IAM checks item by item against the uploads role)."""
    token = local_token(tidings_stack, "busy-user")
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: post_job(tidings_stack, token, 10), range(24)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 20 + [429] * 4, [answer.text for answer in answers]
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert json.loads(refused.text)["error"]["code"] == "too_many_jobs"
    assert post_job(tidings_stack, local_token(tidings_stack, "other-user"), 10).status_code == 201
