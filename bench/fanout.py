"""Fan-out, connect rate, boto3 posts and Lambda time per delivery, on the real local stack.

One fan-out run holds four sets of contenders side by side on the same machine:

- Tidings: N clients connect with tokens (authorizer + `$connect`) and subscribe to one job;
  one `JobProgress` event is published with PutEvents on the embedded bus, and the stack's
  rule invokes notify, which posts through `@connections`.
- the AWS-samples pattern (`bench.sequential`, its own process): Scan the connections table,
  post to one connection at a time, through the same `@connections` endpoint to the same clients.
- the HTTP floor (`bench.http_floor`, its own process; `bench.floor_poster`, its own process):
  the same N posts, from one process with notify's own poster (`push.Pusher`: 32 posts in flight
  on one asyncio loop, SigV4-signed keep-alive connections), to a bare HTTP server that writes
  each body to its WebSocket client (another N clients) with no gateway logic: the physical
  limit of the design on this machine.
- the ceiling (`bench.raw_server`, its own process): a bare `websockets.broadcast` of the same
  bytes to another N clients; it skips the HTTP call API Gateway imposes, so it is no floor.

Latency is publish (just before the PutEvents / stdin line / control frame; for the floor, the
poster's first post) to receive, per client, on the machine's monotonic clock. Each repeat runs
the four back to back. Duplicates are counted on the raw frames (bench.clients).

Beside the fan-out, on the same stack: the connect rate at 1 and 20 handshakes in flight, and
`@connections` posts from a 16-thread boto3 client (`bench.posts`) against the stack and against
a bare server that only answers 200 (`bench.http_floor --bare`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from websockets.asyncio.client import ClientConnection, connect

from bench import cpu_accounting
from bench.clients import ClientPool
from bench.processes import Child, rss_kb
from bench.sequential import connection_ids
from bench.stack_process import raise_open_files_limit
from bench.stats import median, median_ratio, percentile, rate, rounded

BENCH_USER = "bench-user"
SUBPROTOCOL = "tidings.v1"
NOTIFY_FUNCTION = "NotifyFunction"
# the functions that spend Lambda time on a delivery: notify, and the shards it hands a large
# audience to (more than shards.INLINE_MAX recipients)
DELIVERY_FUNCTIONS = (NOTIFY_FUNCTION, "DeliverFunction")
ROUND_TIMEOUT_S = 180.0
DUPLICATE_GRACE_S = 0.25  # after the last arrival, how long late duplicates are still counted
GOAL_VS_SEQUENTIAL = 3.0
GOAL_VS_FLOOR = 0.5
GOAL_P99_MS = 600.0
GOAL_CONNECT_RATE_20 = 150.0
GOAL_POSTS_VS_BARE = 0.8
PARTS = ("connect_rate", "fanout", "posts")  # what `run` can measure on one stack
POSTS_ALONE_CLIENTS = 100  # connections the posts comparison opens when no fan-out ran before it


@dataclass(frozen=True)
class Round:
    """One publish to N clients."""

    delivered: int
    missing: int
    p50_ms: float | None
    p99_ms: float | None
    deliveries_per_s: float | None
    duplicates: int = 0  # raw frames of this message beyond the first on a connection


def summarize_round(published_at: float, arrivals: list[float | None], duplicates: int = 0) -> Round:
    """Latencies from `published_at` (perf_counter seconds); a client without its message is missing.

    Deliveries per second: the clients that got the message over the time to the last of them."""
    latencies = [(a - published_at) * 1000 for a in arrivals if a is not None]
    missing = len(arrivals) - len(latencies)
    if not latencies:
        return Round(0, missing, None, None, None, duplicates)
    span_s = max(latencies) / 1000
    return Round(
        delivered=len(latencies),
        missing=missing,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        deliveries_per_s=rate(len(latencies), span_s) if span_s > 0 else None,
        duplicates=duplicates,
    )


def _median_of(rounds: list[Round], field: str) -> float | None:
    values = [v for r in rounds if (v := getattr(r, field)) is not None]
    return median(values) if values else None


def summarize_size(
    tidings: list[Round], sequential: list[Round], raw: list[Round], floor: list[Round]
) -> dict[str, Any]:
    """Medians over repeats, and paired ratios of deliveries per second (same repeat).

    `vs_http_floor` = Tidings' deliveries/s ÷ the HTTP floor's, each from its start (PutEvents;
    the floor's first post) to its last arrival, as a median of the repeats' ratios."""

    def dps(r: Round) -> float:
        return r.deliveries_per_s or 0.0

    def versus(others: list[Round]) -> float | None:
        return rounded(median_ratio([(dps(t), dps(o)) for t, o in zip(tidings, others, strict=True)]))

    def side(rounds: list[Round]) -> dict[str, Any]:
        return {
            "p50_ms": rounded(_median_of(rounds, "p50_ms"), 1),
            "p99_ms": rounded(_median_of(rounds, "p99_ms"), 1),
            "deliveries_per_s": rounded(_median_of(rounds, "deliveries_per_s"), 0),
            "missing": sum(r.missing for r in rounds),
            "duplicates": sum(r.duplicates for r in rounds),
        }

    own = side(tidings)
    return {
        "vs_sequential": versus(sequential),
        "vs_http_floor": versus(floor),
        "vs_raw_broadcast": versus(raw),
        **own,
        "repeats": len(tidings),
        "sequential": side(sequential),
        "http_floor": side(floor),
        "raw_broadcast": side(raw),
    }


def posts_summary(stack_rounds: list[dict[str, Any]], bare_rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """boto3 posts per second against the stack and the bare server, paired by repeat.

    A round is `bench.posts`' report: `{"posts", "ok", "failed", "seconds"}`; a post that failed
    does not count as done."""

    def per_s(round_: dict[str, Any]) -> float:
        return rate(int(round_["ok"]), float(round_["seconds"]))

    pairs = [(per_s(s), per_s(b)) for s, b in zip(stack_rounds, bare_rounds, strict=True)]

    def cpu_ms_per_post(rounds: list[dict[str, Any]], key: str) -> float | None:
        values = [float(r[key]) * 1000 / int(r["posts"]) for r in rounds if key in r and int(r["posts"])]
        return rounded(median(values), 3) if values else None

    return {
        "posts_vs_bare_server": rounded(median_ratio(pairs)),
        "stack_posts_per_s": rounded(median([s for s, _ in pairs]), 0),
        "bare_posts_per_s": rounded(median([b for _, b in pairs]), 0),
        "failed": sum(int(r["failed"]) for r in [*stack_rounds, *bare_rounds]),
        "repeats": len(pairs),
        # CPU ms per post: of the stack's process (gateway, @connections) and of the boto3 poster
        "stack_cpu_ms_per_post": cpu_ms_per_post(stack_rounds, "stack_cpu_s"),
        "poster_cpu_ms_per_post": {
            "stack": cpu_ms_per_post(stack_rounds, "poster_cpu_s"),
            "bare": cpu_ms_per_post(bare_rounds, "poster_cpu_s"),
        },
    }


def invocation_profile(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per function of the stack's invocation records: how many, how many cold, median ms."""
    profile: dict[str, Any] = {}
    for function in sorted({str(r["function"]) for r in records}):
        mine = [r for r in records if r["function"] == function]
        profile[function] = {
            "invocations": len(mine),
            "cold": sum(1 for r in mine if r.get("cold")),
            "median_ms": round(median([float(r["durationMs"]) for r in mine]), 1),
        }
    return profile


def connect_rate_summary(
    rates_by_level: dict[int, list[float]],
    per_level: int,
    path: str,
    invocations: dict[int, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """`{"1": per s, "20": per s, ...}` (medians over repeats) and how they were taken; with the
    stack's invocation records of each level, what its functions did (`invocation_profile`)."""
    summary: dict[str, Any] = {str(level): round(median(rates), 1) for level, rates in rates_by_level.items()}
    if invocations:
        summary["functions"] = {
            str(level): invocation_profile(records) for level, records in invocations.items()
        }
    return summary | {
        "levels": sorted(rates_by_level),
        "per_level": per_level,
        "samples": min((len(r) for r in rates_by_level.values()), default=0),
        "path": path,
        "aws_default_quota_per_s": 500,
    }


def connect_levels_of(connect_rate: dict[str, Any]) -> dict[int, float]:
    """The measured levels of a `connect_rate_summary` (concurrency -> connections per second)."""
    return {int(level): float(connect_rate[str(level)]) for level in connect_rate.get("levels", [])}


def ms_per_1000_deliveries(durations_ms: list[float], deliveries: int) -> float:
    if deliveries <= 0:
        raise ValueError("no deliveries")
    return sum(durations_ms) / deliveries * 1000


@contextlib.contextmanager
def local_aws_environment(endpoint: str, region: str, credentials: dict[str, str]) -> Iterator[None]:
    """boto3 and pynamodb in this process (and its children) talk to the embedded services with
    the run's admin key (`AWS_ACCESS_KEY_ID`, ...: the stack's `Credentials.environment()`)."""
    values = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": region,
        **credentials,
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stack_client(service: str) -> Any:
    """A boto3 client of the stack now in `local_aws_environment`, from a new session: boto3's
    default session keeps the credentials it first resolved, which a later stack (another run's
    admin key) refuses."""
    return boto3.Session().client(service)  # type: ignore[call-overload]


def bench_token(ready: dict[str, Any], user: str) -> str:
    """A token for `user`, signed with the stack's secret (read through the embedded Secrets Manager
    with the run's admin key: `local_aws_environment` must be in force)."""
    from tidings_core.tokens import issue_token

    secrets = stack_client("secretsmanager")
    secret = secrets.get_secret_value(SecretId=ready["token_secret_id"])["SecretString"]
    return issue_token(secret, user, 3 * 3600, audience=ready["token_audience"])


class StackSession:
    """The stack child, its invocation records, a token and one job owned by the bench user."""

    def __init__(self, child: Child, ready: dict[str, Any]) -> None:
        self.child = child
        self.ready = ready
        self.invocations: list[dict[str, Any]] = []
        child.on_line = self._record
        self.job_id = f"bench-{int(time.time() * 1000)}"
        self.seq = 0
        self.events = stack_client("events")
        self.token = self._token()
        self._create_job()

    def _record(self, line: dict[str, Any]) -> bool:
        if "function" in line and "durationMs" in line:
            self.invocations.append(line)
            return True
        return False

    def _token(self) -> str:
        return bench_token(self.ready, BENCH_USER)

    def _create_job(self) -> None:
        from tidings_core import registry
        from tidings_core.config import Settings

        registry.configure(
            Settings(
                connections_table=self.ready["connections_table"],
                subscriptions_table=self.ready["subscriptions_table"],
                jobs_table=self.ready["jobs_table"],
            )
        )
        registry.create_job(self.job_id, BENCH_USER)

    def invocations_of(self, function: str) -> list[dict[str, Any]]:
        return [r for r in self.invocations if r.get("function") == function]

    def publish(self) -> str:
        """PutEvents one progress event for the job; returns the marker its message carries."""
        self.seq += 1
        detail = {
            "version": 1,
            "jobId": self.job_id,
            "userId": BENCH_USER,
            "seq": self.seq,
            "stage": "transcoding",
            "percent": min(99.0, float(self.seq)),
            "emittedAt": int(time.time() * 1000),
        }
        response = self.events.put_events(
            Entries=[
                {
                    "Source": "tidings.transcode",
                    "DetailType": "JobProgress",
                    "Detail": json.dumps(detail),
                    "EventBusName": self.ready["event_bus_name"],
                }
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents failed: {response['Entries']}")
        return marker(self.seq)

    def next_marker(self) -> str:
        return marker(self.seq + 1)

    def subscriber(self) -> Any:
        frame = json.dumps({"action": "subscribe", "topic": f"job:{self.job_id}"})

        async def subscribe(ws: ClientConnection) -> None:
            await ws.send(frame)
            for _ in range(10):  # subscribed, then snapshot; bounded in case of stray messages
                reply = json.loads(await ws.recv())
                if reply.get("type") == "snapshot":
                    return
                if reply.get("type") == "error":
                    raise RuntimeError(f"subscribe refused: {reply}")
            raise RuntimeError("no snapshot after subscribe")

        return subscribe


def marker(seq: int) -> str:
    """A substring only the message of this seq contains (compact JSON: `"seq":N,`)."""
    return f'"seq":{seq},'


async def _tidings_round(session: StackSession, pool: ClientPool) -> tuple[Round, str]:
    pool.arm(session.next_marker())
    started = time.perf_counter()
    await asyncio.to_thread(session.publish)
    arrivals = await pool.collect(ROUND_TIMEOUT_S, grace_s=DUPLICATE_GRACE_S)
    if pool.sample is None:
        raise RuntimeError("no client received the published event")
    return summarize_round(started, arrivals, pool.duplicates), pool.sample


class Floor:
    """The HTTP floor: its server, its poster and its own N clients (with their connection ids)."""

    def __init__(self, server: Child, poster: Child, ws_url: str) -> None:
        self.server = server
        self.poster = poster
        self.ws_url = ws_url
        self.pool = ClientPool()
        self.ids: list[str] = []
        self._sent_ids = 0

    @classmethod
    async def start(cls) -> Floor:
        server = await Child.start("bench.http_floor")
        ports = await server.next_json(60)
        poster = await Child.start(
            "bench.floor_poster", "--endpoint", f"http://127.0.0.1:{ports['http_port']}"
        )
        await poster.next_json(60)
        return cls(server, poster, f"ws://127.0.0.1:{ports['ws_port']}/")

    async def grow(self, size: int) -> None:
        async def learn_id(ws: ClientConnection) -> None:
            self.ids.append(str(json.loads(await ws.recv())["connectionId"]))

        await self.pool.grow(self.ws_url, size, concurrency=100, on_open=learn_id)

    async def round(self, message: str, mark: str) -> Round:
        self.pool.arm(mark)
        request: dict[str, Any] = {"data": message}
        if self._sent_ids != len(self.ids):
            request["ids"] = self.ids
            self._sent_ids = len(self.ids)
        await self.poster.send_line(json.dumps(request))
        report = await self.poster.next_json(ROUND_TIMEOUT_S)
        arrivals = await self.pool.collect(ROUND_TIMEOUT_S, grace_s=DUPLICATE_GRACE_S)
        return summarize_round(float(report["first_post_at"]), arrivals, self.pool.duplicates)

    async def stop(self) -> None:
        await self.pool.close()
        await self.poster.stop()
        await self.server.stop()


async def _sequential_round(sequential: Child, pool: ClientPool, message: str, mark: str) -> Round:
    pool.arm(mark)
    started = time.perf_counter()
    await sequential.send_line(message)
    arrivals = await pool.collect(ROUND_TIMEOUT_S)
    await sequential.next_json(ROUND_TIMEOUT_S)  # its own report of the round; the clients' clock counts
    return summarize_round(started, arrivals)


async def _raw_round(control: ClientConnection, pool: ClientPool, message: str, mark: str) -> Round:
    pool.arm(mark)
    started = time.perf_counter()
    await control.send(message)
    return summarize_round(started, await pool.collect(ROUND_TIMEOUT_S))


CONNECT_PATH = "websockets client -> local gateway -> AuthorizerFunction -> ConnectFunction (moto DynamoDB)"


async def connect_rate(
    session: StackSession, concurrency_levels: tuple[int, ...], per_level: int, repeats: int
) -> dict[str, Any]:
    """New connections per second through authorizer + `$connect` (with a token), per concurrency.

    Levels alternate within each repeat (1, 20, 1, 20, ...), so a slow spell of the shared machine
    does not land on one level only."""
    url = session.ready["websocket_url"]
    rates: dict[int, list[float]] = {level: [] for level in concurrency_levels}
    records: dict[int, list[dict[str, Any]]] = {level: [] for level in concurrency_levels}
    for _ in range(repeats):
        for concurrency in concurrency_levels:
            pool = ClientPool()
            disconnects = len(session.invocations_of("DisconnectFunction"))
            before = len(session.invocations)
            started = time.perf_counter()
            await pool.grow(
                url, per_level, concurrency=concurrency, subprotocols=[SUBPROTOCOL, session.token]
            )
            rates[concurrency].append(rate(per_level, time.perf_counter() - started))
            records[concurrency] += [
                r
                for r in session.invocations[before:]
                if r.get("function") in ("AuthorizerFunction", "ConnectFunction")
            ]
            await pool.close()
            # let the $disconnects finish so they do not slow the next measurement
            for _ in range(300):
                if len(session.invocations_of("DisconnectFunction")) >= disconnects + per_level:
                    break
                await asyncio.sleep(0.1)
    return connect_rate_summary(rates, per_level, CONNECT_PATH, records)


async def posts_comparison(
    session: StackSession, posts: Child, bare_url: str, ids: list[str], per_round: int, repeats: int
) -> dict[str, Any]:
    """`bench.posts` (16 threads, one boto3 client per endpoint) against the stack's `@connections`
    and against the bare server, one round of each per repeat, alternating which goes first."""
    data = json.dumps({"type": "bench", "text": "x" * 200})

    async def one(endpoint: str, count: int) -> dict[str, Any]:
        cpu_before = session.child.cpu_seconds(), posts.cpu_seconds()
        await posts.send_line(json.dumps({"endpoint": endpoint, "ids": ids, "data": data, "posts": count}))
        report = await posts.next_json(ROUND_TIMEOUT_S)
        report["stack_cpu_s"] = session.child.cpu_seconds() - cpu_before[0]
        report["poster_cpu_s"] = posts.cpu_seconds() - cpu_before[1]
        return report

    stack_url = session.ready["callback_url"]
    for endpoint in (stack_url, bare_url):  # warm-up: clients made, connections opened
        await one(endpoint, min(per_round, 200))
    stack_rounds: list[dict[str, Any]] = []
    bare_rounds: list[dict[str, Any]] = []
    for repeat in range(repeats):
        if repeat % 2 == 0:
            stack_rounds.append(await one(stack_url, per_round))
            bare_rounds.append(await one(bare_url, per_round))
        else:
            bare_rounds.append(await one(bare_url, per_round))
            stack_rounds.append(await one(stack_url, per_round))
    return posts_summary(stack_rounds, bare_rounds) | {
        "threads": 16,
        "posts_per_round": per_round,
        "connections": len(ids),
        "client": "boto3 apigatewaymanagementapi, max_pool_connections=16, no retries",
    }


class CpuMeter:
    """CPU seconds by process role over each round of one contender (bench.cpu_accounting)."""

    def __init__(self, tree: cpu_accounting.ProcessTree) -> None:
        self.tree = tree
        self.rounds: list[tuple[dict[str, float], int]] = []

    async def measure(self, round_: Any) -> Round:
        before = self.tree.snapshot()
        result: Round = await round_
        self.rounds.append((cpu_accounting.spent(before, self.tree.snapshot()), result.delivered))
        return result

    def per_delivery_ms(self) -> dict[str, float]:
        return cpu_accounting.per_delivery_ms(self.rounds)


async def _fanout_sizes(
    session: StackSession,
    stack: Child,
    sizes: list[int],
    repeats: int,
    grow_concurrency: int,
    tidings_pool: ClientPool,
    raw_pool: ClientPool,
    raw_port: int,
    floor: Floor,
) -> dict[str, Any]:
    ready = session.ready
    control = await connect(f"ws://127.0.0.1:{raw_port}/control", ping_interval=None)
    sequential = await Child.start(
        "bench.sequential",
        "--endpoint",
        ready["aws_endpoint"],
        "--table",
        ready["connections_table"],
        "--callback",
        ready["callback_url"],
        "--region",
        ready["region"],
    )
    try:
        await sequential.next_json(60)
        stack_rss_before = stack.rss_kb()
        results: dict[str, Any] = {}
        lambda_ms: dict[str, float] = {}
        message = ""
        for size in sizes:
            await tidings_pool.grow(
                ready["websocket_url"],
                size,
                concurrency=grow_concurrency,
                subprotocols=[SUBPROTOCOL, session.token],
                on_open=session.subscriber(),
                timeout_s=120,
            )
            await raw_pool.grow(f"ws://127.0.0.1:{raw_port}/", size, concurrency=100)
            await floor.grow(size)
            # warm-up round: the notify worker imports, pools connect; not measured
            _, message = await _tidings_round(session, tidings_pool)
            await _sequential_round(sequential, tidings_pool, message, marker(session.seq))
            await _raw_round(control, raw_pool, message, marker(session.seq))
            await floor.round(message, marker(session.seq))
            records_before = len(session.invocations)
            clients = {"bench clients": os.getpid()}
            meters = {
                "tidings": CpuMeter(cpu_accounting.ProcessTree(stack.pid, clients)),
                "sequential": CpuMeter(
                    cpu_accounting.ProcessTree(stack.pid, clients | {"sequential poster": sequential.pid})
                ),
                "http_floor": CpuMeter(
                    cpu_accounting.ProcessTree(
                        floor.server.pid,
                        clients | {"floor poster": floor.poster.pid},
                        root_label="floor server",
                    )
                ),
            }
            own: list[Round] = []
            baseline: list[Round] = []
            ceiling: list[Round] = []
            floors: list[Round] = []
            for repeat in range(repeats):
                before = meters["tidings"].tree.snapshot()
                round_, message = await _tidings_round(session, tidings_pool)
                meters["tidings"].rounds.append(
                    (cpu_accounting.spent(before, meters["tidings"].tree.snapshot()), round_.delivered)
                )
                own.append(round_)
                mark = marker(session.seq)
                if repeat % 2 == 0:  # alternate which comparison runs first
                    baseline.append(
                        await meters["sequential"].measure(
                            _sequential_round(sequential, tidings_pool, message, mark)
                        )
                    )
                    floors.append(await meters["http_floor"].measure(floor.round(message, mark)))
                    ceiling.append(await _raw_round(control, raw_pool, message, mark))
                else:
                    ceiling.append(await _raw_round(control, raw_pool, message, mark))
                    floors.append(await meters["http_floor"].measure(floor.round(message, mark)))
                    baseline.append(
                        await meters["sequential"].measure(
                            _sequential_round(sequential, tidings_pool, message, mark)
                        )
                    )
            await asyncio.sleep(0.5)  # the last invocation record follows the last post
            delivery = [
                r for r in session.invocations[records_before:] if r.get("function") in DELIVERY_FUNCTIONS
            ]
            durations = [float(r["durationMs"]) for r in delivery if r.get("ok")]
            delivered = sum(r.delivered for r in own)
            results[str(size)] = summarize_size(own, baseline, ceiling, floors)
            # CPU ms per delivery by process, over all repeats: what each contender costs the machine
            results[str(size)]["cpu_ms_per_delivery"] = {
                name: meter.per_delivery_ms() for name, meter in meters.items()
            }
            if durations and delivered:
                lambda_ms[str(size)] = round(ms_per_1000_deliveries(durations, delivered), 1)
        stack_rss_after = stack.rss_kb()
    finally:
        await control.close()
        await sequential.stop()
    return {
        "fanout": results,
        "lambda_ms_per_1000_deliveries": lambda_ms,
        "notify_memory_mb": ready["notify_memory_mb"],
        "message_bytes": len(message.encode()),
        "stack_kb_per_subscribed_connection": round((stack_rss_after - stack_rss_before) / max(sizes), 1),
        "publish": "PutEvents on the embedded bus; the stack's JobEventsRule invokes NotifyFunction",
        "http_floor": "bench.http_floor (aiohttp POST -> websockets send, no gateway logic), posted by "
        "bench.floor_poster (push.Pusher, 32 in flight on one asyncio loop, SigV4), from its first post",
    }


async def run(
    sizes: list[int],
    repeats: int,
    *,
    connect_levels: tuple[int, ...],
    connect_per_level: int,
    posts_per_round: int = 1000,
    parts: tuple[str, ...] = PARTS,
) -> dict[str, Any]:
    """The `parts` asked for (see PARTS), on one stack started here; keys of the parts not run are absent."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown fan-out parts: {sorted(unknown)}")
    raise_open_files_limit()
    stack = await Child.start("bench.stack_process")
    tidings_pool = ClientPool()
    started: list[Child] = []
    floor: Floor | None = None
    raw_pool = ClientPool()
    report: dict[str, Any] = {}
    try:
        ready = (await stack.next_json(180))["ready"]
        with local_aws_environment(ready["aws_endpoint"], ready["region"], ready["credentials"]):
            session = StackSession(stack, ready)
            grow_concurrency = 20
            if "connect_rate" in parts:
                report["connect_rate"] = await connect_rate(
                    session, connect_levels, connect_per_level, repeats
                )
                levels = connect_levels_of(report["connect_rate"])
                grow_concurrency = max(levels, key=lambda level: levels[level])
            if "fanout" in parts and sizes:
                raw_server = await Child.start("bench.raw_server")
                started.append(raw_server)
                raw_port = int((await raw_server.next_json(60))["port"])
                floor = await Floor.start()
                report |= await _fanout_sizes(
                    session, stack, sizes, repeats, grow_concurrency, tidings_pool, raw_pool, raw_port, floor
                )
            if "posts" in parts:
                if not len(tidings_pool):  # run alone: connections to post to
                    await tidings_pool.grow(
                        ready["websocket_url"],
                        POSTS_ALONE_CLIENTS,
                        concurrency=grow_concurrency,
                        subprotocols=[SUBPROTOCOL, session.token],
                        timeout_s=120,
                    )
                bare = await Child.start("bench.http_floor", "--bare")
                started.append(bare)
                bare_url = f"http://127.0.0.1:{(await bare.next_json(60))['http_port']}"
                posts = await Child.start("bench.posts")
                started.append(posts)
                await posts.next_json(60)
                dynamodb = stack_client("dynamodb")
                ids = await asyncio.to_thread(connection_ids, dynamodb, ready["connections_table"])
                report["posts"] = await posts_comparison(
                    session, posts, bare_url, ids, posts_per_round, repeats
                )
        return report
    finally:
        await tidings_pool.close()
        await raw_pool.close()
        if floor is not None:
            await floor.stop()
        for child in reversed(started):
            await child.stop()
        await stack.stop(timeout_s=60)


__all__ = ["connect_rate_summary", "posts_summary", "rss_kb", "run", "summarize_round", "summarize_size"]
