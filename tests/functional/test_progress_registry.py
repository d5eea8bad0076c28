"""Job creation and the parallel workers' progress counter (registry.create_job / next_progress)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pynamodb.exceptions import PutError

from tidings.local.aws import make_dynamodb_atomic
from tidings_core import registry
from tidings_core.config import Settings
from tidings_core.models import JobState


def test_create_job_is_queued_at_seq_zero_and_refuses_a_second_create(aws: Settings) -> None:
    registry.create_job("job-1", "alice", input={"bucket": "b", "key": "k"})
    job = JobState.get("job-1")
    assert (job.user_id, job.stage, job.seq, job.progress_seq) == ("alice", "queued", 0, 0)
    assert job.input.as_dict() == {"bucket": "b", "key": "k"}
    assert 0 < job.ttl.timestamp() - job.updated_at / 1000 <= 7 * 86400
    with pytest.raises(PutError):
        registry.create_job("job-1", "mallory")
    assert JobState.get("job-1").user_id == "alice"


def test_each_tick_takes_the_next_seq_and_segment_percents_only_rise(aws: Settings) -> None:
    registry.create_job("job-1", "alice")
    first = registry.next_progress("job-1", segment=0, segment_percent=40.0, segment_count=4)
    assert (first.seq, first.segment_percents, first.segment_count, first.percent) == (1, {0: 40.0}, 4, 10.0)
    second = registry.next_progress("job-1", segment=1, segment_percent=100.0)
    assert second.seq == 2 and second.segment_percents == {0: 40.0, 1: 100.0} and second.percent == 35.0
    lower = registry.next_progress("job-1", segment=0, segment_percent=5.0)  # a retried segment restarts
    assert lower.seq == 3 and lower.segment_percents[0] == 40.0
    plain = registry.next_progress("job-1")
    assert plain.seq == 4 and plain.percent == 35.0


def test_concurrent_workers_get_distinct_increasing_seqs(aws: Settings) -> None:
    # DynamoDB applies each UpdateItem on an item atomically; moto's handler does not serialize
    # concurrent calls (a busy machine interleaves its copy-check-write-serialize and a tick reads
    # another's counter or fails and is retried). The local stack gives it that atomicity; so here.
    make_dynamodb_atomic()  # for the rest of this process too, which is only closer to DynamoDB
    registry.create_job("job-1", "alice")

    def tick(n: int) -> int:
        return registry.next_progress("job-1", segment=n % 4, segment_percent=float(n), segment_count=4).seq

    with ThreadPoolExecutor(max_workers=4) as pool:
        seqs = list(pool.map(tick, range(24)))
    assert sorted(seqs) == list(range(1, 25))
    final = registry.next_progress("job-1")
    assert final.segment_percents == {i: float(max(n for n in range(24) if n % 4 == i)) for i in range(4)}


def test_progress_of_an_unknown_job_is_refused(aws: Settings) -> None:
    with pytest.raises(registry.JobNotFound):
        registry.next_progress("nope", segment=0, segment_percent=1.0)
    with pytest.raises(registry.JobNotFound):
        registry.next_progress("nope")
    assert registry.get_job("nope") is None


@pytest.mark.parametrize(
    "kwargs", [{"segment": 0}, {"segment_percent": 5.0}, {"segment": 0, "segment_percent": 101.0}]
)
def test_bad_progress_arguments(aws: Settings, kwargs: dict[str, float]) -> None:
    registry.create_job("job-1", "alice")
    with pytest.raises(ValueError):
        registry.next_progress("job-1", **kwargs)  # type: ignore[arg-type]
