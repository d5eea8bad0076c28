"""Fan-out, connect rate and Lambda time per delivery, on the real local stack.

One run holds three sets of contenders side by side on the same machine:

- Tidings: N clients connect with tokens (authorizer + `$connect`) and subscribe to one job;
  one `JobProgress` event is published with PutEvents on the embedded bus, and the stack's
  rule invokes notify, which posts through `@connections`.
- the AWS-samples pattern (`bench.sequential`, its own process): Scan the connections table,
  post to one connection at a time, through the same `@connections` endpoint to the same clients.
- the ceiling (`bench.raw_server`, its own process): a bare `websockets.broadcast` of the same
  bytes to another N clients.

Latency is publish (just before the PutEvents / stdin line / control frame) to receive, per
client, on this process's monotonic clock. Each repeat runs the three back to back.
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

from bench.clients import ClientPool
from bench.processes import Child, rss_kb
from bench.stack_process import raise_open_files_limit
from bench.stats import median, median_ratio, percentile, rate, rounded

BENCH_USER = "bench-user"
SUBPROTOCOL = "tidings.v1"
NOTIFY_FUNCTION = "NotifyFunction"
ROUND_TIMEOUT_S = 180.0
GOAL_VS_SEQUENTIAL = 10.0
GOAL_VS_RAW = 0.5
GOAL_P99_MS = 100.0


@dataclass(frozen=True)
class Round:
    """One publish to N clients."""

    delivered: int
    missing: int
    p50_ms: float | None
    p99_ms: float | None
    deliveries_per_s: float | None


def summarize_round(published_at: float, arrivals: list[float | None]) -> Round:
    """Latencies from `published_at` (perf_counter seconds); a client without its message is missing."""
    latencies = [(a - published_at) * 1000 for a in arrivals if a is not None]
    missing = len(arrivals) - len(latencies)
    if not latencies:
        return Round(0, missing, None, None, None)
    span_s = max(latencies) / 1000
    return Round(
        delivered=len(latencies),
        missing=missing,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        deliveries_per_s=rate(len(latencies), span_s) if span_s > 0 else None,
    )


def _median_of(rounds: list[Round], field: str) -> float | None:
    values = [v for r in rounds if (v := getattr(r, field)) is not None]
    return median(values) if values else None


def summarize_size(tidings: list[Round], sequential: list[Round], raw: list[Round]) -> dict[str, Any]:
    """Medians over repeats, and paired ratios of deliveries per second (same repeat)."""

    def dps(r: Round) -> float:
        return r.deliveries_per_s or 0.0

    vs_sequential = median_ratio([(dps(t), dps(s)) for t, s in zip(tidings, sequential, strict=True)])
    vs_raw = median_ratio([(dps(t), dps(r)) for t, r in zip(tidings, raw, strict=True)])

    def side(rounds: list[Round]) -> dict[str, Any]:
        return {
            "p50_ms": rounded(_median_of(rounds, "p50_ms"), 1),
            "p99_ms": rounded(_median_of(rounds, "p99_ms"), 1),
            "deliveries_per_s": rounded(_median_of(rounds, "deliveries_per_s"), 0),
            "missing": sum(r.missing for r in rounds),
        }

    own = side(tidings)
    return {
        "vs_sequential": rounded(vs_sequential),
        "vs_raw_broadcast": rounded(vs_raw),
        "p50_ms": own["p50_ms"],
        "p99_ms": own["p99_ms"],
        "deliveries_per_s": own["deliveries_per_s"],
        "missing": own["missing"],
        "repeats": len(tidings),
        "sequential": side(sequential),
        "raw_broadcast": side(raw),
    }


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


class StackSession:
    """The stack child, its invocation records, a token and one job owned by the bench user."""

    def __init__(self, child: Child, ready: dict[str, Any]) -> None:
        self.child = child
        self.ready = ready
        self.invocations: list[dict[str, Any]] = []
        child.on_line = self._record
        self.job_id = f"bench-{int(time.time() * 1000)}"
        self.seq = 0
        self.events = boto3.client("events")
        self.token = self._token()
        self._create_job()

    def _record(self, line: dict[str, Any]) -> bool:
        if "function" in line and "durationMs" in line:
            self.invocations.append(line)
            return True
        return False

    def _token(self) -> str:
        from tidings_core.tokens import issue_token

        secrets = boto3.client("secretsmanager")
        secret = secrets.get_secret_value(SecretId=self.ready["token_secret_id"])["SecretString"]
        return issue_token(secret, BENCH_USER, 3 * 3600, audience=self.ready["token_audience"])

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
    arrivals = await pool.collect(ROUND_TIMEOUT_S)
    if pool.sample is None:
        raise RuntimeError("no client received the published event")
    return summarize_round(started, arrivals), pool.sample


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


async def connect_rate(
    session: StackSession, concurrency_levels: tuple[int, ...], per_level: int, repeats: int
) -> dict[str, Any]:
    """New connections per second through authorizer + `$connect` (with a token), per concurrency."""
    url = session.ready["websocket_url"]
    levels: dict[str, Any] = {}
    for concurrency in concurrency_levels:
        rates: list[float] = []
        for _ in range(repeats):
            pool = ClientPool()
            disconnects = len(session.invocations_of("DisconnectFunction"))
            started = time.perf_counter()
            await pool.grow(
                url, per_level, concurrency=concurrency, subprotocols=[SUBPROTOCOL, session.token]
            )
            rates.append(rate(per_level, time.perf_counter() - started))
            await pool.close()
            # let the $disconnects finish so they do not slow the next measurement
            for _ in range(300):
                if len(session.invocations_of("DisconnectFunction")) >= disconnects + per_level:
                    break
                await asyncio.sleep(0.1)
        levels[str(concurrency)] = {"connections_per_s": round(median(rates), 1), "samples": len(rates)}
    best = max(levels.values(), key=lambda level: float(level["connections_per_s"]))
    return {
        "path": "websockets client -> local gateway -> AuthorizerFunction -> ConnectFunction (moto DynamoDB)",
        "per_level": per_level,
        "by_concurrency": levels,
        "connections_per_s": best["connections_per_s"],
        "aws_default_quota_per_s": 500,
    }


async def run(
    sizes: list[int], repeats: int, *, connect_levels: tuple[int, ...], connect_per_level: int
) -> dict[str, Any]:
    raise_open_files_limit()
    stack = await Child.start("bench.stack_process")
    raw_server = await Child.start("bench.raw_server")
    tidings_pool, raw_pool = ClientPool(), ClientPool()
    sequential: Child | None = None
    control: ClientConnection | None = None
    try:
        ready = (await stack.next_json(180))["ready"]
        raw_port = (await raw_server.next_json(60))["port"]
        with local_aws_environment(ready["aws_endpoint"], ready["region"], ready["credentials"]):
            session = StackSession(stack, ready)
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
            await sequential.next_json(60)
            rate_report = await connect_rate(session, connect_levels, connect_per_level, repeats)
            levels = rate_report["by_concurrency"]
            grow_concurrency = int(max(levels, key=lambda level: float(levels[level]["connections_per_s"])))
            control = await connect(f"ws://127.0.0.1:{raw_port}/control", ping_interval=None)
            stack_rss_before = stack.rss_kb()
            results: dict[str, Any] = {}
            lambda_ms: dict[str, float] = {}
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
                # warm-up round: the notify worker imports, pools connect; not measured
                _, message = await _tidings_round(session, tidings_pool)
                await _sequential_round(sequential, tidings_pool, message, marker(session.seq))
                await _raw_round(control, raw_pool, message, marker(session.seq))
                notify_before = len(session.invocations_of(NOTIFY_FUNCTION))
                own: list[Round] = []
                baseline: list[Round] = []
                ceiling: list[Round] = []
                for repeat in range(repeats):
                    round_, message = await _tidings_round(session, tidings_pool)
                    own.append(round_)
                    mark = marker(session.seq)
                    if repeat % 2 == 0:  # alternate which comparison runs first
                        baseline.append(await _sequential_round(sequential, tidings_pool, message, mark))
                        ceiling.append(await _raw_round(control, raw_pool, message, mark))
                    else:
                        ceiling.append(await _raw_round(control, raw_pool, message, mark))
                        baseline.append(await _sequential_round(sequential, tidings_pool, message, mark))
                await asyncio.sleep(0.5)  # the last invocation record follows the last post
                notify = session.invocations_of(NOTIFY_FUNCTION)[notify_before:]
                durations = [float(r["durationMs"]) for r in notify if r.get("ok")]
                delivered = sum(r.delivered for r in own)
                results[str(size)] = summarize_size(own, baseline, ceiling)
                if durations and delivered:
                    lambda_ms[str(size)] = round(ms_per_1000_deliveries(durations, delivered), 1)
            stack_rss_after = stack.rss_kb()
        largest = max(sizes)
        return {
            "fanout": results,
            "connect_rate": rate_report,
            "lambda_ms_per_1000_deliveries": lambda_ms,
            "notify_memory_mb": ready["notify_memory_mb"],
            "message_bytes": len(message.encode()),
            "stack_kb_per_subscribed_connection": round((stack_rss_after - stack_rss_before) / largest, 1),
            "publish": "PutEvents on the embedded bus; the stack's JobEventsRule invokes NotifyFunction",
        }
    finally:
        if control is not None:
            await control.close()
        await tidings_pool.close()
        await raw_pool.close()
        if sequential is not None:
            await sequential.stop()
        await raw_server.stop()
        await stack.stop(timeout_s=60)


__all__ = ["rss_kb", "run", "summarize_round", "summarize_size"]
