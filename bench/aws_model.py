"""AWS-scale model of a job event's delivery: a discrete-event simulation on a virtual clock.

It runs the real, pure decisions of `tidings_core.shards` (layout from the first Query pages,
key ranges, sweeps, offers, supersession) over synthetic connection ids, and charges each step
with modelled services. Every figure below is listed with its source in docs/benchmarks.md
("AWS-scale model"); the CPU per post is measured here, on the real `push.Pusher` +
`ManagementApi` posting over HTTP to a server in another process. The loop is our own (a heap of
timed callbacks, ~150 lines) rather than simpy: the model needs no processes or resources beyond
two token buckets and a pool, and plain callbacks keep 100,000-post runs fast.
"""

from __future__ import annotations

import base64
import bisect
import collections
import functools
import heapq
import itertools
import math
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tidings_core import fanout, push, shards

# --- modelled services (sources: docs/benchmarks.md, "AWS-scale model") --------------------------
EVENTBRIDGE_P50_MS, EVENTBRIDGE_P99_MS = 150.0, 400.0
DYNAMODB_MS = (5.0, 10.0)  # uniform per call
INVOKE_API_MS = 15.0  # the caller's Invoke(Event) round trip (assumption)
ASYNC_QUEUE_P50_MS, ASYNC_QUEUE_P99_MS = 25.0, 100.0  # Lambda's internal queue (assumption)
INVOKE_CPU_MS = 2.0  # botocore call CPU in the caller (measured before: 1.3-2.8 ms)
COLD_START_MS = 700.0  # sandbox + import + first call (assumption over the measured import)
WARM_START_MS = 1.0
SCALE_ENVIRONMENTS, SCALE_PERIOD_S = 1000, 10.0  # new environments per function per 10 s
THROTTLE_BURST = 5000  # API Gateway account burst
POST_THREADS = push.MAX_WORKERS  # push.Pusher's posters
API_LATENCIES_MS = (10.0, 20.0, 40.0)  # management API per post: an assumption (AWS publishes none)


def _lognormal(rng: random.Random, p50: float, p99: float) -> float:
    if p99 <= p50:
        return p50
    sigma = math.log(p99 / p50) / 2.326
    return rng.lognormvariate(math.log(p50), sigma)


@dataclass(frozen=True)
class Services:
    """The modelled services' figures: AWS's by default (sources above), or the local stack's as
    measured (bench/model_validation.py)."""

    eventbridge_ms: tuple[float, float] = (EVENTBRIDGE_P50_MS, EVENTBRIDGE_P99_MS)  # p50, p99
    dynamodb_ms: tuple[float, float] = DYNAMODB_MS  # uniform per call
    query_ms_per_item: float = 0.0  # a Query's extra time per item returned (DynamoDB: negligible)
    invoke_api_ms: float = INVOKE_API_MS
    async_queue_ms: tuple[float, float] = (ASYNC_QUEUE_P50_MS, ASYNC_QUEUE_P99_MS)
    cold_start_ms: float = COLD_START_MS
    # None: the management API answers every post after api_ms (AWS: a fleet). A number: one
    # server answering at most this many posts per second, in turn (the local stack's gateway)
    api_capacity_rps: float | None = None


AWS = Services()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, next(self._order), action))

    def run(self) -> None:
        while self._heap:
            self.now, _, action = heapq.heappop(self._heap)
            action()


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.when = rate, burst, burst, 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.when) * self.rate)
        self.when = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Sender:
    """What a container's `push.Pusher` keeps from one invocation to the next: its window and pacer."""

    window: push.SendWindow
    pacer: push.Pacer


