"""docs/examples/watch.html: the browser client module (web/js/tidings.js) as a page imports it,
against the in-process fake backend."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .fake_backend import WEB_DIR, FakeTidings
from .test_progress_view_fake import job_message

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "watch.html"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[FakeTidings]:
    site = tmp_path / "web"
    shutil.copytree(WEB_DIR, site)
    (site / "examples").mkdir()
    shutil.copy(EXAMPLE, site / "examples" / "watch.html")
    with FakeTidings(web_dir=site) as running:
        yield running


def test_the_example_page_follows_a_users_jobs_with_segments(backend: FakeTidings, page: Page) -> None:
    backend.publish(job_message("job-1", 1, "transcoding", 10.0))
    page.goto(f"{backend.base_url}/examples/watch.html?user=alice")
    jobs = page.locator("#jobs")
    expect(jobs).to_have_text("job-1  transcoding  10.0%  ")  # the snapshot
    segments = [
        {"index": 0, "percent": 100, "state": "done"},
        {"index": 1, "percent": 40, "state": "running"},
    ]
    backend.publish(job_message("job-1", 3, "transcoding", 70.0, segments=segments))
    expect(jobs).to_have_text("job-1  transcoding  70.0%  100% 40%")
    backend.deliver(job_message("job-1", 2, "transcoding", 50.0))  # older: the seq rule drops it
    backend.publish(job_message("job-2", 1, "queued", 0.0))
    expect(jobs).to_have_text("job-1  transcoding  70.0%  100% 40%\njob-2  queued  0.0%  ")
