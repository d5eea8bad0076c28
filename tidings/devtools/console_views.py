"""Tidings' own views in the emulator's console: job ids, a connection's topics, follow a job.

The console (tidings/local/console.py) knows no app; this `ConsoleView` adds what only Tidings
means: the `job` label (a `jobId` anywhere in an invocation, or a `job:<id>` topic), each
connection's topics (a Query on the subscriptions table's `ByConnection` index, else replayed
from the connection's subscribe/unsubscribe frames) and the path of a job's events from
publisher to bus to notify to each post.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tidings.devtools.app import SUBSCRIPTIONS_VARIABLE, is_tidings_app
from tidings.local.addons import StackHost
from tidings.local.console import (
    DEFAULT_CAPACITY,
    ConsoleStore,
    InvocationFilter,
    InvocationRecord,
    Label,
    strings_under,
    walk,
)
from tidings.local.model import LocalApp

JOB_LABEL = "job"
JOB_KEYS = frozenset({"jobId", "job_id"})
JOB_TOPIC = re.compile(r"^job:(.+)$")
BY_CONNECTION = "ByConnection"


def job_ids(values: Sequence[Any]) -> set[str]:
    """Job ids an invocation names: `jobId` / `job_id` keys and `job:<id>` topics."""
    found = strings_under(values, JOB_KEYS)
    for value in values:
        for key, item in walk(value):
            if key == "topic" and isinstance(item, str) and (match := JOB_TOPIC.match(item)):
                found.add(match.group(1))
    return found


def topics_from_frames(store: ConsoleStore, connection_id: str) -> list[str]:
    """Topics a connection asked for, replaying its successful subscribe/unsubscribe frames."""
    topics: dict[str, None] = {}
    for record in reversed(store.invocations(limit=DEFAULT_CAPACITY)):
        if record.connection_id != connection_id or not record.ok or not isinstance(record.event, dict):
            continue
        body = record.event.get("body")
        try:
            frame = json.loads(body) if isinstance(body, str) else None
        except ValueError:
            continue
        if not isinstance(frame, dict) or not isinstance(frame.get("topic"), str):
            continue
        if frame.get("action") == "subscribe":
            topics[frame["topic"]] = None
        elif frame.get("action") == "unsubscribe":
            topics.pop(frame["topic"], None)
    return list(topics)


def subscriptions_table(app: LocalApp) -> str | None:
    """The table behind SUBSCRIPTIONS_TABLE, when the app has one with a ByConnection index."""
    names = {f.environment.get(SUBSCRIPTIONS_VARIABLE) for f in app.functions.values()} - {None, ""}
    for table in app.tables:
        indexes = table.properties.get("GlobalSecondaryIndexes") or []
        has_index = any(index.get("IndexName") == BY_CONNECTION for index in indexes)
        if has_index and (not names or table.name in names):
            return table.name
    return None


def topics_from_table(client: Any, table: str, connection_ids: list[str]) -> dict[str, list[str]]:
    """Each connection's topics by a Query on the subscriptions table's ByConnection index."""
    found: dict[str, list[str]] = {}
    for connection_id in connection_ids:
        topics: list[str] = []
        paginator = client.get_paginator("query")
        for page in paginator.paginate(
            TableName=table,
            IndexName=BY_CONNECTION,
            KeyConditionExpression="connectionId = :id",
            ExpressionAttributeValues={":id": {"S": connection_id}},
        ):
            topics.extend(item["topic"]["S"] for item in page.get("Items", []) if "topic" in item)
        found[connection_id] = topics
    return found


class TidingsConsoleView:
    """`ConsoleView` for a Tidings template."""

    labels: Sequence[Label] = (Label(JOB_LABEL, "jobs", job_ids),)
    panels: Sequence[str] = ("jobs", "topics")  # the follow-a-job panel, the topics column

    def applies(self, app: LocalApp) -> bool:
        return is_tidings_app(app)

    def routes(self, store: ConsoleStore) -> list[web.RouteDef]:
        async def job(request: web.Request) -> web.Response:
            return web.json_response(
                follow_job(store, request.match_info["job_id"]), headers={"Cache-Control": "no-store"}
            )

        return [web.get("/jobs/{job_id}", job)]

    def describe_connections(
        self, host: StackHost, store: ConsoleStore, connection_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        table = subscriptions_table(host.app)
        from_table: dict[str, list[str]] = {}
        if table is not None:
            try:
                from_table = topics_from_table(host.admin_client("dynamodb"), table, connection_ids)
            except Exception:  # the embedded services are stopping, or the table has another shape
                from_table = {}
        described: dict[str, dict[str, Any]] = {}
        for connection_id in connection_ids:
            topics = from_table.get(connection_id)
            described[connection_id] = {
                "topics": topics if topics is not None else topics_from_frames(store, connection_id),
                "topicsFrom": "table" if topics is not None else "frames",
            }
        return described


def _detail(record: InvocationRecord) -> dict[str, Any] | None:
    """The EventBridge detail when `record` was a bus delivery of a job event."""
    event = record.event
    if isinstance(event, dict) and "detail-type" in event and isinstance(event.get("detail"), dict):
        detail: dict[str, Any] = event["detail"]
        return detail
    return None


def follow_job(store: ConsoleStore, job_id: str) -> dict[str, Any]:
    """The path of every event of `job_id`: publisher → bus → notify → each post, with the time at
    each hop. Posts are attributed to the notify invocation running when they were made (the
    gateway's post carries no job id); overlapping notify invocations share them."""
    wanted = InvocationFilter(labels=((JOB_LABEL, job_id),))
    records = sorted(store.invocations(wanted, limit=DEFAULT_CAPACITY), key=_seq)
    notifies = [record for record in records if (_detail(record) or {}).get("jobId") == job_id]
    notify_seqs = {record.seq for record in notifies}
    publishers = [record for record in records if record.seq not in notify_seqs]
    posts = store.gateway_events("post")
    hops = []
    for notify in notifies:
        detail = _detail(notify) or {}
        emitted_ms = detail.get("emittedAt") if isinstance(detail.get("emittedAt"), int | float) else None
        delivered = [post for post in posts if notify.started_at <= post.at <= notify.ended_at]
        publisher = _publisher_of(publishers, emitted_ms)
        result = notify.result if isinstance(notify.result, dict) else {}
        hops.append(
            {
                "seq": detail.get("seq"),
                "stage": detail.get("stage"),
                "percent": detail.get("percent"),
                "emittedAt": emitted_ms,
                "publisher": publisher.summary(store.labels) if publisher else None,
                "bus": {
                    "eventId": notify.event.get("id"),
                    "time": notify.event.get("time"),
                    "source": notify.event.get("source"),
                    "detailType": notify.event.get("detail-type"),
                    "rule": notify.source,
                },
                "notify": notify.summary(store.labels),
                "outcome": result.get("outcome"),
                "delivered": result.get("delivered"),
                "gone": result.get("gone"),
                "publishToNotifyMs": _ms_between(emitted_ms, notify.started_at),
                "notifyMs": round(notify.duration_ms, 3),
                "posts": [
                    {
                        "connectionId": post.details.get("connectionId"),
                        "at": post.at,
                        "bytes": post.details.get("bytes"),
                        "afterNotifyStartMs": round((post.at - notify.started_at) * 1000, 3),
                        "publishToReceiveMs": _ms_between(emitted_ms, post.at),
                    }
                    for post in delivered
                ],
            }
        )
    return {
        "jobId": job_id,
        "publishers": [record.summary(store.labels) for record in publishers],
        "events": hops,
    }


def _seq(record: InvocationRecord) -> int:
    return record.seq


def _ms_between(emitted_ms: float | None, at_s: float) -> float | None:
    return None if emitted_ms is None else round(at_s * 1000 - emitted_ms, 3)


def _publisher_of(publishers: list[InvocationRecord], emitted_ms: float | None) -> InvocationRecord | None:
    """The invocation that was running when the event was emitted (the worker that published it)."""
    if emitted_ms is None:
        return None
    emitted_s = emitted_ms / 1000
    # emittedAt is whole milliseconds: allow that much slack on both ends of the window. A client's
    # frame (a route with a connection) may mention the job but never publishes its events.
    running = [
        r
        for r in publishers
        if r.connection_id is None and r.started_at - 0.001 <= emitted_s <= r.ended_at + 0.001
    ]
    return running[-1] if running else None