class Environments:
    """One function's execution environments: warm ones reused, new ones cold and rate-limited.

    Each environment keeps its container's Sender (the Pusher lives as long as the container),
    handed to every invocation it runs; its pacer knows the account throttle the stack is
    configured with (`MANAGEMENT_API_RPS`/`_BURST`, set here to the modelled throttle)."""

    def __init__(self, clock: Clock, rate: float, burst: float, cold_start_ms: float = COLD_START_MS) -> None:
        self.clock, self.rate, self.burst, self.cold_start_ms = clock, rate, burst, cold_start_ms
        self.free: list[Sender] = []
        self.scaling = TokenBucket(SCALE_ENVIRONMENTS / SCALE_PERIOD_S, SCALE_ENVIRONMENTS)
        self.waiting: list[Callable[[Sender], None]] = []

    def start(self, run: Callable[[Sender], None]) -> None:
        if self.free:
            sender = self.free.pop()
            self.clock.at(self.clock.now + WARM_START_MS / 1000, lambda: run(sender))
        elif self.scaling.take(self.clock.now):
            ready = self.clock.now + self.cold_start_ms / 1000
            fresh = Sender(push.SendWindow(POST_THREADS), push.Pacer(self.rate, self.burst, ready))
            self.clock.at(ready, lambda: run(fresh))
        else:
            self.waiting.append(run)
            self.clock.at(self.clock.now + 0.1, self._retry)

    def _retry(self) -> None:
        if self.waiting:
            self.start(self.waiting.pop(0))

    def release(self, sender: Sender) -> None:
        self.free.append(sender)


@dataclass
class World:
    rng: random.Random
    ids: list[str]
    api_ms: float
    cpu_post_ms: float
    throttle: TokenBucket
    services: Services = AWS
    clock: Clock = field(default_factory=Clock)
    items: dict[str, tuple[shards.ShardItem, int]] = field(default_factory=dict)  # key -> item, msg seq
    received: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    layout: int | None = None
    lambda_s: float = 0.0  # busy time of notify and deliver environments
    writes: int = 0
    requests: int = 0
    posts: int = 0  # POSTs sent, throttled ones included
    throttled: int = 0  # 429s
    failed: int = 0  # posts given up after push.MAX_ATTEMPTS 429s
    api_free: float = 0.0  # when the one local management API server is next free

    def answer_at(self, sent: float) -> float:
        """When a post sent at `sent` is answered."""
        latest = sent + self.api_ms / 1000
        capacity = self.services.api_capacity_rps
        if capacity is None:
            return latest
        self.api_free = max(self.api_free, sent) + 1 / capacity
        return max(latest, self.api_free)

    def query(self, items: int) -> float:
        return self.ddb() + items * self.services.query_ms_per_item / 1000

    def ddb(self) -> float:
        return self.rng.uniform(*self.services.dynamodb_ms) / 1000


def _within(ids: list[str], window: shards.KeyRange, limit: int) -> list[str]:
    lo = 0
    if window.lower is not None:
        cut = bisect.bisect_left if window.lower_inclusive else bisect.bisect_right
        lo = cut(ids, window.lower)
    hi = len(ids)
    if window.upper is not None:
        cut = bisect.bisect_right if window.upper_inclusive else bisect.bisect_left
        hi = cut(ids, window.upper)
    return ids[lo : min(hi, lo + limit)]


