"""The progress view against the real local stack: real uploads, the real transcoding pipeline.

One `LocalStack` runs in a background thread for the module (tests/stack_harness.py), so a test
can stop and restart just its WebSocket gateway while the job keeps running. Each test signs in
as its own user, so one test's jobs never show up in another's snapshot.

`TIDINGS_UPDATE_SCREENSHOT=1` also writes the mid-job screenshot to docs/progress-view.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from stack_harness import ROOT, InProcessStack  # tests/stack_harness.py
from testkit import require_tool  # tests/testkit.py

from tidings.demo import ffmpeg_exe, make_sample_video
from tidings.local.stack import DevOptions

# 12 s at 4 s per segment: three segments encode in parallel, and the job runs long enough
# (upload, probe, encode, merge) for several progress messages, a reload and a gateway restart.
CLIP_SECONDS = 12
CLIP_SIZE = "640x360"
SEGMENT_SECONDS = "4"
# Cold function starts, the pipeline on a busy 2-core machine, and after a gateway restart
# the page's next attempt may be up to the 30 s backoff cap away.
JOB_TIMEOUT_MS = 90_000
RECOVERY_TIMEOUT_MS = 40_000
SCREENSHOT = ROOT / "docs" / "progress-view.png"

# Records every change of a job's overall bar and of the connection indicator, so a test can
# check the whole sequence the page showed, not just where it ended.
RECORDER = """
window.__progress = [];
window.__connection = [];
new MutationObserver((records) => {
  for (const record of records) {
    const target = record.target;
    if (target.id === "connection" && record.attributeName === "data-state") {
      window.__connection.push(target.dataset.state);
    } else if (target.classList && target.classList.contains("overall")) {
      const card = target.closest("li.job");
      window.__progress.push({
        jobId: card ? card.dataset.jobId : null,
        stage: card ? card.dataset.stage : null,
        value: Number(target.getAttribute("aria-valuenow")),
      });
    }
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["aria-valuenow", "data-state"] });
"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("ffmpeg", ffmpeg_exe())
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    return make_sample_video(path, seconds=CLIP_SECONDS, size=CLIP_SIZE)


@pytest.fixture(scope="module")
def local_stack(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessStack]:
    # `browser` first: without Chromium there is no point starting the stack.
    options = DevOptions(
        template=ROOT / "template.yaml",
        ws_port=0,
        http_port=0,
        aws_port=0,
        demo=False,
        parameter_overrides={"SegmentSeconds": SEGMENT_SECONDS},
        state_file=tmp_path_factory.mktemp("state") / "state.json",
    )
    running = InProcessStack(options)
    running.start()
    yield running
    running.stop()


def open_view(page: Page, stack: InProcessStack, user: str) -> list[str]:
    """Open the page as `user` until it is live; the console errors it logs from now on."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.add_init_script(RECORDER)
    page.goto(f"{stack.http_url}/?user={user}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return errors


def upload(page: Page, clip: Path) -> Locator:
    """Pick the clip in the file chooser; the job's card once `POST /jobs` has answered."""
    page.locator("#file-input").set_input_files(clip)
    card = page.locator("li.job")
    expect(card).to_have_count(1)
    expect(card).to_have_attribute("data-job-id", re.compile(r"^[0-9a-f]{32}$"))
    return card


def overall(card: Locator) -> Locator:
    return card.locator(".overall")


def bar_value(card: Locator) -> int:
    return int(overall(card).get_attribute("aria-valuenow") or "-1")


def wait_for_stage(page: Page, card: Locator, stages: tuple[str, ...], above: int = 0) -> None:
    """Until the card shows one of `stages` with the bar above `above` and below 100."""
    page.wait_for_function(
        """([jobId, stages, above]) => {
            const card = document.querySelector(`li.job[data-job-id="${jobId}"]`);
            const value = Number(card.querySelector(".overall").getAttribute("aria-valuenow"));
            return stages.includes(card.dataset.stage) && value > above && value < 100;
        }""",
        arg=[card.get_attribute("data-job-id"), list(stages), above],
        timeout=JOB_TIMEOUT_MS,
    )


def wait_until_transcoding_started(page: Page, card: Locator) -> None:
    """Until the pipeline has reported progress and the job is not finished yet."""
    wait_for_stage(page, card, ("probing", "transcoding", "merging"))


def expect_completed(card: Locator) -> None:
    expect(card).to_have_attribute("data-stage", "completed", timeout=JOB_TIMEOUT_MS)
    expect(overall(card)).to_have_attribute("aria-valuenow", "100")
    expect(card.locator(".stage")).to_have_text("Completed")
    expect(card.locator(".error")).to_be_hidden()


def recorded_progress(page: Page, job_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = page.evaluate("window.__progress")
    return [entry for entry in entries if entry["jobId"] == job_id]


def distinct_in_order(values: list[Any]) -> list[Any]:
    """`values` without consecutive repeats (a re-render sets the same value again)."""
    result: list[Any] = []
    for value in values:
        if not result or result[-1] != value:
            result.append(value)
    return result


def job_record(stack: InProcessStack, user: str, job_id: str) -> dict[str, Any]:
    request = Request(  # noqa: S310 - the local stack on 127.0.0.1
        f"{stack.http_url}/jobs/{job_id}", headers={"Authorization": f"Bearer {stack.token(user)}"}
    )
    with urlopen(request, timeout=30) as response:  # noqa: S310
        body: dict[str, Any] = json.loads(response.read())
    return body


def eventually(condition: Callable[[], bool], what: str, timeout_s: float = JOB_TIMEOUT_MS / 1000) -> None:
    """Poll a stack-side condition (the page side uses Playwright's auto-waiting expect)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def fetch(url: str) -> tuple[bytes, str]:
    with urlopen(url, timeout=30) as response:  # noqa: S310 - a presigned URL on the embedded S3
        return response.read(), response.headers.get("Content-Type", "")


def test_upload_by_file_picker_rises_live_to_a_completed_playable_output(
    page: Page, local_stack: InProcessStack, clip: Path, tmp_path: Path
) -> None:
    user = "picker"
    console_errors = open_view(page, local_stack, user)
    card = upload(page, clip)
    job_id = card.get_attribute("data-job-id") or ""
    expect(card.locator(".job-name")).to_have_text(clip.name)

    # The picture in docs/: a real job mid-way, at laptop size (the context's 1280x800 viewport).
    # For docs/ it waits for a fuller bar; how far the first transcoding message gets varies.
    updating_docs = os.environ.get("TIDINGS_UPDATE_SCREENSHOT") == "1"
    wait_for_stage(page, card, ("transcoding",), above=25 if updating_docs else 0)
    shot = tmp_path / "progress-view.png"
    page.screenshot(path=str(shot), animations="disabled")  # the bar at its value, not mid-transition
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if updating_docs:
        shutil.copyfile(shot, SCREENSHOT)

    expect_completed(card)
    values = distinct_in_order([entry["value"] for entry in recorded_progress(page, job_id)])
    # Live: several distinct values on the way, never going back, ending at 100.
    assert values == sorted(values), values
    assert values[-1] == 100
    assert len([value for value in values if 0 < value < 100]) >= 3, values
    stages = distinct_in_order([entry["stage"] for entry in recorded_progress(page, job_id)])
    assert {"transcoding", "completed"} <= set(stages), stages

    segments = card.locator(".segments li")
    assert segments.count() == len(job_record(local_stack, user, job_id)["segments"]) >= 2
    expect(card.locator(".segments li.segment-done")).to_have_count(segments.count())

    # The output: a preview the browser can load, and a link to a real MP4 of the reported size.
    record = job_record(local_stack, user, job_id)
    video = card.locator("video.preview")
    expect(video).to_be_visible()
    video_url = video.get_attribute("src") or ""
    # Presigned separately (the signature has the time in it): the same object, not the same URL.
    output = record["output"]
    assert urlsplit(video_url).path == f"/{output['bucket']}/{output['key']}"
    expect(card.locator("a.output-link")).to_have_attribute("href", video_url)
    mp4, _ = fetch(video_url)
    assert mp4[4:8] == b"ftyp"
    assert len(mp4) == output["sizeBytes"]
    poster, _ = fetch(video.get_attribute("poster") or "")
    assert poster.startswith(b"\xff\xd8\xff")  # JPEG
    page.wait_for_function(
        "(video) => video.readyState >= 1 && video.duration > 0", arg=video.element_handle()
    )
    duration = video.evaluate("(video) => video.duration")
    assert abs(duration - CLIP_SECONDS) < 0.5
    assert console_errors == []


def test_reload_mid_job_and_at_the_end_restores_the_state_from_the_snapshot(
    page: Page, local_stack: InProcessStack, clip: Path
) -> None:
    user = "reloader"
    open_view(page, local_stack, user)
    card = upload(page, clip)
    job_id = card.get_attribute("data-job-id") or ""
    wait_until_transcoding_started(page, card)
    before = bar_value(card)

    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    restored = page.locator(f'li.job[data-job-id="{job_id}"]')
    expect(restored).to_have_count(1)
    # The page forgot the upload on reload: everything now comes from the stored job state.
    expect(restored.locator(".job-name")).to_have_text(clip.name)
    assert bar_value(restored) >= before
    expect_completed(restored)
    # Mid-job for real: after the reload the bar still moved, live, before reaching 100.
    after_reload = distinct_in_order([entry["value"] for entry in recorded_progress(page, job_id)])
    assert len(after_reload) >= 2 and after_reload[-1] == 100, after_reload
    assert after_reload == sorted(after_reload), after_reload

    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    finished = page.locator(f'li.job[data-job-id="{job_id}"]')
    expect_completed(finished)
    expect(finished.locator("video.preview")).to_be_visible()
    expect(finished.locator(".stats")).to_contain_text("Took")
    # Nothing moved: the snapshot said 100 at once (a re-render may set it again).
    assert {entry["value"] for entry in recorded_progress(page, job_id)} <= {100}


def test_gateway_stopped_and_restarted_mid_job_the_page_recovers_to_completed(
    page: Page, local_stack: InProcessStack, clip: Path
) -> None:
    user = "survivor"
    open_view(page, local_stack, user)
    card = upload(page, clip)
    job_id = card.get_attribute("data-job-id") or ""
    wait_until_transcoding_started(page, card)
    gateway = local_stack.stack.gateway
    assert gateway is not None
    port = gateway.port

    local_stack.call(gateway.stop())
    indicator = page.locator("#connection")
    expect(indicator).to_have_attribute("data-state", "reconnecting")
    frozen = bar_value(card)
    assert frozen < 100
    # The job runs on without the gateway (its messages find no connection: 410 Gone); keep the
    # gateway away until the stored state is ahead of what the page shows.
    eventually(lambda: job_record(local_stack, user, job_id)["percent"] > frozen, "the job to move on")
    expect(indicator).to_have_attribute("data-state", "reconnecting")
    assert bar_value(card) == frozen

    local_stack.call(gateway.start())
    assert gateway.port == port  # the same URL the page keeps retrying
    expect(indicator).to_have_attribute("data-state", "live", timeout=RECOVERY_TIMEOUT_MS)
    expect_completed(card)
    states = distinct_in_order(page.evaluate("window.__connection"))
    assert states[-2:] == ["reconnecting", "live"], states
    assert bar_value(card) == 100 > frozen
