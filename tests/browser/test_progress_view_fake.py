"""The progress view against the in-process fake backend (tests/browser/fake_backend.py).

What the page must do whatever the backend: render the snapshot, apply live job messages under
the seq rule, survive reloads and dropped connections, upload files and stay readable on a phone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from playwright.sync_api import FilePayload, Locator, Page, expect

from .fake_backend import FakeTidings

USER = "alice"
# After several failed attempts the next one may be up to the 30 s backoff cap away.
RECOVERY_TIMEOUT_MS = 35_000


@pytest.fixture
def backend() -> Iterator[FakeTidings]:
    with FakeTidings() as running:
        yield running


def job_message(job_id: str, seq: int, stage: str, percent: float, **extra: Any) -> dict[str, Any]:
    message_type = stage if stage in {"completed", "failed"} else "progress"
    return {
        "type": message_type,
        "jobId": job_id,
        "userId": extra.pop("userId", USER),
        "seq": seq,
        "stage": stage,
        "percent": percent,
        "emittedAt": extra.pop("emittedAt", int(time.time() * 1000)),
        **extra,
    }


def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    """Poll a backend-side condition (the page side uses Playwright's auto-waiting expect)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def card(page: Page, job_id: str) -> Locator:
    return page.locator(f'li.job[data-job-id="{job_id}"]')


def overall_bar(page: Page, job_id: str) -> Locator:
    return card(page, job_id).locator(".overall")


def open_view(page: Page, backend: FakeTidings, query: str = f"?user={USER}") -> None:
    page.goto(f"{backend.base_url}/{query}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def test_snapshot_renders_the_users_jobs_newest_first(page: Page, backend: FakeTidings) -> None:
    backend.publish(
        job_message(
            "older",
            4,
            "transcoding",
            40,
            emittedAt=1_000,
            etaSeconds=75,
            speed=2.5,
            fps=60,
            frames=400,
            totalFrames=1000,
            input={"bucket": "in", "key": "alice/older/holiday.mov"},
        )
    )
    backend.publish(job_message("newer", 2, "probing", 5, emittedAt=2_000))
    backend.publish(job_message("bobs", 1, "transcoding", 10, userId="bob"))

    open_view(page, backend)

    expect(page.locator("li.job")).to_have_count(2)
    assert page.locator("li.job").evaluate_all("cards => cards.map(c => c.dataset.jobId)") == [
        "newer",
        "older",
    ]
    bar = overall_bar(page, "older")
    expect(bar).to_have_attribute("role", "progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "40")
    expect(bar).to_have_attribute("aria-valuemin", "0")
    expect(bar).to_have_attribute("aria-valuemax", "100")
    expect(bar).to_have_attribute("aria-label", "Progress of holiday.mov")
    older = card(page, "older")
    expect(older.locator(".stage")).to_have_text("Transcoding")
    expect(older.locator(".percent")).to_have_text("40%")
    expect(older.locator('[data-stat="eta"] dd')).to_have_text("1 min 15 s")
    expect(older.locator('[data-stat="speed"] dd')).to_have_text("2.5\u00d7")
    expect(older.locator('[data-stat="frames"] dd')).to_have_text("400 / 1,000")
    assert backend.subscribe_count(f"user:{USER}") == 1
    # The token travelled as the second subprotocol, never in the URL.
    offered = backend.offered_subprotocols[-1]
    assert offered[0] == "tidings.v1" and offered[1].count(".") == 2
    assert backend.request_paths == []
    expect(page.locator("#user-name")).to_have_text(f"Signed in as {USER}")


def test_live_updates_move_the_bar_to_completion_with_a_preview(page: Page, backend: FakeTidings) -> None:
    backend.publish(job_message("j1", 1, "queued", 0))
    open_view(page, backend)
    bar = overall_bar(page, "j1")
    expect(bar).to_have_attribute("aria-valuenow", "0")

    segments = [
        {"index": 0, "percent": 100, "state": "done", "frames": 300},
        {"index": 1, "percent": 50, "state": "running", "frames": 150},
        {"index": 2, "percent": 0, "state": "pending"},
    ]
    for seq, (stage, percent) in enumerate([("probing", 2), ("transcoding", 37.4), ("merging", 96)], 2):
        backend.publish(job_message("j1", seq, stage, percent, segments=segments, etaSeconds=3))
        expect(bar).to_have_attribute("aria-valuenow", str(round(percent)))
        expect(card(page, "j1")).to_have_attribute("data-stage", stage)
    expect(card(page, "j1").locator("li.segment")).to_have_count(3)
    expect(card(page, "j1").locator("li.segment").nth(1)).to_have_class("segment segment-running")

    output = {
        "bucket": "out",
        "key": "alice/j1/out.mp4",
        "posterKey": "alice/j1/poster.jpg",
        "sizeBytes": 2_500_000,
    }
    backend.publish(job_message("j1", 5, "completed", 100, output=output))
    expect(bar).to_have_attribute("aria-valuenow", "100")
    done = card(page, "j1")
    expect(done).to_have_attribute("data-stage", "completed")
    expect(done.locator(".stage")).to_have_text("Completed")
    # The message has no URLs, so the page asked GET /api/jobs/j1 for presigned ones.
    video = done.locator("video.preview")
    expect(video).to_have_attribute("src", f"{backend.base_url}/media/j1.mp4")
    expect(video).to_have_attribute("poster", f"{backend.base_url}/media/j1.png")
    expect(done.locator("a.output-link")).to_have_attribute("href", f"{backend.base_url}/media/j1.mp4")
    expect(done.locator('[data-stat="size"] dd')).to_have_text("2.5 MB")
    expect(done.locator('[data-stat="eta"]')).to_have_count(0)


def test_output_urls_in_the_message_are_used_and_unsafe_ones_refused(
    page: Page, backend: FakeTidings
) -> None:
    backend.publish(
        job_message(
            "posteronly",
            3,
            "completed",
            100,
            output={"bucket": "b", "key": "k.mp4", "url": "javascript:alert(1)", "posterUrl": "/media/p.png"},
        )
    )
    open_view(page, backend)
    done = card(page, "posteronly")
    expect(done.locator("img.poster")).to_have_attribute("src", f"{backend.base_url}/media/p.png")
    expect(done.locator("video")).to_have_count(0)
    expect(done.locator("a")).to_have_count(0)
    expect(done.locator(".output-key")).to_have_text("Output: s3://b/k.mp4")


def test_failed_job_shows_the_error_and_a_retry_hint_as_text(page: Page, backend: FakeTidings) -> None:
    hostile = '<img src=x onerror="window.__injected=1">segment 2: exit status 1'
    open_view(page, backend)
    backend.publish(
        job_message(
            "bad",
            9,
            "failed",
            63,
            error={"code": "ffmpeg_exit", "message": hostile, "retryable": True},
            warnings=["<b>odd</b> audio track skipped"],
        )
    )
    failed = card(page, "bad")
    expect(failed).to_have_attribute("data-stage", "failed")
    expect(failed.locator(".stage")).to_have_text("Failed")
    alert = failed.locator('.error[role="alert"]')
    expect(alert).to_contain_text(hostile)
    expect(alert).to_contain_text("Code: ffmpeg_exit")
    expect(alert).to_contain_text("upload the file again to retry")
    expect(failed.locator(".warnings li")).to_have_text("<b>odd</b> audio track skipped")
    expect(overall_bar(page, "bad")).to_have_attribute("aria-valuenow", "63")
    assert failed.locator("img, b").count() == 0
    assert page.evaluate("window.__injected") is None


def test_stale_and_duplicate_seqs_are_ignored(page: Page, backend: FakeTidings) -> None:
    backend.publish(job_message("j", 5, "transcoding", 60))
    open_view(page, backend)
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "60")

    backend.deliver(job_message("j", 3, "transcoding", 20))
    backend.deliver(job_message("j", 5, "probing", 1))
    # Messages on one connection arrive in order: once this one shows, the two above were handled.
    backend.publish(job_message("marker", 1, "queued", 0))
    expect(card(page, "marker")).to_have_count(1)
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "60")
    expect(card(page, "j")).to_have_attribute("data-stage", "transcoding")


def test_snapshot_older_than_a_live_update_does_not_roll_back(page: Page, backend: FakeTidings) -> None:
    backend.publish(job_message("j", 2, "transcoding", 20))
    open_view(page, backend)
    # Seen live but not (yet) in the store the snapshot is read from: the snapshot will be older.
    backend.deliver(job_message("j", 7, "transcoding", 80))
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "80")

    backend.drop_connections()
    eventually(lambda: backend.subscribe_count(f"user:{USER}") == 2, "the page to resubscribe")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    backend.publish(job_message("marker", 1, "queued", 0))
    expect(card(page, "marker")).to_have_count(1)
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "80")