class ShardRun:
    """One invocation sweeping one shard: the real sweep decisions, modelled time."""

    def __init__(
        self,
        world: World,
        key: str,
        shard: shards.KeyRange,
        ids: list[str],
        env: Environments,
        sender: Sender,  # the environment's (its Pusher's)
        share: int,  # the layout: this shard paces itself to 1/share of the throttle
        known: bool = False,  # its task carries its ids (fanout.shard_tasks): no Query of its own
    ) -> None:
        self.w, self.key, self.shard, self.ids, self.env = world, key, shard, ids, env
        self.sender, self.share, self.known = sender, share, known
        self.owner = f"{key}:{world.rng.random()}"

    def offer(self, seq: int) -> None:
        w = self.w
        stored = w.items.get(self.key)
        item = stored[0] if stored else None
        decision = shards.decide_offer(item, seq, int(w.clock.now * 1000))
        if decision in (shards.Offer.HAND_OVER,):
            assert item is not None
            w.items[self.key] = (
                shards.ShardItem(seq, item.sweep, False, item.owner, item.lease_until, 0),
                seq,
            )
        if decision is not shards.Offer.TAKE:
            self.env.release(self.sender)
            return
        self.sweep = shards.sweep_after_offer(item, decision, seq)
        self.sender.pacer = self.sender.pacer.shared(self.share, w.clock.now)  # Pusher.pace
        self.started = w.clock.now
        w.requests += 1
        self._store()
        # registry.offer_shard: a shard with no item, or whose last sweep of an older seq ran to its
        # end, is taken with one conditional UpdateItem; otherwise that write fails, and the item
        # is read and written (GetItem + UpdateItem)
        at_once = item is None or (item.done and item.seq < seq and item.sweep.seq < seq)
        wait = w.ddb() if at_once else 3 * w.ddb()
        if self.share > 1 and not self.known:  # a deliver invocation reads its range, unless
            wait += w.query(min(len(self.ids), 1000))  # its task carries the ids notify read
        w.clock.at(w.clock.now + wait, self.page)

    def _store(self, done: bool = False) -> None:
        self.w.writes += 1
        lease = int(self.w.clock.now * 1000) + 20_000 if not done else 0
        self.w.items[self.key] = (
            shards.ShardItem(self.sweep.seq, self.sweep, done, self.owner, lease, 0),
            self.sweep.seq,
        )

    def page(self) -> None:
        w = self.w
        todo = _within(self.ids, shards.next_range(self.sweep, self.shard), fanout.PAGE_SIZE)
        if not todo:
            following = shards.part_exhausted(self.sweep)
            if following is not None:
                self.sweep = following
                w.clock.at(w.clock.now + w.ddb(), self.page)  # a Query for the next part
                return
            newer = w.items[self.key][0].seq
            if newer > self.sweep.seq:
                self.sweep = shards.supersede(self.sweep, newer, finished=True)
                w.clock.at(w.clock.now + 2 * w.ddb(), self.page)
                return
            self._store(done=True)
            w.lambda_s += w.clock.now - self.started
            self.env.release(self.sender)
            return
        self._post_page(todo)

    def _post_page(self, todo: list[str]) -> None:
        """push.Pusher on the virtual clock: POST_THREADS posters (its `max_workers` coroutines on
        the posting loop; "threads" below), at most `window.size` posts in
        flight (the real `push.SendWindow`), each needing cpu_post_ms on the one vCPU, then
        api_ms; a 429 shrinks the window and the post is retried after `push.retry_delay`,
        given up after push.MAX_ATTEMPTS."""
        w, window, pacer = self.w, self.sender.window, self.sender.pacer
        seq = self.sweep.seq
        state = {"cpu_free": w.clock.now, "left": len(todo), "threads": POST_THREADS}
        pending = collections.deque(todo)  # not started: no thread yet
        ready: collections.deque[str] = collections.deque()  # holding a thread, waiting for the window
        attempts: dict[str, int] = {}

        def pump() -> None:
            while pending and state["threads"]:
                state["threads"] -= 1
                ready.append(pending.popleft())
            while ready and not window.full():
                send(ready.popleft())

        def send(cid: str) -> None:
            ticket = window.sent()
            w.posts += 1
            start = max(w.clock.now + pacer.reserve(w.clock.now), state["cpu_free"])
            state["cpu_free"] = start + w.cpu_post_ms / 1000
            passed = w.throttle.take(state["cpu_free"])
            answer = w.answer_at(state["cpu_free"])
            w.clock.at(answer, lambda: answered(cid, ticket, passed))

        def answered(cid: str, ticket: int, passed: bool) -> None:
            window.answered(ticket, throttled=not passed)
            if passed:
                w.received.setdefault(cid, []).append((w.clock.now, seq))
                finished()
            else:
                w.throttled += 1
                attempts[cid] = attempts.get(cid, 0) + 1
                if attempts[cid] < push.MAX_ATTEMPTS:
                    pause = push.retry_delay(attempts[cid], w.rng.uniform)
                    w.clock.at(w.clock.now + pause, lambda: retry(cid))
                else:
                    w.failed += 1
                    finished()
            pump()

        def retry(cid: str) -> None:
            ready.append(cid)
            pump()

        def finished() -> None:
            state["threads"] += 1
            state["left"] -= 1
            if state["left"] == 0:
                self._checkpoint(todo[-1])

        pump()

    def _checkpoint(self, last: str) -> None:
        w = self.w
        self.sweep = shards.delivered(self.sweep, last)
        newer = w.items[self.key][0].seq
        if newer > self.sweep.seq:
            self.sweep = shards.supersede(self.sweep, newer)
        self._store()
        w.clock.at(w.clock.now + w.ddb(), self.page)  # checkpoint write; the next page was prefetched


