"""The local debug console: every invocation with its event, response and logs, live connections,
and a job's path from publisher to each post.

The record store and everything that reads it (log parsing, redaction, filters, job chains) is
plain code fed with values; `install` wires it to a running `LocalStack` (invocation and gateway
listeners) and adds the page (`/console`) and its JSON API (`/_tidings/console/api/...`) with a
Server-Sent Events stream of new invocations and connection changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tidings.local.invocation_line import outcome
from tidings.local.model import Invocation

if TYPE_CHECKING:
    from tidings.local.stack import LocalStack

CONSOLE_PATH = "/console"
API_PREFIX = "/_tidings/console/api"
STATIC_DIR = Path(__file__).resolve().parents[2] / "web" / "console"
STATIC_FILES = {"console.js": "text/javascript", "console.css": "text/css"}
DEFAULT_CAPACITY = 2000  # invocations kept; the oldest go first
GATEWAY_CAPACITY = 10000  # gateway events (posts are one each)
STREAM_QUEUE_LIMIT = 1000  # a browser that falls this far behind is cut off and reloads
KEEPALIVE_S = 15.0
MAX_REPLAY_BYTES = 1024 * 1024
REDACTED = "[redacted token]"
# A signed token (JWT) wherever it appears: header, query string, subprotocol list, log line
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
JOB_KEYS = frozenset({"jobId", "job_id"})
CONNECTION_KEYS = frozenset({"connectionId", "connection_id"})
USER_KEYS = frozenset({"userId", "user_id", "principalId"})
JOB_TOPIC = re.compile(r"^job:(.+)$")
LOG_CORE_KEYS = ("level", "message", "timestamp", "location", "service")
# Set while the console replays an invocation, so the listener can link the new record to the old
_REPLAY_OF: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "tidings_console_replay", default=None
)


# --------------------------------------------------------------------------------------------- data


def redact(value: Any) -> Any:
    """`value` with every token-shaped string replaced: the console keeps no credentials."""
    if isinstance(value, str):
        return JWT.sub(REDACTED, value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


@dataclass(frozen=True)
class LogLine:
    """One line a handler printed: a Powertools JSON record, an EMF metrics blob or plain text."""

    kind: str  # "log" | "metrics" | "text"
    level: str | None
    message: str
    timestamp: str | None
    fields: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level": self.level,
            "message": self.message,
            "timestamp": self.timestamp,
            "fields": self.fields,
        }


def parse_log_lines(logs: str) -> list[LogLine]:
    lines = []
    for raw in logs.splitlines():
        if not raw.strip():
            continue
        record: Any = None
        if raw.lstrip().startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(raw)
        if not isinstance(record, dict):
            lines.append(LogLine("text", None, raw, None, {}))
        elif "_aws" in record:
            lines.append(_metrics_line(record))
        else:
            fields = {key: value for key, value in record.items() if key not in LOG_CORE_KEYS}
            message = record.get("message", "")
            lines.append(
                LogLine(
                    "log",
                    str(record["level"]) if "level" in record else None,
                    message if isinstance(message, str) else json.dumps(message),
                    str(record["timestamp"]) if "timestamp" in record else None,
                    fields,
                )
            )
    return lines


def _metrics_line(record: dict[str, Any]) -> LogLine:
    """An EMF blob as `Delivered=1 Gone=0 ...` with its dimensions as fields."""
    aws = record.get("_aws") or {}
    names: list[str] = []
    for directive in aws.get("CloudWatchMetrics") or []:
        names.extend(str(metric.get("Name")) for metric in directive.get("Metrics") or [])
    values = []
    for name in names:
        value = record.get(name)
        values.append(f"{name}={value[0] if isinstance(value, list) and len(value) == 1 else value}")
    fields = {key: value for key, value in record.items() if key != "_aws" and key not in names}
    return LogLine("metrics", "METRICS", " ".join(values), None, fields)


def _walk(value: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) pair in a JSON value, depth first; JSON strings in `body` are opened."""
    stack: list[tuple[str | None, Any]] = [(None, value)]
    while stack:
        key, item = stack.pop()
        yield key, item
        if isinstance(item, dict):
            for child_key, child in item.items():
                if child_key == "body" and isinstance(child, str) and child[:1] in "{[":
                    with contextlib.suppress(ValueError):
                        child = json.loads(child)
                stack.append((child_key, child))
        elif isinstance(item, list):
            stack.extend((key, child) for child in item)