def test_reload_mid_job_restores_state_from_the_snapshot(page: Page, backend: FakeTidings) -> None:
    backend.publish(job_message("j", 3, "transcoding", 45))
    open_view(page, backend)
    backend.publish(job_message("j", 4, "transcoding", 55, etaSeconds=12))
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "55")

    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "55")
    expect(card(page, "j").locator('[data-stat="eta"] dd')).to_have_text("12 s")
    assert backend.subscribe_count(f"user:{USER}") == 2
    backend.publish(job_message("j", 5, "transcoding", 70))
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "70")


def test_dropped_connection_reconnects_resubscribes_and_catches_up(page: Page, backend: FakeTidings) -> None:
    backend.publish(job_message("j", 1, "transcoding", 10))
    open_view(page, backend)
    indicator = page.locator("#connection")

    backend.refuse_connections()
    assert backend.drop_connections() == 1
    expect(indicator).to_have_attribute("data-state", "reconnecting")
    expect(indicator.locator(".indicator-label")).to_have_text("Reconnecting…")
    expect(indicator).to_have_attribute("aria-live", "polite")
    # Progress made while the page was away reaches it through the snapshot.
    backend.publish(job_message("j", 2, "transcoding", 65))
    backend.publish(job_message("new", 1, "queued", 0))

    backend.refuse_connections(False)
    expect(indicator).to_have_attribute("data-state", "live", timeout=RECOVERY_TIMEOUT_MS)
    assert backend.subscribe_count(f"user:{USER}") == 2
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "65")
    expect(page.locator("li.job").first).to_have_attribute("data-job-id", "new")
    backend.publish(job_message("j", 3, "transcoding", 75))
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "75")


