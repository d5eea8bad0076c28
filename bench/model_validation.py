"""Validate the AWS-scale model against the local stack: predict, then measure.

`make bench` runs `measure_and_predict()` before the fan-out section: it starts the local stack
in its own process, measures the figures the model needs there (management API latency per
post and its throughput with 32 posts in flight, DynamoDB call and Query times, the bus's delay
before notify runs, a synchronous Invoke's overhead; the machine's cores), and runs the model
(bench/aws_model.py, unchanged logic) with those figures for N = 1,000 subscribers: the
prediction. Only then does the fan-out section measure the local N = 1,000 run, and
`compare()` sets the two side by side. The figures come from this run, so the prediction
follows the local stack as it changes; nothing in the model is fitted to the measured run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3

from bench import aws_model
from bench.clients import ClientPool
from bench.fanout import NOTIFY_FUNCTION, SUBPROTOCOL, StackSession, local_aws_environment
from bench.processes import Child
from bench.stack_process import raise_open_files_limit
from tidings_core import push

N = 1000
POST_CLIENTS = 64
LATENCY_POSTS = 60
CAPACITY_POSTS = 2000
QUERY_ITEMS = 1000
REPEATS = 5


def _ms(seconds: float) -> float:
    return seconds * 1000


def _spread(samples: list[float]) -> tuple[float, float]:
    """(median, highest) of samples: the model's p50 and p99 for a small sample."""
    return statistics.median(samples), max(samples)


