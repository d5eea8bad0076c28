"""Dollars per million notifications on AWS, from the Lambda time measured here, at list prices.

A notification is one message delivered to one connection (what Ably and AppSync Events bill
as a message or an operation). One bus event reaches `fanout` connections, so per-event costs
(EventBridge, the Lambda request, the job's conditional writes) are shared by `fanout` deliveries.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    """US East (N. Virginia) list prices; sources in docs/benchmarks.md."""

    lambda_arm_gb_s: float = 0.0000133334
    lambda_per_million_requests: float = 0.20
    apigw_ws_per_million_messages: float = 1.00  # per 32 KB unit
    apigw_ws_per_million_connection_minutes: float = 0.25
    eventbridge_per_million_custom_events: float = 1.00
    dynamodb_per_million_write_units: float = 0.625  # on-demand WRU
    dynamodb_per_million_read_units: float = 0.125  # on-demand RRU
    ably_per_million_messages: float = 2.50
    appsync_events_per_million_operations: float = 1.00  # per 5 KB operation


@dataclass(frozen=True)
class Workload:
    """What one notify invocation does, from fanout.py and registry.py."""

    lambda_ms_per_1000_deliveries: float  # measured here
    fanout: int  # recipients per bus event
    lambda_memory_mb: int  # NotifyFunction's MemorySize in template.yaml
    page_size: int = 100  # fanout.PAGE_SIZE: one checkpoint write per page
    topics_queried: int = 2  # job:<id> and user:<owner>
    subscription_item_bytes: int = 200  # a Subscription row as DynamoDB sizes it
    message_bytes: int = 400  # a progress message; below one 32 KB API Gateway unit


def _query_read_units(items: int, item_bytes: int) -> float:
    """Eventually consistent Query: 0.5 RRU per 4 KB read, at least one unit per call."""
    return max(1, math.ceil(items * item_bytes / 4096)) * 0.5


def per_event_dynamodb(workload: Workload) -> tuple[float, float]:
    """(write units, read units) of one notify invocation."""
    pages = max(1, math.ceil(workload.fanout / workload.page_size))
    # claim, shard offer, one checkpoint per page (the last one also ends the sweep); items < 1 KB
    writes = 1 + 1 + pages
    per_topic = workload.fanout  # worst case: every recipient subscribed to the job topic
    reads = _query_read_units(per_topic, workload.subscription_item_bytes) + (
        workload.topics_queried - 1
    ) * _query_read_units(0, workload.subscription_item_bytes)
    return float(writes), reads


def tidings_per_million(workload: Workload, prices: Prices = Prices()) -> dict[str, float]:
    """Each AWS line item, and the total, in dollars per million deliveries."""
    if workload.fanout < 1:
        raise ValueError("fanout must be at least 1")
    if workload.lambda_ms_per_1000_deliveries < 0:
        raise ValueError("Lambda time cannot be negative")
    events = MILLION / workload.fanout
    lambda_seconds = workload.lambda_ms_per_1000_deliveries * (MILLION / 1000) / 1000
    gb = workload.lambda_memory_mb / 1024
    writes, reads = per_event_dynamodb(workload)
    units_per_message = max(1, math.ceil(workload.message_bytes / (32 * 1024)))
    lines = {
        "lambda_compute": lambda_seconds * gb * prices.lambda_arm_gb_s,
        "lambda_requests": events / MILLION * prices.lambda_per_million_requests,
        "api_gateway_messages": units_per_message * prices.apigw_ws_per_million_messages,
        "eventbridge": events / MILLION * prices.eventbridge_per_million_custom_events,
        "dynamodb": events
        * (writes * prices.dynamodb_per_million_write_units + reads * prices.dynamodb_per_million_read_units)
        / MILLION,
    }
    lines["total"] = sum(lines.values())
    return lines


def hosted_per_million(message_bytes: int, prices: Prices = Prices()) -> dict[str, float | None]:
    """List prices of the hosted services for a million delivered messages (None: plan-based)."""
    appsync_ops = max(1, math.ceil(message_bytes / (5 * 1024)))
    return {
        "ably": prices.ably_per_million_messages,
        "appsync_events": appsync_ops * prices.appsync_events_per_million_operations,
        "pusher": None,
    }


def cost_report(workload: Workload, prices: Prices = Prices()) -> dict[str, Any]:
    return {
        "assumptions": {**asdict(workload), "prices_usd": asdict(prices)},
        "tidings_usd_per_million": {k: round(v, 4) for k, v in tidings_per_million(workload, prices).items()},
        "hosted_usd_per_million": hosted_per_million(workload.message_bytes, prices),
        "connection_minute_usd": prices.apigw_ws_per_million_connection_minutes / MILLION,
    }