def test_token_endpoint_down_during_a_reconnect_is_retried(page: Page, backend: FakeTidings) -> None:
    backend.publish(job_message("j", 1, "transcoding", 10))
    open_view(page, backend)
    indicator = page.locator("#connection")
    backend.issue_tokens(False)
    backend.drop_connections()
    expect(indicator).to_have_attribute("data-state", "reconnecting")
    expect(indicator.locator(".indicator-detail")).to_contain_text("answered 503")
    backend.publish(job_message("j", 2, "transcoding", 50))
    backend.issue_tokens(True)
    expect(indicator).to_have_attribute("data-state", "live", timeout=RECOVERY_TIMEOUT_MS)
    expect(overall_bar(page, "j")).to_have_attribute("aria-valuenow", "50")


def test_browser_offline_shows_offline_then_recovers(page: Page, backend: FakeTidings) -> None:
    open_view(page, backend)
    indicator = page.locator("#connection")
    page.context.set_offline(True)
    expect(indicator).to_have_attribute("data-state", "offline")
    page.context.set_offline(False)
    expect(indicator).to_have_attribute("data-state", "live")
    eventually(lambda: backend.subscribe_count(f"user:{USER}") == 2, "a resubscribe after going online")


def test_heartbeat_pings_at_the_configured_interval(page: Page, backend: FakeTidings) -> None:
    open_view(page, backend, f"?user={USER}&heartbeat=1")
    eventually(lambda: backend.pings >= 2, "two heartbeat pings")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def test_unanswered_heartbeat_makes_the_page_reconnect(page: Page, backend: FakeTidings) -> None:
    open_view(page, backend, f"?user={USER}&heartbeat=1")
    backend.answer_pings(False)
    eventually(lambda: backend.connections_opened == 2, "a new connection after an unanswered ping")
    backend.answer_pings(True)
    eventually(lambda: backend.subscribe_count(f"user:{USER}") == 2, "a resubscribe")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def test_backoff_is_full_jitter_capped_at_30_seconds(page: Page, backend: FakeTidings) -> None:
    page.goto(f"{backend.base_url}/?user={USER}")
    ceilings = page.evaluate(
        """async () => {
            const { backoffDelay } = await import("./js/connection.js");
            const top = () => 0.999999;
            return {
                highest: [0, 1, 2, 3, 6, 7, 20, 1000].map((n) => backoffDelay(n, 500, 30000, top)),
                lowest: [0, 5, 1000].map((n) => backoffDelay(n, 500, 30000, () => 0)),
            };
        }"""
    )
    assert ceilings["highest"] == [499, 999, 1999, 3999, 29999, 29999, 29999, 29999]
    assert ceilings["lowest"] == [0, 0, 0]