def _strings_under(values: Iterable[Any], keys: frozenset[str]) -> set[str]:
    found = set()
    for value in values:
        for key, item in _walk(value):
            if key in keys and isinstance(item, str) and item:
                found.add(item)
    return found


def _job_topics(values: Iterable[Any]) -> set[str]:
    found = set()
    for value in values:
        for key, item in _walk(value):
            if key == "topic" and isinstance(item, str) and (match := JOB_TOPIC.match(item)):
                found.add(match.group(1))
    return found


@dataclass(frozen=True)
class InvocationRecord:
    """One invocation as the console shows it; `seq` orders records and names them in the API."""

    seq: int
    request_id: str
    function_id: str
    source: str
    started_at: float  # epoch seconds
    duration_ms: float
    cold: bool
    ok: bool
    event: Any
    result: Any
    error_type: str | None
    error_message: str | None
    traceback: str | None
    logs: tuple[LogLine, ...]
    connection_id: str | None  # the caller's connection (WebSocket routes)
    connection_ids: frozenset[str]  # every connection the invocation names
    user_ids: frozenset[str]
    job_ids: frozenset[str]
    replay_of: int | None = None
    # the AWS calls IAM refused during it, with what would allow each (aws_guard.Denial.line)
    denied: tuple[str, ...] = ()

    @property
    def ended_at(self) -> float:
        return self.started_at + self.duration_ms / 1000

    @classmethod
    def of(
        cls,
        seq: int,
        invocation: Invocation,
        function_id: str,
        source: str,
        event: dict[str, Any],
        *,
        ended_at: float,
        replay_of: int | None = None,
        denied: tuple[str, ...] = (),
    ) -> InvocationRecord:
        event = redact(event)
        result = redact(invocation.result)
        logs = tuple(parse_log_lines(redact(invocation.logs)))
        log_fields = [line.fields for line in logs]
        context = event.get("requestContext") if isinstance(event, dict) else None
        connection_id = context.get("connectionId") if isinstance(context, dict) else None
        searched = [event, result, *log_fields]
        return cls(
            seq=seq,
            request_id=invocation.request_id,
            function_id=function_id,
            source=source,
            started_at=ended_at - invocation.duration_ms / 1000,
            duration_ms=invocation.duration_ms,
            cold=invocation.cold,
            ok=not outcome(invocation).failed,  # a caught error answering 500 is an error too
            event=event,
            result=result,
            error_type=invocation.error_type,
            error_message=redact(invocation.error_message),
            traceback=redact(invocation.traceback),
            logs=logs,
            connection_id=connection_id if isinstance(connection_id, str) else None,
            connection_ids=frozenset(_strings_under(searched, CONNECTION_KEYS)),
            user_ids=frozenset(_strings_under(searched, USER_KEYS)),
            job_ids=frozenset(_strings_under(searched, JOB_KEYS) | _job_topics(searched)),
            replay_of=replay_of,
            denied=tuple(redact(list(denied))),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "requestId": self.request_id,
            "function": self.function_id,
            "trigger": self.source,
            "startedAt": self.started_at,
            "durationMs": round(self.duration_ms, 3),
            "cold": self.cold,
            "ok": self.ok,
            "errorType": self.error_type,
            "errorMessage": self.error_message,
            "connectionId": self.connection_id,
            "users": sorted(self.user_ids),
            "jobs": sorted(self.job_ids),
            "replayOf": self.replay_of,
            "denied": list(self.denied),
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "event": self.event,
            "result": self.result,
            "traceback": self.traceback,
            "logs": [line.to_json() for line in self.logs],
        }


