"""What the reliability tests drive the local stack with: WebSocket clients that apply the seq rule,
job creation through the jobs API, paced publishing on the job bus, and the fault control.

A `Client` keeps every frame it received (`raw`) and, per job, what a client application
applies after the rule of docs/protocol.md (keep the highest seq, ignore lower or equal ones):
`applied[job]` is the list of seqs it accepted, snapshots included.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.request import Request, urlopen

import websockets
from stack_harness import RunningStack, put_job_event

from tidings_core.tokens import issue_token

CONNECT_TIMEOUT_S = 120.0
DELIVERY_TIMEOUT_S = 120.0


@dataclass
class Client:
    user: str
    topics: list[str]
    ws: Any = None
    raw: list[dict[str, Any]] = field(default_factory=list)
    applied: dict[str, list[int]] = field(default_factory=dict)
    snapshot_seq: dict[str, int] = field(default_factory=dict)  # job -> seq of its first snapshot
    errors: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    closed: bool = False
    snapshots: int = 0

    def highest(self, job_id: str) -> int:
        seqs = self.applied.get(job_id)
        return seqs[-1] if seqs else -1

    def apply(self, job: dict[str, Any], *, from_snapshot: bool) -> None:
        job_id = str(job["jobId"])
        if from_snapshot:
            self.snapshot_seq.setdefault(job_id, int(job["seq"]))
        if int(job["seq"]) > self.highest(job_id):
            self.applied.setdefault(job_id, []).append(int(job["seq"]))

    def answered(self) -> int:
        """Subscribe requests answered so far: snapshots (which follow `subscribed`) and errors."""
        return self.snapshots + len(self.errors)

    def raw_seqs(self, job_id: str) -> list[int]:
        """Seqs of live job messages (not snapshots) for the job, as they arrived."""
        return [int(m["seq"]) for m in self.raw if m.get("jobId") == job_id and "seq" in m]

    def duplicates(self) -> int:
        """Live job messages received more than once (same job and seq): at-least-once redeliveries."""
        counts = Counter((m["jobId"], m["seq"]) for m in self.raw if "jobId" in m and "seq" in m)
        return sum(count - 1 for count in counts.values())


class Fleet:
    """Many clients in this process; `changed` wakes whoever waits for a delivery."""

    def __init__(self, websocket_url: str, tokens: dict[str, str]) -> None:
        self.websocket_url = websocket_url
        self.tokens = tokens
        self.clients: list[Client] = []
        self.changed = asyncio.Condition()

    async def _read(self, client: Client) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in client.ws:
                message = json.loads(frame)
                if message.get("type") == "snapshot":
                    client.snapshots += 1
                    for job in message.get("jobs", []):
                        client.apply(job, from_snapshot=True)
                elif message.get("type") in ("progress", "completed", "failed"):
                    client.raw.append(message)
                    client.apply(message, from_snapshot=False)
                elif message.get("type") == "error":
                    client.errors.append(message)
                else:
                    client.raw.append(message)
                async with self.changed:
                    self.changed.notify_all()

    async def connect(self, client: Client) -> Client:
        url = f"{self.websocket_url}?token={self.tokens[client.user]}"
        client.ws = await websockets.connect(url, open_timeout=CONNECT_TIMEOUT_S, max_queue=None)
        client.reader = asyncio.create_task(self._read(client))
        self.clients.append(client)
        for topic in client.topics:
            await client.ws.send(json.dumps({"action": "subscribe", "topic": topic}))
        await self.wait_subscribed([client])
        return client

    async def connect_all(self, clients: Iterable[Client], concurrency: int = 4) -> list[Client]:
        """Connect and subscribe, a few at a time: on 2 shared cores, dozens of concurrent
        handshakes queue long enough inside the embedded services to hit the 10 s function
        timeout (see docs/reliability.md)."""
        gate = asyncio.Semaphore(concurrency)

        async def one(client: Client) -> Client:
            async with gate:
                return await self.connect(client)

        return list(await asyncio.gather(*(one(c) for c in clients)))

    async def wait_for(self, predicate: Callable[[], bool], limit_s: float = DELIVERY_TIMEOUT_S) -> None:
        async with asyncio.timeout(limit_s), self.changed:
            await self.changed.wait_for(predicate)

    async def wait_subscribed(self, clients: Iterable[Client]) -> None:
        """Every topic of every client answered (so later events reach it); an error reply fails."""
        waiting = list(clients)
        await self.wait_for(lambda: all(c.answered() >= len(c.topics) for c in waiting))
        refused = [(c.topics, c.errors) for c in waiting if c.errors]
        assert refused == [], f"subscribe refused: {refused[:3]}"

    async def close(self, client: Client) -> None:
        client.closed = True
        await client.ws.close()
        if client.reader is not None:
            await client.reader

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(c) for c in self.clients if not c.closed))


def job_event(job_id: str, user: str, seq: int, last: int) -> dict[str, Any]:
    stage = "completed" if seq == last else "transcoding"
    return {
        "version": 1,
        "jobId": job_id,
        "userId": user,
        "seq": seq,
        "stage": stage,
        "percent": 100.0 if seq == last else round(100.0 * seq / last, 1),
        "emittedAt": int(time.time() * 1000),
    }


class Publisher:
    """PutEvents on the stack's job bus (a boto3 client per publisher: they are not shared)."""

    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack
        self.events = stack.boto3_client("events")

    def put(self, detail: dict[str, Any]) -> None:
        put_job_event(self.stack, detail, self.events)


