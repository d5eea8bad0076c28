"""The local debug console: every invocation with its event, response and logs, replay, and the
live connections with a Disconnect button; knows no app.

The record store and everything that reads it (log parsing, redaction, filters) is plain code
fed with values; `Console` is an add-on (addons.py) that records the stack's invocation and
gateway events and serves the page (`/console`) and its JSON API (`/_tidings/console/api/...`)
with a Server-Sent Events stream of new invocations and connection changes. An app adds its own
views as `ConsoleView` objects: labels found in invocations (a filter box each), columns of a
connection, API routes for its page panels.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from tidings.local.addons import StackHost
from tidings.local.aws_guard import PendingDenials
from tidings.local.invocation_line import outcome
from tidings.local.model import Invocation, LocalApp

log = logging.getLogger(__name__)

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
CONNECTION_KEYS = frozenset({"connectionId", "connection_id"})
USER_KEYS = frozenset({"userId", "user_id", "principalId"})
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


def walk(value: Any) -> Iterator[tuple[str | None, Any]]:
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


def strings_under(values: Iterable[Any], keys: frozenset[str]) -> set[str]:
    found = set()
    for value in values:
        for key, item in walk(value):
            if key in keys and isinstance(item, str) and item:
                found.add(item)
    return found


@dataclass(frozen=True)
class Label:
    """A kind of id an app's invocations carry (e.g. a job id): a filter box and a summary list.

    `find` gets the invocation's event, result and log-record fields (redacted) and returns the ids.
    """

    name: str  # the filter's query parameter, e.g. "job"
    plural: str  # its key in an invocation summary, e.g. "jobs"
    find: Callable[[Sequence[Any]], set[str]]


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
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)  # Label.name -> ids
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
        labels: Sequence[Label] = (),
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
            connection_ids=frozenset(strings_under(searched, CONNECTION_KEYS)),
            user_ids=frozenset(strings_under(searched, USER_KEYS)),
            labels={label.name: frozenset(label.find(searched)) for label in labels},
            replay_of=replay_of,
            denied=tuple(redact(list(denied))),
        )

    def label(self, name: str) -> frozenset[str]:
        return self.labels.get(name, frozenset())

    def summary(self, labels: Sequence[Label] = ()) -> dict[str, Any]:
        return {
            **{label.plural: sorted(self.label(label.name)) for label in labels},
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
            "replayOf": self.replay_of,
            "denied": list(self.denied),
        }

    def detail(self, labels: Sequence[Label] = ()) -> dict[str, Any]:
        return {
            **self.summary(labels),
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
    connection: str = ""
    user: str = ""
    outcome: str = ""  # "" | "ok" | "error"
    after: int = 0  # only records with a larger seq
    labels: tuple[tuple[str, str], ...] = ()  # (Label.name, id)

    @classmethod
    def from_query(cls, query: Any, label_names: Iterable[str] = ()) -> InvocationFilter:
        outcome = str(query.get("outcome", ""))
        if outcome not in ("", "ok", "error"):
            raise ValueError("outcome must be ok or error")
        after = str(query.get("after", "0")) or "0"
        if not after.isdigit():
            raise ValueError("after must be a record number")
        return cls(
            function=str(query.get("function", "")).strip(),
            connection=str(query.get("connection", "")).strip(),
            user=str(query.get("user", "")).strip(),
            outcome=outcome,
            after=int(after),
            labels=tuple(
                (name, value) for name in label_names if (value := str(query.get(name, "")).strip())
            ),
        )

    def matches(self, record: InvocationRecord) -> bool:
        if record.seq <= self.after:
            return False
        if self.function and record.function_id != self.function:
            return False
        if any(value not in record.label(name) for name, value in self.labels):
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
        labels: Sequence[Label] = (),
    ) -> None:
        if capacity < 1 or gateway_capacity < 1:
            raise ValueError("capacities must be at least 1")
        self.clock = clock
        self.labels = tuple(labels)
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
            labels=self.labels,
            denied=denied,
        )
        self._invocations.append(record)
        self._publish({"type": "invocation", "invocation": record.summary(self.labels)})
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


# ------------------------------------------------------------------------------------------ views


class ConsoleView(Protocol):
    """An app's part of the console (its labels, connection columns and API routes)."""

    labels: Sequence[Label]
    panels: Sequence[str]  # the page's optional panels it serves, e.g. "jobs"

    def applies(self, app: LocalApp) -> bool:
        """Whether the template is one this view knows (else the console leaves it out)."""
        ...

    def routes(self, store: ConsoleStore) -> list[web.RouteDef]:
        """Extra routes under the console's API prefix, e.g. `GET /jobs/{job_id}`."""
        ...

    def describe_connections(
        self, host: StackHost, store: ConsoleStore, connection_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """More columns per connection id (called in a thread: it may query the embedded services)."""
        ...


# ------------------------------------------------------------------------------------------ http


class ConsoleApi:
    """The aiohttp handlers, on the add-on host of a running stack."""

    def __init__(
        self,
        store: ConsoleStore,
        host: StackHost,
        views: Sequence[ConsoleView] = (),
        static_dir: Path = STATIC_DIR,
    ) -> None:
        self.store = store
        self.host = host
        self.views = tuple(views)
        self.static_dir = static_dir

    def page_routes(self) -> list[web.RouteDef]:
        """Under CONSOLE_PATH."""
        return [web.get("", self.page), web.get("/", self.page), web.get("/{name}", self.asset)]

    def api_routes(self) -> list[web.RouteDef]:
        """Under API_PREFIX: the console's own, then the views'."""
        routes = [
            web.get("/features", self.features),
            web.get("/invocations", self.list_invocations),
            web.get("/invocations/{seq}", self.get_invocation),
            web.post("/invocations/{seq}/replay", self.replay),
            web.get("/connections", self.list_connections),
            web.delete("/connections/{connection_id}", self.disconnect),
            web.get("/stream", self.stream),
        ]
        for view in self.views:
            routes.extend(view.routes(self.store))
        return routes

    async def features(self, request: web.Request) -> web.Response:
        """What the page shows besides the generic parts: the labels to filter by, the panels."""
        return _json(
            {
                "labels": [label.name for label in self.store.labels],
                "panels": [panel for view in self.views for panel in view.panels],
                "websocket": self.host.gateway.present,
            }
        )

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
            wanted = InvocationFilter.from_query(request.query, (label.name for label in self.store.labels))
            limit = _int_query(request, "limit", 500, 1, DEFAULT_CAPACITY)
        except ValueError as exc:
            return _error(400, "bad_filter", str(exc))
        records = self.store.invocations(wanted, limit)
        return _json(
            {
                "invocations": [record.summary(self.store.labels) for record in records],
                "functions": self._functions(),
            }
        )

    async def get_invocation(self, request: web.Request) -> web.Response:
        record = self._record(request)
        if record is None:
            return _error(404, "not_found", "no such invocation (it may have left the buffer)")
        return _json(record.detail(self.store.labels))

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
        token = _REPLAY_OF.set(record.seq)
        try:
            invocation = await self.host.invoke(record.function_id, event, source=f"replay #{record.seq}")
        finally:
            _REPLAY_OF.reset(token)
        replayed = self.store.by_request_id(invocation.request_id)
        if replayed is None:
            # The stack's listeners did not run (not wired): record it here so the replay is visible
            replayed = self.store.record_invocation(
                invocation, record.function_id, f"replay #{record.seq}", event
            )
        return _json(replayed.summary(self.store.labels), status=201)

    def _record(self, request: web.Request) -> InvocationRecord | None:
        seq = request.match_info["seq"]
        return self.store.get(int(seq)) if seq.isdigit() else None

    def _functions(self) -> list[str]:
        return sorted(set(self.host.app.functions) | set(self.store.functions()))

    # --- connections ---------------------------------------------------------------------------

    async def list_connections(self, request: web.Request) -> web.Response:
        rows = self.host.gateway.connections()
        activity = self.store.last_activity()
        ids = [str(row["connectionId"]) for row in rows]
        details = await asyncio.to_thread(self._describe, ids) if ids else {}
        connections = []
        for row in rows:
            connection_id = str(row["connectionId"])
            connections.append(
                {
                    "connectionId": connection_id,
                    "user": row.get("principalId"),
                    "connectedAt": row.get("connectedAt"),
                    "lastActiveAt": row.get("lastActiveAt"),
                    "lastEventAt": activity.get(connection_id),
                    "messagesIn": row.get("messagesIn"),
                    "messagesOut": row.get("messagesOut"),
                    "state": row.get("state"),
                    **details.get(connection_id, {}),
                }
            )
        return _json({"connections": connections})

    def _describe(self, connection_ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for view in self.views:
            try:
                described = view.describe_connections(self.host, self.store, connection_ids)
            except Exception:  # a broken view: the generic columns still show
                log.exception("console view %s failed to describe connections", type(view).__name__)
                continue
            for connection_id, columns in described.items():
                found.setdefault(connection_id, {}).update(columns)
        return found

    async def disconnect(self, request: web.Request) -> web.Response:
        refused = _refuse_cross_site(request, need_json=False)
        if refused is not None:
            return refused
        gateway = self.host.gateway
        if not gateway.present:
            return _error(404, "no_gateway", "this template has no WebSocket API")
        status = gateway.delete(request.match_info["connection_id"])
        if status == 410:
            return _error(410, "gone", "the connection is already gone")
        return web.Response(status=204)

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


# ------------------------------------------------------------------------------------ add-on


class Console:
    """The console add-on; `views` are an app's own parts of it (those that apply to the template)."""

    name = "console"

    def __init__(self, views: Sequence[ConsoleView] = (), static_dir: Path = STATIC_DIR) -> None:
        self.views = tuple(views)
        self.static_dir = static_dir

    def install(self, host: StackHost) -> None:
        views = [view for view in self.views if view.applies(host.app)]
        store = ConsoleStore(labels=[label for view in views for label in view.labels])
        api = ConsoleApi(store, host, views, self.static_dir)
        denials = PendingDenials()
        host.on_denied(denials.add)

        def record(invocation: Invocation, function_id: str, source: str, event: dict[str, Any]) -> None:
            lines = tuple(dict.fromkeys(denial.line() for denial in denials.take(function_id)))
            store.record_invocation(invocation, function_id, source, event, denied=lines)

        host.on_invocation(record)
        host.on_gateway_event(store.record_gateway_event)
        host.add_routes(CONSOLE_PATH, api.page_routes(), purpose="the console")
        host.add_routes(API_PREFIX, api.api_routes(), purpose="the console")
        host.advertise("Console", CONSOLE_PATH)

        async def close_streams() -> None:
            store.close_streams()

        host.on_stop(close_streams)