@dataclass(frozen=True)
class GatewayEvent:
    seq: int
    at: float  # epoch seconds
    kind: str  # connect | disconnect | disconnect-dropped | message | post | close | reject
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind, **self.details}


@dataclass(frozen=True)
class InvocationFilter:
    """What the console's filter boxes ask for; empty fields match everything."""

    function: str = ""
    job: str = ""
    connection: str = ""
    user: str = ""
    outcome: str = ""  # "" | "ok" | "error"
    after: int = 0  # only records with a larger seq

    @classmethod
    def from_query(cls, query: Any) -> InvocationFilter:
        outcome = str(query.get("outcome", ""))
        if outcome not in ("", "ok", "error"):
            raise ValueError("outcome must be ok or error")
        after = str(query.get("after", "0")) or "0"
        if not after.isdigit():
            raise ValueError("after must be a record number")
        return cls(
            function=str(query.get("function", "")).strip(),
            job=str(query.get("job", "")).strip(),
            connection=str(query.get("connection", "")).strip(),
            user=str(query.get("user", "")).strip(),
            outcome=outcome,
            after=int(after),
        )

    def matches(self, record: InvocationRecord) -> bool:
        if record.seq <= self.after:
            return False
        if self.function and record.function_id != self.function:
            return False
        if self.job and self.job not in record.job_ids:
            return False
        if self.connection and self.connection not in record.connection_ids:
            return False
        if self.user and self.user not in record.user_ids:
            return False
        if self.outcome:
            return record.ok == (self.outcome == "ok")
        return True


