"""The reporter's rate limit, heartbeat, monotonic percent and never-dropped final, on a fake clock."""

from __future__ import annotations

import itertools
import threading

from transcoder.progress import MAX_RUNNING_PERCENT, Reporter, Snapshot
from transcoder.reporting import JobPublisher, JobRef, SegmentPublisher
from transcoder.sinks import InMemorySink


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.published: list[tuple[float, Snapshot, bool]] = []

    def __call__(self, snapshot: Snapshot, final: bool) -> None:
        self.published.append((self.clock.now, snapshot, final))


def make(**kwargs: float) -> tuple[Reporter, Recorder, FakeClock]:
    clock = FakeClock()
    recorder = Recorder(clock)
    return Reporter(recorder, clock, **kwargs), recorder, clock


def test_at_most_four_events_per_second() -> None:
    reporter, recorder, clock = make()
    for step in range(1000):  # 10 s of updates every 10 ms, 1% every 0.1 s
        reporter.offer(Snapshot("transcoding", step / 10, work=step))
        clock.advance(0.01)
    times = [t for t, _, _ in recorder.published]
    assert all(b - a >= 0.25 - 1e-9 for a, b in itertools.pairwise(times))
    assert 30 <= len(times) <= 41


def test_small_steps_still_heartbeat_every_two_seconds() -> None:
    reporter, recorder, clock = make()
    for step in range(100):  # 0.05% per 0.5 s: never a 1% step
        reporter.offer(Snapshot("transcoding", 10 + step * 0.05, work=step))
        clock.advance(0.5)
    times = [t for t, _, _ in recorder.published]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 20
    assert max(gaps) <= 2.0 + 1e-9


def test_no_heartbeat_without_progress() -> None:
    reporter, recorder, clock = make()
    for _ in range(20):
        reporter.offer(Snapshot("transcoding", 5.0, work=1))
        clock.advance(1.0)
    assert len(recorder.published) == 1


def test_stage_change_is_published_once_the_interval_allows() -> None:
    reporter, recorder, clock = make()
    reporter.offer(Snapshot("probing", 0.0))
    clock.advance(0.1)
    assert not reporter.offer(Snapshot("transcoding", 2.0))  # held: too soon
    clock.advance(0.2)
    assert reporter.poll()
    assert [s.stage for _, s, _ in recorder.published] == ["probing", "transcoding"]


def test_percent_never_goes_backwards_and_stays_below_100_while_running() -> None:
    reporter, recorder, clock = make()
    for percent in (10.0, 40.0, 20.0, 100.0, 60.0):
        reporter.offer(Snapshot("transcoding", percent, work=percent))
        clock.advance(3.0)
    percents = [s.percent for _, s, _ in recorder.published]
    assert percents == sorted(percents)
    assert percents[-1] == MAX_RUNNING_PERCENT


def test_final_is_never_rate_limited_and_nothing_follows_it() -> None:
    reporter, recorder, clock = make()
    reporter.offer(Snapshot("transcoding", 50.0, work=1))
    assert reporter.finish(Snapshot("completed", 100.0))  # same instant as the last event
    assert not reporter.offer(Snapshot("transcoding", 70.0, work=2))
    assert not reporter.finish(Snapshot("failed", 0.0))
    clock.advance(5)
    assert not reporter.poll()
    assert [(s.stage, s.percent, final) for _, s, final in recorder.published] == [
        ("transcoding", 50.0, False),
        ("completed", 100.0, True),
    ]


def test_failed_keeps_the_last_percent() -> None:
    reporter, recorder, _clock = make()
    reporter.offer(Snapshot("transcoding", 63.0, work=1))
    reporter.finish(Snapshot("failed", 0.0))
    assert recorder.published[-1][1].percent == 63.0


def test_held_snapshot_is_dropped_when_the_final_arrives() -> None:
    reporter, recorder, _clock = make()
    reporter.offer(Snapshot("transcoding", 10.0, work=1))
    reporter.offer(Snapshot("transcoding", 20.0, work=2))  # held
    reporter.finish(Snapshot("completed", 100.0))
    assert [s.percent for _, s, _ in recorder.published] == [10.0, 100.0]


def test_seq_strictly_increases_across_threads() -> None:
    sink = InMemorySink()
    job = JobRef("job-1", "alice")
    publisher = JobPublisher(sink, job)

    def work() -> None:
        for i in range(50):
            publisher(Snapshot("transcoding", float(i)), False)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seqs = [event.seq for event in sink.events]
    assert sorted(seqs) == list(range(1, 201))


def test_segment_publishers_agree_on_a_weighted_rising_percent() -> None:
    sink = InMemorySink()
    job = JobRef("job-2", "alice")
    weights = {0: 75.0, 1: 25.0}
    first = SegmentPublisher(sink, job, 0, weights)
    second = SegmentPublisher(sink, job, 1, weights)
    first(Snapshot("transcoding", 100.0), False)
    second(Snapshot("transcoding", 40.0), False)
    second(Snapshot("transcoding", 10.0), False)  # a retried worker starting over
    events = sink.for_job("job-2")
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.percent for e in events] == [69.5, 78.5, 78.5]  # 2 + 90% x weighted percent
    last = events[-1].segments or []
    assert [(s.index, s.percent, s.state) for s in last] == [(0, 100.0, "done"), (1, 40.0, "running")]