async def publish_paced(
    fleet: Fleet,
    publisher: Publisher,
    job_id: str,
    user: str,
    events: int,
    watchers: Callable[[], list[Client]],
    min_gap_s: float = 0.0,
) -> None:
    """Publish seq 1..events for one job, each after every current watcher has applied the previous
    one (the transcoder's pace: EventBridge may otherwise run two notifies of a job at once and
    drop the overtaken one by design)."""
    for seq in range(1, events + 1):
        await asyncio.to_thread(publisher.put, job_event(job_id, user, seq, events))
        await fleet.wait_for(functools.partial(_all_applied, watchers, job_id, seq))
        if min_gap_s:
            await asyncio.sleep(min_gap_s)


def _all_applied(watchers: Callable[[], list[Client]], job_id: str, seq: int) -> bool:
    return all(c.highest(job_id) >= seq for c in watchers())


def fault_control(stack: RunningStack, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST (with a body) or GET `/_tidings/faults`; the fault settings and counters."""
    data = None if body is None else json.dumps(body).encode()
    request = Request(  # noqa: S310 - the local stack on 127.0.0.1
        f"{stack.http_url}/_tidings/faults",
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urlopen(request, timeout=30) as response:  # noqa: S310
        result: dict[str, Any] = json.loads(response.read())
        return result


def table(stack: RunningStack, part: str) -> str:
    [name] = [str(t) for t in stack.boto3_client("dynamodb").list_tables()["TableNames"] if part in t]
    return name


def count_rows(stack: RunningStack, table_part: str, **equal: str) -> int:
    """Rows of a table whose string attributes equal `equal` (a test-side Scan: inspection, not
    application code)."""
    dynamodb = stack.boto3_client("dynamodb")
    pages = dynamodb.get_paginator("scan").paginate(TableName=table(stack, table_part))
    items = [item for page in pages for item in page["Items"]]
    return sum(1 for item in items if all(item.get(k, {}).get("S") == v for k, v in equal.items()))


async def wait_disconnected(stack: RunningStack, users: Iterable[str], limit_s: float = 300.0) -> None:
    """Until $disconnect has removed every connection row of these users (no leaked rows)."""
    names = set(users)

    def remaining() -> int:
        dynamodb = stack.boto3_client("dynamodb")
        pages = dynamodb.get_paginator("scan").paginate(TableName=table(stack, "Connections"))
        return sum(1 for page in pages for item in page["Items"] if item["userId"]["S"] in names)

    try:
        async with asyncio.timeout(limit_s):
            while await asyncio.to_thread(remaining):  # noqa: ASYNC110 - polling a table
                await asyncio.sleep(0.5)
    except TimeoutError:
        failed = [line for line in stack.output if "DisconnectFunction" in line and " error " in line]
        left = await asyncio.to_thread(remaining)
        raise AssertionError(f"{left} connection rows left; failed $disconnect: {failed[:5]}") from None


def stack_secret(stack: RunningStack) -> str:
    """The local stack's signing key (the tests forge tokens with it and with other keys)."""
    state = json.loads(stack.state_file.read_text())
    secret_id = state.get("tokenSecretId") or state.get("token_secret_id")
    secrets = stack.boto3_client("secretsmanager")
    return str(secrets.get_secret_value(SecretId=secret_id)["SecretString"])


def token_for(secret: str, user: str, ttl_s: int = 600, audience: str = "tidings") -> str:
    return issue_token(secret, user, ttl_s, audience)