class ConsoleStore:
    """Bounded memory of invocations and gateway events, with subscribers for the live stream."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        gateway_capacity: int = GATEWAY_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1 or gateway_capacity < 1:
            raise ValueError("capacities must be at least 1")
        self.clock = clock
        self._invocations: deque[InvocationRecord] = deque(maxlen=capacity)
        self._gateway: deque[GatewayEvent] = deque(maxlen=gateway_capacity)
        self._seq = 0
        self._gateway_seq = 0
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()

    # --- recording (the stack's listeners) ---------------------------------------------------

    def record_invocation(
        self,
        invocation: Invocation,
        function_id: str,
        source: str,
        event: dict[str, Any],
        *,
        denied: tuple[str, ...] = (),
    ) -> InvocationRecord:
        self._seq += 1
        record = InvocationRecord.of(
            self._seq,
            invocation,
            function_id,
            source,
            event,
            ended_at=self.clock(),
            replay_of=_REPLAY_OF.get(),
            denied=denied,
        )
        self._invocations.append(record)
        self._publish({"type": "invocation", "invocation": record.summary()})
        return record

    def record_gateway_event(self, kind: str, details: dict[str, Any]) -> GatewayEvent:
        self._gateway_seq += 1
        event = GatewayEvent(self._gateway_seq, self.clock(), kind, redact(dict(details)))
        self._gateway.append(event)
        if kind != "post":  # posts are many; the page refreshes connections on the others
            self._publish({"type": "gateway", "event": event.to_json()})
        return event

    # --- reading ---------------------------------------------------------------------------

    def invocations(self, wanted: InvocationFilter | None = None, limit: int = 500) -> list[InvocationRecord]:
        """Newest first."""
        wanted = wanted or InvocationFilter()
        found = []
        for record in reversed(self._invocations):
            if wanted.matches(record):
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    def get(self, seq: int) -> InvocationRecord | None:
        for record in reversed(self._invocations):
            if record.seq == seq:
                return record
        return None

    def by_request_id(self, request_id: str) -> InvocationRecord | None:
        for record in reversed(self._invocations):
            if record.request_id == request_id:
                return record
        return None

    def gateway_events(self, kind: str | None = None) -> list[GatewayEvent]:
        return [event for event in self._gateway if kind is None or event.kind == kind]

    def functions(self) -> list[str]:
        return sorted({record.function_id for record in self._invocations})

    def topics_from_frames(self, connection_id: str) -> list[str]:
        """Topics a connection asked for, replaying its successful subscribe/unsubscribe frames."""
        topics: dict[str, None] = {}
        for record in self._invocations:
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

    def last_activity(self) -> dict[str, float]:
        """Latest gateway event time per connection id."""
        latest: dict[str, float] = {}
        for event in self._gateway:
            connection_id = event.details.get("connectionId")
            if isinstance(connection_id, str):
                latest[connection_id] = event.at
        return latest

    # --- live stream -------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=STREAM_QUEUE_LIMIT)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)

    def close_streams(self) -> None:
        for queue in list(self._subscribers):
            self._end(queue)

    def _publish(self, message: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self._end(queue)  # the page reconnects and reloads rather than miss records silently

    def _end(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)
        while True:
            try:
                queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                queue.get_nowait()


# ------------------------------------------------------------------------------------ job chain


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
    records = sorted(store.invocations(InvocationFilter(job=job_id), limit=DEFAULT_CAPACITY), key=_seq)
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
                "publisher": publisher.summary() if publisher else None,
                "bus": {
                    "eventId": notify.event.get("id"),
                    "time": notify.event.get("time"),
                    "source": notify.event.get("source"),
                    "detailType": notify.event.get("detail-type"),
                    "rule": notify.source,
                },
                "notify": notify.summary(),
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
        "publishers": [record.summary() for record in publishers],
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


# ------------------------------------------------------------------------------------------ http


class ConsoleApi:
    """The aiohttp handlers; `stack` is the running `LocalStack` (runner, gateway, app, urls)."""

    def __init__(self, store: ConsoleStore, stack: LocalStack, static_dir: Path = STATIC_DIR) -> None:
        self.store = store
        self.stack = stack
        self.static_dir = static_dir
        self._subscriptions_table = _subscriptions_table(stack)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(CONSOLE_PATH, self.page)
        app.router.add_get(CONSOLE_PATH + "/", self.page)
        app.router.add_get(CONSOLE_PATH + "/{name}", self.asset)
        app.router.add_get(API_PREFIX + "/invocations", self.list_invocations)
        app.router.add_get(API_PREFIX + "/invocations/{seq}", self.get_invocation)
        app.router.add_post(API_PREFIX + "/invocations/{seq}/replay", self.replay)
        app.router.add_get(API_PREFIX + "/connections", self.list_connections)
        app.router.add_delete(API_PREFIX + "/connections/{connection_id}", self.disconnect)
        app.router.add_get(API_PREFIX + "/jobs/{job_id}", self.job)
        app.router.add_get(API_PREFIX + "/stream", self.stream)

    # --- page --------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html", "text/html")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return self._file(name, STATIC_FILES[name])

    def _file(self, name: str, content_type: str) -> web.Response:
        path = self.static_dir / name
        try:
            body = path.read_bytes()
        except OSError:
            return _error(500, "console_missing", f"the console page is not installed ({path} is missing)")
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={
                "Cache-Control": "no-store",
                # The page loads nothing from elsewhere and runs no inline script
                "Content-Security-Policy": "default-src 'self'; connect-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
            },
        )

    # --- invocations ---------------------------------------------------------------------------

    async def list_invocations(self, request: web.Request) -> web.Response:
        try:
            wanted = InvocationFilter.from_query(request.query)
            limit = _int_query(request, "limit", 500, 1, DEFAULT_CAPACITY)
        except ValueError as exc:
            return _error(400, "bad_filter", str(exc))
        records = self.store.invocations(wanted, limit)
        return _json(
            {"invocations": [record.summary() for record in records], "functions": self._functions()}
        )

    async def get_invocation(self, request: web.Request) -> web.Response:
        record = self._record(request)
        if record is None:
            return _error(404, "not_found", "no such invocation (it may have left the buffer)")
        return _json(record.detail())

    async def replay(self, request: web.Request) -> web.Response:
        refused = _refuse_cross_site(request)
        if refused is not None:
            return refused
        record = self._record(request)
        if record is None:
            return _error(404, "not_found", "no such invocation (it may have left the buffer)")
        event = record.event
        if request.can_read_body:
            raw = await request.content.read(MAX_REPLAY_BYTES + 1)
            if len(raw) > MAX_REPLAY_BYTES:
                return _error(413, "too_large", f"the event must be at most {MAX_REPLAY_BYTES} bytes")
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                return _error(400, "bad_json", f"the request body is not JSON: {exc}")
            if not isinstance(body, dict):
                return _error(400, "bad_request", 'send {"event": {...}} or nothing')
            if "event" in body:
                event = body["event"]
        if not isinstance(event, dict):
            return _error(400, "bad_event", "the event must be a JSON object")
        runner = self.stack.runner
        if runner is None:
            return _error(503, "not_running", "the stack is not running")
        token = _REPLAY_OF.set(record.seq)
        try:
            invocation = await runner.invoke(record.function_id, event, source=f"replay #{record.seq}")
        finally:
            _REPLAY_OF.reset(token)
        replayed = self.store.by_request_id(invocation.request_id)
        if replayed is None:
            # The stack's listeners did not run (not wired): record it here so the replay is visible
            replayed = self.store.record_invocation(
                invocation, record.function_id, f"replay #{record.seq}", event
            )
        return _json(replayed.summary(), status=201)

    def _record(self, request: web.Request) -> InvocationRecord | None:
        seq = request.match_info["seq"]
        return self.store.get(int(seq)) if seq.isdigit() else None

    def _functions(self) -> list[str]:
        app = self.stack.app
        known = set(app.functions) if app is not None else set()
        return sorted(known | set(self.store.functions()))

    # --- connections ---------------------------------------------------------------------------

    async def list_connections(self, request: web.Request) -> web.Response:
        gateway = self.stack.gateway
        rows = gateway.connections() if gateway is not None else []
        activity = self.store.last_activity()
        ids = [str(row["connectionId"]) for row in rows]
        from_table = await asyncio.to_thread(self._topics_from_table, ids)
        connections = []
        for row in rows:
            connection_id = str(row["connectionId"])
            topics = from_table.get(connection_id)
            connections.append(
                {
                    "connectionId": connection_id,
                    "user": row.get("principalId"),
                    "topics": topics if topics is not None else self.store.topics_from_frames(connection_id),
                    "topicsFrom": "table" if topics is not None else "frames",
                    "connectedAt": row.get("connectedAt"),
                    "lastActiveAt": row.get("lastActiveAt"),
                    "lastEventAt": activity.get(connection_id),
                    "messagesIn": row.get("messagesIn"),
                    "messagesOut": row.get("messagesOut"),
                    "state": row.get("state"),
                }
            )
        return _json({"connections": connections})

    def _topics_from_table(self, connection_ids: list[str]) -> dict[str, list[str]]:
        """Each connection's topics by a Query on the subscriptions table's ByConnection index."""
        table = self._subscriptions_table
        urls = self.stack.urls
        app = self.stack.app
        if table is None or urls is None or app is None or not connection_ids:
            return {}
        assert self.stack.aws is not None
        client = self.stack.aws.client("dynamodb")  # the run's admin key
        found: dict[str, list[str]] = {}
        try:
            for connection_id in connection_ids:
                topics: list[str] = []
                paginator = client.get_paginator("query")
                for page in paginator.paginate(
                    TableName=table,
                    IndexName="ByConnection",
                    KeyConditionExpression="connectionId = :id",
                    ExpressionAttributeValues={":id": {"S": connection_id}},
                ):
                    topics.extend(item["topic"]["S"] for item in page.get("Items", []) if "topic" in item)
                found[connection_id] = topics
        except Exception:  # the embedded services are stopping, or the table has another shape
            return {}
        return found

    async def disconnect(self, request: web.Request) -> web.Response:
        refused = _refuse_cross_site(request, need_json=False)
        if refused is not None:
            return refused
        gateway = self.stack.gateway
        if gateway is None:
            return _error(404, "no_gateway", "this template has no WebSocket API")
        status = gateway.delete(request.match_info["connection_id"])
        if status == 410:
            return _error(410, "gone", "the connection is already gone")
        return web.Response(status=204)

    # --- jobs ----------------------------------------------------------------------------------

    async def job(self, request: web.Request) -> web.Response:
        return _json(follow_job(self.store, request.match_info["job_id"]))

    # --- live stream ---------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: `invocation` and `gateway` messages as they happen."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue = self.store.subscribe()
        try:
            await response.write(b"retry: 1000\n\n")
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if message is None:
                    break
                kind = str(message["type"])
                data = json.dumps(message, separators=(",", ":"))
                await response.write(f"event: {kind}\ndata: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unsubscribe(queue)
        return response


def _subscriptions_table(stack: LocalStack) -> str | None:
    """The table behind SUBSCRIPTIONS_TABLE, when the app has one with a ByConnection index."""
    app = stack.app
    if app is None:
        return None
    names = {f.environment.get("SUBSCRIPTIONS_TABLE") for f in app.functions.values()} - {None, ""}
    for table in app.tables:
        indexes = table.properties.get("GlobalSecondaryIndexes") or []
        has_index = any(index.get("IndexName") == "ByConnection" for index in indexes)
        if has_index and (not names or table.name in names):
            return table.name
    return None


def _refuse_cross_site(request: web.Request, *, need_json: bool = True) -> web.Response | None:
    """Changes come only from the console itself: a page elsewhere must not replay or disconnect."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return _error(403, "cross_origin", "the console API accepts changes only from the console page")
    if need_json and request.can_read_body and request.content_type != "application/json":
        return _error(415, "not_json", "send the event as application/json")
    return None


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status=status)