def _dynamodb(ready: dict[str, Any], session: StackSession) -> dict[str, float]:
    client = boto3.client("dynamodb")
    calls = []
    for _ in range(20):
        started = time.perf_counter()
        client.get_item(TableName=ready["jobs_table"], Key={"jobId": {"S": session.job_id}})
        calls.append(_ms(time.perf_counter() - started))
    topic = f"job:validation-{secrets.token_hex(4)}"
    now = int(time.time() * 1000)
    items = [
        {
            "PutRequest": {
                "Item": {
                    "topic": {"S": topic},
                    "connectionId": {"S": base64.urlsafe_b64encode(os.urandom(11)).decode()},
                    "userId": {"S": "validation"},
                    "createdAt": {"N": str(now)},
                    "ttl": {"N": str(now // 1000 + 3600)},
                }
            }
        }
        for _ in range(QUERY_ITEMS)
    ]
    for start in range(0, len(items), 25):
        client.batch_write_item(RequestItems={ready["subscriptions_table"]: items[start : start + 25]})
    queries = []
    for _ in range(3):
        started = time.perf_counter()
        page = client.query(
            TableName=ready["subscriptions_table"],
            KeyConditionExpression="topic = :t",
            ExpressionAttributeValues={":t": {"S": topic}},
            ProjectionExpression="connectionId",
            Limit=QUERY_ITEMS,
        )
        queries.append(_ms(time.perf_counter() - started))
        assert len(page["Items"]) == QUERY_ITEMS
    call = statistics.median(calls)
    ordered = sorted(calls)
    return {
        "call_ms": round(call, 2),
        "call_p10_ms": round(ordered[len(ordered) // 10], 2),
        "call_p90_ms": round(ordered[len(ordered) * 9 // 10], 2),
        "query_1000_ms": round(statistics.median(queries), 1),
        "query_ms_per_item": round(max(0.0, statistics.median(queries) - call) / QUERY_ITEMS, 4),
    }


async def _bus(session: StackSession) -> dict[str, float]:
    """PutEvents to the moment notify starts, no subscribers: its record's wall-clock `time`
    (written as the invocation ends) minus its duration, minus the wall clock before PutEvents
    (both clocks are the machine's; how soon this process reads the record does not count)."""
    delays = []
    for _ in range(REPEATS):
        before = len(session.invocations_of(NOTIFY_FUNCTION))
        started_ms = time.time() * 1000
        await asyncio.to_thread(session.publish)
        for _ in range(3000):
            if len(session.invocations_of(NOTIFY_FUNCTION)) > before:
                break
            await asyncio.sleep(0.005)
        else:
            raise RuntimeError("notify did not run for a published event")
        record = session.invocations_of(NOTIFY_FUNCTION)[before]
        delays.append(float(record["time"]) * 1000 - float(record["durationMs"]) - started_ms)
    p50, high = _spread(delays)
    return {"p50_ms": round(p50, 1), "max_ms": round(high, 1)}


def _invoke(ready: dict[str, Any]) -> float:
    """A synchronous Invoke of the deliver function with a payload it drops at once."""
    client = boto3.client("lambda")
    times = []
    for _ in range(REPEATS + 1):
        started = time.perf_counter()
        client.invoke(FunctionName=ready["deliver_function"], Payload=b'{"kind":"validation"}')
        times.append(_ms(time.perf_counter() - started))
    return round(statistics.median(times[1:]), 1)  # the first starts the worker


async def _posts(ready: dict[str, Any], session: StackSession, clients: int) -> dict[str, float]:
    """@connections through the real Pusher to live clients: one at a time, then 32 in flight."""
    pool = ClientPool()
    try:
        await pool.grow(
            ready["websocket_url"],
            clients,
            concurrency=8,
            subprotocols=[SUBPROTOCOL, session.token],
            timeout_s=120,
        )
        table = boto3.client("dynamodb")
        ids = [
            item["connectionId"]["S"]
            for page in table.get_paginator("scan").paginate(TableName=ready["connections_table"])
            for item in page["Items"]
        ]
        from botocore.credentials import Credentials

        credentials = ready["credentials"]
        api = push.ManagementApi(
            ready["callback_url"],
            credentials=Credentials(
                credentials["AWS_ACCESS_KEY_ID"],
                credentials["AWS_SECRET_ACCESS_KEY"],
                credentials.get("AWS_SESSION_TOKEN"),
            ),
            region=ready["region"],
        )
        pusher = push.Pusher(api)
        data = b'{"type":"progress","validation":true}'

        def one_at_a_time() -> list[float]:
            times = []
            for index in range(LATENCY_POSTS):
                started = time.perf_counter()
                result = pusher.post(ids[index % len(ids)], data)
                times.append(_ms(time.perf_counter() - started))
                assert result.outcome is push.Outcome.DELIVERED, result
            return times[5:]

        def in_flight() -> float:
            targets = [ids[index % len(ids)] for index in range(CAPACITY_POSTS)]
            started = time.perf_counter()
            results = pusher.post_many(targets, data)
            elapsed = time.perf_counter() - started
            assert all(r.outcome is push.Outcome.DELIVERED for r in results)
            return CAPACITY_POSTS / elapsed

        latencies = await asyncio.to_thread(one_at_a_time)
        capacity = await asyncio.to_thread(in_flight)
        pusher.close()
        return {
            "latency_ms": round(statistics.median(latencies), 2),
            "capacity_per_s": round(capacity, 0),
            "connections": len(ids),
        }
    finally:
        await pool.close()


async def measure_local(clients: int = POST_CLIENTS) -> dict[str, Any]:
    """The model's figures, measured on a local stack started for the purpose."""
    raise_open_files_limit()
    stack = await Child.start("bench.stack_process")
    try:
        ready = (await stack.next_json(180))["ready"]
        with local_aws_environment(ready["aws_endpoint"], ready["region"], ready["credentials"]):
            session = StackSession(stack, ready)
            dynamodb = await asyncio.to_thread(_dynamodb, ready, session)
            bus = await _bus(session)
            invoke_ms = await asyncio.to_thread(_invoke, ready)
            posts = await _posts(ready, session, clients)
    finally:
        await stack.stop(timeout_s=60)
    return {
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 1),  # the machine is shared: how busy it was
        "dynamodb": dynamodb,
        "bus_to_notify": bus,
        "invoke_ms": invoke_ms,
        "management_api": posts,
    }


def local_services(figures: dict[str, Any]) -> aws_model.Services:
    """The model's services as the local stack measured them (no cold starts: both sides warm up)."""
    dynamodb, bus = figures["dynamodb"], figures["bus_to_notify"]
    return aws_model.Services(
        eventbridge_ms=(bus["p50_ms"], bus["max_ms"]),
        dynamodb_ms=(dynamodb["call_p10_ms"], dynamodb["call_p90_ms"]),
        query_ms_per_item=dynamodb["query_ms_per_item"],
        invoke_api_ms=figures["invoke_ms"],
        async_queue_ms=(0.0, 0.0),  # the synchronous invoke above already includes the dispatch
        cold_start_ms=aws_model.COLD_START_MS,
        api_capacity_rps=figures["management_api"]["capacity_per_s"],
    )


def predict(figures: dict[str, Any], cpu_post_ms: float, seeds: int = 3) -> dict[str, float]:
    services = local_services(figures)
    api_ms = figures["management_api"]["latency_ms"]
    runs = [aws_model.one_event(N, 1e9, api_ms, cpu_post_ms, seed, services) for seed in range(seeds)]
    return {k: round(statistics.median(r[k] for r in runs), 1) for k in ("p50_ms", "p99_ms")}


def measure_and_predict() -> dict[str, Any]:
    """Measure in a child process (its boto3 and pynamodb keep this stack's key, not the fan-out
    section's next one), then predict here."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.model_validation", "--measure"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"measuring the local stack failed: {tail[0]}")
    figures: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    cpu_post_ms = aws_model.measure_cpu_per_post()
    figures["cpu_post_ms"] = round(cpu_post_ms, 3)
    return {"figures": figures, "predicted": predict(figures, cpu_post_ms), "n": N}


def compare(prediction: dict[str, Any] | None, measured: dict[str, Any] | None) -> dict[str, Any] | None:
    """The prediction beside the local run's `fanout["1000"]` (its medians over repeats)."""
    if prediction is None:
        return None
    row: dict[str, Any] = dict(prediction)
    if measured and measured.get("p50_ms") is not None:
        row["measured"] = {
            "p50_ms": measured["p50_ms"],
            "p99_ms": measured["p99_ms"],
            "deliveries_per_s": measured.get("deliveries_per_s"),
            "load_average_after": round(os.getloadavg()[0], 1),
        }
        row["measured_over_predicted"] = {
            k: round(measured[k] / prediction["predicted"][k], 2)
            for k in ("p50_ms", "p99_ms")
            if prediction["predicted"][k]
        }
    return row


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(asyncio.run(measure_local(*(int(a) for a in sys.argv[2:3])))))
    else:
        print(json.dumps(measure_and_predict(), indent=1))
