"""A redelivered event never fans out while another invocation is still delivering it."""

from __future__ import annotations

import pytest

from tidings_core import fanout, registry
from tidings_core.config import Settings
from tidings_core.models import JobState

from .conftest import bus_event


@pytest.fixture
def job(aws: Settings) -> str:
    registry.create_job("job-1", "alice")
    return "job-1"


def claim(seq: int = 1) -> registry.ClaimResult:
    return registry.claim_job_event("job-1", "alice", seq, "transcoding", 10.0, {"seq": seq})


def test_a_concurrent_redelivery_is_busy_not_a_second_fan_out(job: str) -> None:
    assert claim().claim is registry.Claim.NEW
    assert claim().claim is registry.Claim.BUSY  # the first invocation's lease is live
    registry.finish_fanout(job, 1)
    assert claim().claim is registry.Claim.DUPLICATE


def test_a_crashed_fan_out_is_resumed_once_its_lease_runs_out(
    job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert claim().claim is registry.Claim.NEW
    registry.save_fanout_cursor(job, 1, "conn-040")
    later = registry.now_ms() + registry.FANOUT_LEASE_MS + 1
    monkeypatch.setattr(registry, "now_ms", lambda: later)
    resumed = claim()
    assert (resumed.claim, resumed.cursor) == (registry.Claim.RESUME, "conn-040")
    assert claim().claim is registry.Claim.BUSY  # the resuming invocation now holds the lease
    assert JobState.get(job).fanout_lease_until == later + registry.FANOUT_LEASE_MS


def test_each_delivered_page_renews_the_lease(job: str, monkeypatch: pytest.MonkeyPatch) -> None:
    claim()
    first = JobState.get(job).fanout_lease_until
    later = registry.now_ms() + 5_000
    monkeypatch.setattr(registry, "now_ms", lambda: later)
    registry.save_fanout_cursor(job, 1, "conn-100")
    assert JobState.get(job).fanout_lease_until == later + registry.FANOUT_LEASE_MS > first


def test_notify_asks_the_bus_to_retry_when_the_fan_out_stays_busy(
    job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim()  # another invocation is delivering seq 1 and keeps its lease
    monkeypatch.setattr(fanout, "BUSY_WAIT_S", 0.3)
    monkeypatch.setattr(fanout, "BUSY_POLL_S", 0.05)
    with pytest.raises(fanout.FanOutInProgress):
        fanout.deliver_job_event(bus_event(seq=1)["detail"], event_id="ev-retry")