def test_upload_through_the_file_picker_then_transcoding_progress(page: Page, backend: FakeTidings) -> None:
    open_view(page, backend)
    content = bytes(range(256)) * 1024  # 256 KiB
    backend.hold_uploads()
    clip: FilePayload = {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": content}
    page.locator("#file-input").set_input_files(files=[clip])
    eventually(lambda: len(backend.created_jobs) == 1, "POST /jobs")
    created = backend.created_jobs[0]
    assert (created["filename"], created["contentType"], created["size"]) == (
        "clip.mp4",
        "video/mp4",
        len(content),
    )
    assert created["userId"] == USER  # the bearer token identified the caller
    job_id = created["jobId"]

    uploading = card(page, job_id)
    expect(uploading).to_have_attribute("data-stage", "uploading")
    upload_bar = uploading.locator(".upload-bar")
    expect(upload_bar).to_have_attribute("role", "progressbar")
    expect(upload_bar).to_have_attribute("aria-label", "Upload of clip.mp4")
    expect(upload_bar).to_have_attribute("aria-valuenow", "100")
    expect(uploading.locator(".upload-text")).to_contain_text("Uploading")
    eventually(lambda: job_id in backend.uploads, "the PUT")
    assert backend.uploads[job_id] == content

    backend.release_uploads()
    expect(uploading).to_have_attribute("data-stage", "uploaded")
    expect(uploading.locator(".stage")).to_have_text("Waiting for the transcoder")
    expect(uploading.locator(".upload")).to_be_hidden()
    expect(page.locator("#upload-status")).to_have_text("Uploaded clip.mp4.")

    backend.publish(job_message(job_id, 1, "transcoding", 30))
    expect(overall_bar(page, job_id)).to_have_attribute("aria-valuenow", "30")
    expect(uploading.locator(".job-name")).to_have_text("clip.mp4")


def test_local_stack_without_a_user_asks_for_one(page: Page, backend: FakeTidings) -> None:
    page.goto(f"{backend.base_url}/")
    expect(page.locator("#local-form")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    page.locator("#local-user").fill("dave")
    page.locator("#local-form button").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert page.url.endswith("/?user=dave")
    assert backend.subscribe_count("user:dave") == 1


def test_deployed_stack_settings_form_keeps_the_token_out_of_the_url(
    page: Page, backend: FakeTidings
) -> None:
    page.goto(f"{backend.base_url}/?ws={backend.ws_url}&api={backend.api_url}")
    expect(page.locator("#remote-form")).to_be_visible()
    expect(page.locator("#remote-ws")).to_have_value(backend.ws_url)
    assert "ws=" not in page.url and "api=" not in page.url

    page.locator("#remote-token").fill("not-a-token")
    page.locator("#remote-form button").click()
    expect(page.locator("#settings-error")).to_have_text(
        "The token is not a JWT (expected three dot-separated parts)."
    )

    page.locator("#remote-token").fill(backend.token_for("carol", lifetime_s=-10))
    page.locator("#remote-form button").click()
    expect(page.locator("#settings-error")).to_have_text("The token has expired; paste a fresh one.")

    backend.publish(job_message("cj", 1, "transcoding", 12, userId="carol"))
    page.locator("#remote-token").fill(backend.token_for("carol"))
    page.locator("#remote-form button").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(overall_bar(page, "cj")).to_have_attribute("aria-valuenow", "12")
    assert "token" not in page.url
    # Kept for this tab only: a reload reconnects without the form.
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(page.locator("#settings")).to_be_hidden()
    assert backend.subscribe_count("user:carol") == 2


def test_pasted_token_that_expires_stops_reconnecting_and_asks_for_a_new_one(
    page: Page, backend: FakeTidings
) -> None:
    page.goto(f"{backend.base_url}/?ws={backend.ws_url}&api={backend.api_url}")
    token = backend.token_for("carol", lifetime_s=2)
    page.locator("#remote-token").fill(token)
    page.locator("#remote-form button").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
    eventually(lambda: time.time() > expires_at + 0.2, "the token to expire", timeout_s=5)

    backend.drop_connections()
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    expect(page.locator("#remote-form")).to_be_visible()
    expect(page.locator("#settings-error")).to_have_text("The token has expired; paste a fresh one.")
    assert backend.connections_opened == 1


def test_phone_width_has_no_horizontal_overflow(page: Page, backend: FakeTidings) -> None:
    page.set_viewport_size({"width": 360, "height": 780})
    long_name = "a-very-long-file-name-without-any-spaces-" * 4 + ".mov"
    backend.publish(
        job_message(
            "phone-1",
            4,
            "transcoding",
            48,
            etaSeconds=95,
            speed=3.2,
            fps=96,
            frames=1440,
            totalFrames=3000,
            segments=[
                {"index": i, "percent": p, "state": s}
                for i, (p, s) in enumerate(
                    [
                        (100, "done"),
                        (100, "done"),
                        (70, "running"),
                        (20, "running"),
                        (0, "pending"),
                        (0, "pending"),
                    ]
                )
            ],
            input={"bucket": "in", "key": f"alice/phone-1/{long_name}"},
        )
    )
    backend.publish(
        job_message(
            "phone-2",
            6,
            "failed",
            30,
            error={"code": "probe_failed", "message": "x" * 300, "retryable": False},
        )
    )
    backend.publish(
        job_message("phone-3", 9, "completed", 100, output={"bucket": "out", "key": "alice/phone-3/out.mp4"})
    )
    open_view(page, backend)
    expect(page.locator("li.job")).to_have_count(3)
    expect(card(page, "phone-3").locator("video")).to_have_count(1)
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    for box in page.locator("li.job").evaluate_all(
        "cards => cards.map(c => c.getBoundingClientRect().right)"
    ):
        assert box <= 360
    page.screenshot(path="/tmp/progress-view-phone.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path="/tmp/progress-view-laptop.png", full_page=True)


def test_dropping_a_file_on_the_drop_zone_starts_a_job(page: Page, backend: FakeTidings) -> None:
    open_view(page, backend)
    # Playwright cannot drag a file from the desktop; dispatch the drop event a browser would.
    page.evaluate(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(4096)], "dropped.webm", { type: "video/webm" }));
            const zone = document.getElementById("dropzone");
            const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
            zone.dispatchEvent(new DragEvent("dragover", init));
            zone.dispatchEvent(new DragEvent("drop", init));
        }"""
    )
    eventually(lambda: len(backend.created_jobs) == 1, "POST /jobs")
    job_id = backend.created_jobs[0]["jobId"]
    assert backend.created_jobs[0]["filename"] == "dropped.webm"
    expect(card(page, job_id)).to_have_attribute("data-stage", "uploaded")
    assert backend.uploads[job_id] == bytes(4096)
    expect(page.locator("#dropzone")).not_to_have_class("dropzone dragging")


def test_server_error_replies_are_shown_and_the_connection_stays_up(page: Page, backend: FakeTidings) -> None:
    open_view(page, backend)
    backend.broadcast({"type": "error", "code": "internal", "message": "<i>storage</i> unavailable; retry"})
    expect(page.locator("#server-error")).to_have_text(
        "Server error (internal): <i>storage</i> unavailable; retry"
    )
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    backend.publish(job_message("after", 1, "transcoding", 5))
    expect(overall_bar(page, "after")).to_have_attribute("aria-valuenow", "5")