# ------------------------------------------------------------------------------------ install


class PendingDenials:
    """Refused AWS calls by function, until that function's next invocation record takes them.

    The AWS endpoint reports on its own threads (and the management API on the event loop); the
    record is made on the event loop when the invocation ends, after the calls it made.
    """

    def __init__(self, limit: int = 20) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[str]] = {}
        self.limit = limit

    def add(self, function_id: str, line: str) -> None:
        with self._lock:
            pending = self._pending.setdefault(function_id, [])
            if len(pending) < self.limit and line not in pending:
                pending.append(line)

    def take(self, function_id: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._pending.pop(function_id, ()))


@dataclass
class Console:
    """What `install` attached to a stack (tests read the store through it)."""

    store: ConsoleStore
    api: ConsoleApi
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def install(http_app: web.Application, stack: LocalStack) -> Console:
    """Record every invocation and gateway event of `stack` and serve the console on `http_app`."""
    store = ConsoleStore()
    api = ConsoleApi(store, stack)
    denials = PendingDenials()
    stack.denials.listeners.append(lambda denial: denials.add(denial.caller, denial.line()))

    def record(invocation: Invocation, function_id: str, source: str, event: dict[str, Any]) -> None:
        store.record_invocation(invocation, function_id, source, event, denied=denials.take(function_id))

    stack.invocation_listeners.append(record)
    stack.gateway_listeners.append(store.record_gateway_event)
    api.add_routes(http_app)
    console = Console(store, api)

    async def on_shutdown(_: web.Application) -> None:
        store.close_streams()
        for task in console.tasks:
            task.cancel()

    http_app.on_shutdown.append(on_shutdown)
    return console
