"""Capacity: idle connections the local gateway holds, and its memory per idle connection.

The gateway runs in its own process (`bench.gateway_process`, `$connect` answered in memory);
the clients run here. Memory per connection is the gateway's RSS growth over `count` idle
connections opened after a warm-up batch, divided by `count`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.protocol import State

from bench.clients import ClientPool
from bench.processes import Child
from bench.stack_process import raise_open_files_limit

WARM_UP = 100
GOAL_CONNECTIONS = 10_000
GOAL_KB_PER_CONNECTION = 30.0
HOLD_S = 3.0  # idle time before counting survivors: connections must stay, not just open


def kb_per_connection(rss_before_kb: int, rss_after_kb: int, connections: int) -> float:
    if connections <= 0:
        raise ValueError("no connections to divide by")
    return (rss_after_kb - rss_before_kb) / connections


async def run(count: int, concurrency: int = 100) -> dict[str, Any]:
    nofile = raise_open_files_limit()
    if nofile < count + WARM_UP + 100:
        raise RuntimeError(f"open files limit {nofile} is below {count + WARM_UP + 100}")
    gateway = await Child.start("bench.gateway_process")
    pool = ClientPool()
    try:
        ready = await gateway.next_json(60)
        await pool.grow(ready["url"], WARM_UP, concurrency=concurrency)
        await asyncio.sleep(0.5)
        before = gateway.rss_kb()
        started = time.perf_counter()
        await pool.grow(ready["url"], WARM_UP + count, concurrency=concurrency, timeout_s=120)
        opened_s = time.perf_counter() - started
        await asyncio.sleep(HOLD_S)
        after = gateway.rss_kb()
        held = sum(1 for ws in pool.sockets if ws.state is State.OPEN)
    finally:
        await pool.close()
        await gateway.stop()
    per_connection = kb_per_connection(before, after, count)
    return {
        "gateway": "tidings.local.gateway.Gateway, $connect in memory, own process",
        "connections_held": held,
        "goal_connections": GOAL_CONNECTIONS,
        "meets_connection_goal": held >= GOAL_CONNECTIONS,
        "kb_per_idle_connection": round(per_connection, 1),
        "goal_kb": GOAL_KB_PER_CONNECTION,
        "meets_memory_goal": per_connection < GOAL_KB_PER_CONNECTION,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "open_s": round(opened_s, 2),
        "open_files_limit": nofile,
    }