@dataclass
class Functions:
    notify: Environments
    deliver: Environments


def publish(w: World, fns: Functions, seq: int, at: float) -> None:
    """PutEvents at `at`: EventBridge → notify → inline or one asynchronous invoke per shard."""

    def notify(sender: Sender) -> None:
        # the claim, then the first page of each topic (up to registry.QUERY_PAGE_SIZE ids), both
        # Queries at once (fanout.first_pages)
        t = w.clock.now + w.ddb() + max(w.query(min(len(w.ids), 1000)), w.query(0))
        complete = len(w.ids) <= 1000
        first = [shards.FirstPage(w.ids[:1000], complete), shards.FirstPage([], True)]
        w.layout = shards.choose_layout(shards.estimate_total(first), w.layout)
        layout = w.layout
        if layout == 1:
            run = ShardRun(w, "job/1/0", shards.EVERYTHING, w.ids, fns.notify, sender, 1)
            w.clock.at(t, lambda: run.offer(seq))
            return
        fns.notify.release(sender)
        threads = min(fanout.INVOKE_THREADS, layout)
        for i in range(layout):
            invoke_ms = w.services.invoke_api_ms
            sent = t + (i // threads + 1) * invoke_ms / 1000 + (i + 1) * INVOKE_CPU_MS / 1000
            queued = sent + _lognormal(w.rng, *w.services.async_queue_ms) / 1000
            shard = shards.shard_range(layout, i)
            ids = _within(w.ids, shard, len(w.ids))

            def deliver(
                sender: Sender,
                key: str = f"job/{layout}/{i}",
                shard: shards.KeyRange = shard,
                ids: list[str] = ids,
            ) -> None:
                ShardRun(w, key, shard, ids, fns.deliver, sender, layout, complete).offer(seq)

            w.clock.at(queued, functools.partial(fns.deliver.start, deliver))

    delay = _lognormal(w.rng, *w.services.eventbridge_ms) / 1000
    w.clock.at(at + delay, lambda: fns.notify.start(notify))


def connection_ids(n: int, rng: random.Random) -> list[str]:
    return sorted({base64.urlsafe_b64encode(rng.randbytes(11)).decode() for _ in range(n)})


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_event(
    n: int, rps: float, api_ms: float, cpu_post_ms: float, seed: int, services: Services = AWS
) -> dict[str, float]:
    """p50/p99 of arrivals of one event after a warm-up event (environments warm)."""
    rng = random.Random(seed)
    throttle = TokenBucket(rps, THROTTLE_BURST)
    w = World(rng, connection_ids(n, rng), api_ms, cpu_post_ms, throttle, services)
    fns = Functions(
        Environments(w.clock, rps, THROTTLE_BURST, services.cold_start_ms),
        Environments(w.clock, rps, THROTTLE_BURST, services.cold_start_ms),
    )
    publish(w, fns, 1, 0.0)
    w.clock.run()
    w.received.clear()
    w.lambda_s, w.writes, w.requests, w.posts, w.throttled, w.failed = 0.0, 0, 0, 0, 0, 0
    start = w.clock.now + 60.0  # a minute later: warm environments, a full throttle bucket
    publish(w, fns, 2, start)
    w.clock.run()
    arrivals = [(t - start) * 1000 for got in w.received.values() for t, seq in got if seq == 2]
    assert len(arrivals) + w.failed == n, (len(arrivals), w.failed, n)
    late = arrivals + [math.inf] * w.failed  # a post given up counts as never arriving
    return {
        "p50_ms": _percentile(late, 0.5),
        "p99_ms": _percentile(late, 0.99),
        "throttled_per_post": w.throttled / n,
        "failed": w.failed,
        **_cost(w, n),
    }


# list prices, US East (docs/benchmarks.md "Cost assumptions")
GB_S_USD, REQUEST_USD, MESSAGE_USD, WRITE_USD, EVENT_USD = 0.0000133334, 0.2e-6, 1.0e-6, 0.625e-6, 1.0e-6
MEMORY_GB = 1769 / 1024


def _cost(w: World, deliveries: int) -> dict[str, float]:
    """$ per million deliveries of the measured event (the second), from the model's own tallies."""
    dollars = (
        w.lambda_s * MEMORY_GB * GB_S_USD
        + (w.requests + 1) * REQUEST_USD
        + deliveries * MESSAGE_USD
        + (w.writes + 1) * WRITE_USD
        + EVENT_USD
    )
    return {"usd_per_million": dollars / deliveries * 1e6}


def starvation(
    n: int, rate: float, seconds: float, api_ms: float, cpu_post_ms: float, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
    w = World(rng, connection_ids(n, rng), api_ms, cpu_post_ms, TokenBucket(10_000, THROTTLE_BURST))
    fns = Functions(
        Environments(w.clock, 10_000, THROTTLE_BURST), Environments(w.clock, 10_000, THROTTLE_BURST)
    )
    events = int(rate * seconds)
    for k in range(events):
        publish(w, fns, k + 1, k / rate)
    w.clock.run()
    gaps = []
    final = 0
    for cid in w.ids:
        got = w.received.get(cid, [])
        times = [t for t, _ in got]
        if got and got[-1][1] == events:
            final += 1
        if times:
            gaps.append(max(b - a for a, b in itertools.pairwise([times[0], *times])) * 1000)
    return {"max_gap_ms": max(gaps), "final_received": final / n}


def measure_cpu_per_post(posts: int = 1500) -> float:
    """CPU ms per post of the real Pusher + ManagementApi (SigV4, urllib3), server in another process."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        from botocore.credentials import Credentials

        api = push.ManagementApi(
            f"http://127.0.0.1:{port}/dev",
            credentials=Credentials("AKIDEXAMPLE", "secret"),
            region="us-east-1",
        )
        pusher = push.Pusher(api)
        ids = [f"conn{n:06d}=" for n in range(posts)]
        pusher.post_many(ids[:100], b'{"seq":1}')  # warm the pool
        started = time.process_time()
        results = pusher.post_many(ids, b'{"type":"progress","seq":1,"percent":50}')
        cpu = time.process_time() - started
        assert all(r.outcome is push.Outcome.DELIVERED for r in results)
        pusher.close()
        return cpu * 1000 / posts
    finally:
        server.kill()
        server.wait()


_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def run(seeds: int = 3, starvation_seconds: float = 30.0) -> dict[str, Any]:
    cpu_post_ms = measure_cpu_per_post()
    out: dict[str, Any] = {"cpu_post_ms": round(cpu_post_ms, 3), "seeds": seeds}
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731 - tiny local helper
    for n in (1000, 10_000, 100_000):
        row: dict[str, Any] = {}
        for name, rps in (("default", 10_000.0), ("raised", 100_000.0)):
            runs = [one_event(n, rps, 20.0, cpu_post_ms, seed) for seed in range(seeds)]
            row[name] = {k: round(median([r[k] for r in runs]), 1) for k in ("p50_ms", "p99_ms")}
        row["by_api_latency_raised"] = {
            f"{api:g}": round(
                median([one_event(n, 100_000.0, api, cpu_post_ms, s)["p99_ms"] for s in range(seeds)]), 1
            )
            for api in API_LATENCIES_MS
        }
        out[str(n)] = row
    out["cost_per_million_usd"] = round(
        median(
            [one_event(100_000, 100_000.0, 20.0, cpu_post_ms, s)["usd_per_million"] for s in range(seeds)]
        ),
        4,
    )
    runs = [starvation(10_000, 4.0, starvation_seconds, 20.0, cpu_post_ms, seed) for seed in range(seeds)]
    out["starvation"] = {
        "max_gap_ms": round(median([r["max_gap_ms"] for r in runs]), 1),
        "final_received": median([r["final_received"] for r in runs]),
    }
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(seeds=int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=1))
