"""Fault injection for the local stack: throttling, crashing workers, DynamoDB outages.

Active only when `TIDINGS_FAULTS=1` is set in the environment of `tidings dev`; otherwise
`install` does nothing and `/_tidings/faults` does not exist. The reliability tests
(tests/reliability/) switch faults on and off at run time through `POST /_tidings/faults`:

    {"throttle": {"fraction": 0.3, "seed": 7,           a fraction of @connections POSTs answer 429,
                  "maxPerMessage": 2}}                  the same message to the same connection at most
                                                        twice (transient throttling; omit: no bound)
    {"killAfterPosts": {"function": "NotifyFunction",   kill that function's busy workers right after
                        "posts": 50, "jobId": "j-1"}}   the 50th delivered post of job j-1 (once)
    {"killWhenBusy": {"function": "TranscodeSegmentFunction", "afterSeconds": 1.0}}
                                                        kill a worker that has been running that long (once)
    {"dynamodbOutage": {"seconds": 3}}                  every DynamoDB call answers 500 for 3 s
    {"reset": true}                                     everything off, counters kept

`GET /_tidings/faults` returns the settings and counters (posts answered 429, workers killed,
DynamoDB calls refused). The hooks replace attributes of this stack's own objects (the gateway's
`post`, the runner's `_spawn`) and moto's DynamoDB handler in this process only, so nothing
changes when the variable is not set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tidings.local.stack import LocalStack

log = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "TIDINGS_FAULTS"
ROUTE = "/_tidings/faults"
BUSY_POLL_S = 0.05
DYNAMODB_OUTAGE_BODY = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
        "message": "Internal server error (injected by tidings faults)",
    }
)


class FaultRequestError(ValueError):
    """A fault request the control endpoint cannot apply (answered 400)."""


@dataclass
class KillAfterPosts:
    function_id: str
    posts: int
    job_id: str | None
    seen: int = 0


@dataclass
class KillWhenBusy:
    function_id: str
    after_s: float


@dataclass
class Faults:
    """The switches and what they did; shared by the hooks (event loop and moto's threads)."""

    throttle_fraction: float = 0.0
    throttle_max_per_message: int | None = None
    throttled_messages: dict[tuple[str, int], int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    kill_after_posts: KillAfterPosts | None = None
    kill_when_busy: KillWhenBusy | None = None
    dynamodb_down_until: float = 0.0  # time.monotonic()
    throttled: int = 0
    killed: list[dict[str, Any]] = field(default_factory=list)
    dynamodb_refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "throttleFraction": self.throttle_fraction,
                "throttleMaxPerMessage": self.throttle_max_per_message,
                "killAfterPosts": None
                if self.kill_after_posts is None
                else {
                    "function": self.kill_after_posts.function_id,
                    "posts": self.kill_after_posts.posts,
                    "jobId": self.kill_after_posts.job_id,
                    "seen": self.kill_after_posts.seen,
                },
                "killWhenBusy": None
                if self.kill_when_busy is None
                else {
                    "function": self.kill_when_busy.function_id,
                    "afterSeconds": self.kill_when_busy.after_s,
                },
                "dynamodbDownForSeconds": max(0.0, self.dynamodb_down_until - time.monotonic()),
                "throttled": self.throttled,
                "killed": list(self.killed),
                "dynamodbRefused": self.dynamodb_refused,
            }

    def dynamodb_down(self) -> bool:
        if time.monotonic() >= self.dynamodb_down_until:
            return False
        with self.lock:
            self.dynamodb_refused += 1
        return True


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise FaultRequestError(f"{name} must be a number in [{low}, {high}]")
    return float(value)


def _function(functions: Collection[str], value: Any, name: str) -> str:
    if not isinstance(value, str) or value not in functions:
        names = ", ".join(sorted(functions))
        raise FaultRequestError(f"{name} must be one of the template's functions: {names}")
    return value


def _object(body: dict[str, Any], key: str, example: str, *, nullable: bool = False) -> dict[str, Any] | None:
    spec = body[key]
    if spec is None and nullable:
        return None
    if not isinstance(spec, dict):
        shape = f"an object like {example}" + (" or null" if nullable else "")
        raise FaultRequestError(f"{key} must be {shape}")
    return spec


_UNSET: Any = object()


@dataclass(frozen=True)
class FaultChange:
    """A whole control request, validated: nothing of it is applied unless all of it is valid."""

    reset: bool = False
    throttle: tuple[float, int | None, int | None] | None = None  # fraction, maxPerMessage, seed
    kill_after_posts: KillAfterPosts | None = _UNSET
    kill_when_busy: KillWhenBusy | None = _UNSET
    dynamodb_outage_s: float | None = None

    def apply(self, faults: Faults) -> None:
        with faults.lock:
            if self.reset:
                faults.throttle_fraction = 0.0
                faults.throttle_max_per_message = None
                faults.kill_after_posts = None
                faults.kill_when_busy = None
                faults.dynamodb_down_until = 0.0
            if self.throttle is not None:
                fraction, bound, seed = self.throttle
                faults.throttle_fraction = fraction
                faults.throttle_max_per_message = bound
                faults.throttled_messages.clear()
                if seed is not None:
                    faults.rng.seed(seed)
            if self.kill_after_posts is not _UNSET:
                faults.kill_after_posts = self.kill_after_posts
            if self.kill_when_busy is not _UNSET:
                faults.kill_when_busy = self.kill_when_busy
            if self.dynamodb_outage_s is not None:
                faults.dynamodb_down_until = time.monotonic() + self.dynamodb_outage_s


def parse_request(functions: Collection[str], body: Any) -> FaultChange:
    """Validate a control request (see the module docstring); FaultRequestError names the problem."""
    if not isinstance(body, dict) or not body:
        raise FaultRequestError("the body must be a non-empty JSON object")
    known = {"throttle", "killAfterPosts", "killWhenBusy", "dynamodbOutage", "reset"}
    unknown = set(body) - known
    if unknown:
        raise FaultRequestError(f"unknown fault(s): {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {}
    if "reset" in body:
        if not isinstance(body["reset"], bool):
            raise FaultRequestError("reset must be true or false")
        changes["reset"] = body["reset"]
    if "throttle" in body:
        throttle = _object(body, "throttle", '{"fraction": 0.3}') or {}
        bound = throttle.get("maxPerMessage")
        changes["throttle"] = (
            _number(throttle.get("fraction"), "throttle.fraction", 0.0, 1.0),
            None if bound is None else int(_number(bound, "throttle.maxPerMessage", 0, 1_000_000)),
            int(_number(throttle["seed"], "throttle.seed", 0, 2**32)) if "seed" in throttle else None,
        )
    if "killAfterPosts" in body:
        spec = _object(body, "killAfterPosts", '{"function": "F", "posts": 50}', nullable=True)
        if spec is not None:
            job_id = spec.get("jobId")
            if job_id is not None and not isinstance(job_id, str):
                raise FaultRequestError("killAfterPosts.jobId must be a string")
            changes["kill_after_posts"] = KillAfterPosts(
                function_id=_function(functions, spec.get("function"), "killAfterPosts.function"),
                posts=int(_number(spec.get("posts"), "killAfterPosts.posts", 1, 1_000_000)),
                job_id=job_id,
            )
        else:
            changes["kill_after_posts"] = None
    if "killWhenBusy" in body:
        spec = _object(body, "killWhenBusy", '{"function": "F", "afterSeconds": 1.0}', nullable=True)
        changes["kill_when_busy"] = (
            None
            if spec is None
            else KillWhenBusy(
                function_id=_function(functions, spec.get("function"), "killWhenBusy.function"),
                after_s=_number(spec.get("afterSeconds", 0.0), "killWhenBusy.afterSeconds", 0.0, 3600.0),
            )
        )
    if "dynamodbOutage" in body:
        outage = _object(body, "dynamodbOutage", '{"seconds": 3}') or {}
        changes["dynamodb_outage_s"] = _number(outage.get("seconds"), "dynamodbOutage.seconds", 0.0, 600.0)
    return FaultChange(**changes)


def apply_request(faults: Faults, stack: LocalStack, body: Any) -> None:
    """Validate the whole request, then apply it; raises FaultRequestError having changed nothing."""
    assert stack.app is not None
    parse_request(set(stack.app.functions), body).apply(faults)


def refuse_cross_site(request: web.Request) -> web.Response | None:
    """Only the stack's own pages (or a client without a browser) may change faults, as JSON."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return _error(403, "cross_origin", "faults accept changes only from the stack's own origin")
    if request.content_type != "application/json":
        return _error(415, "not_json", "send the request as application/json")
    return None


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class WorkerTracker:
    """Which worker processes each function has: the runner's `_spawn`, recorded."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.spawned: dict[str, list[Any]] = {}
        self.busy_since: dict[int, float] = {}
        original = runner._spawn

        async def spawn(function: Any, generation: int) -> Any:
            worker = await original(function, generation)
            self.spawned.setdefault(function.logical_id, []).append(worker)
            return worker

        runner._spawn = spawn

    def busy(self, function_id: str) -> list[Any]:
        """Live workers of the function that are not idle in its pool, i.e. inside an invocation."""
        pool = self.runner._pools.get(function_id)
        idle = {id(worker) for worker in pool.idle} if pool is not None else set()
        workers = [w for w in self.spawned.get(function_id, []) if w.alive]
        self.spawned[function_id] = workers
        return [w for w in workers if id(w) not in idle]

    def kill(self, workers: list[Any]) -> list[int]:
        pids = []
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGKILL)
                pids.append(int(worker.process.pid))
        return pids


def _job_id_of(data: bytes) -> str | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    job_id = message.get("jobId") if isinstance(message, dict) else None
    return job_id if isinstance(job_id, str) else None


def _hook_gateway(stack: LocalStack, faults: Faults, workers: WorkerTracker) -> None:
    """Throttle and post-counting kills in front of the gateway's `post` (the @connections POST)."""
    gateway = stack.gateway
    if gateway is None:
        return
    original_post = gateway.post

    def post(connection_id: str, data: bytes) -> int:
        with faults.lock:
            if faults.throttle_fraction and faults.rng.random() < faults.throttle_fraction:
                key = (connection_id, hash(data))
                times = faults.throttled_messages.get(key, 0)
                bound = faults.throttle_max_per_message
                if bound is None or times < bound:
                    faults.throttled_messages[key] = times + 1
                    faults.throttled += 1
                    return 429  # http.py answers LimitExceededException, as API Gateway does
        status = original_post(connection_id, data)
        kill = faults.kill_after_posts
        if status == 200 and kill is not None and (kill.job_id is None or kill.job_id == _job_id_of(data)):
            with faults.lock:
                kill.seen += 1
                due = kill.seen >= kill.posts and faults.kill_after_posts is kill
                if due:
                    faults.kill_after_posts = None
            if due:
                pids = workers.kill(workers.busy(kill.function_id))
                log.warning("faults: killed %s workers %s after %d posts", kill.function_id, pids, kill.seen)
                with faults.lock:
                    faults.killed.append(
                        {"function": kill.function_id, "pids": pids, "afterPosts": kill.seen}
                    )
        return status

    gateway.post = post  # type: ignore[method-assign]


def _hook_dynamodb(faults: Faults) -> None:
    """Every DynamoDB API call answers 500 InternalServerError while an outage is on."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    def call_action(handler: DynamoHandler) -> tuple[int, dict[str, Any], str | bytes]:
        if faults.dynamodb_down():
            return 500, {"Content-Type": "application/x-amz-json-1.0"}, DYNAMODB_OUTAGE_BODY
        response: tuple[int, dict[str, Any], str | bytes] = original(handler)
        return response

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


async def _watch_busy_workers(faults: Faults, workers: WorkerTracker) -> None:
    """Kill a worker of the armed function once it has been inside an invocation long enough."""
    while True:
        await asyncio.sleep(BUSY_POLL_S)
        armed = faults.kill_when_busy
        if armed is None:
            workers.busy_since.clear()
            continue
        now = time.monotonic()
        busy = workers.busy(armed.function_id)
        for worker in busy:
            workers.busy_since.setdefault(id(worker), now)
        ripe = [w for w in busy if now - workers.busy_since[id(w)] >= armed.after_s]
        if not ripe:
            continue
        with faults.lock:
            if faults.kill_when_busy is not armed:
                continue
            faults.kill_when_busy = None
        pids = workers.kill(ripe[:1])
        log.warning("faults: killed a busy %s worker %s", armed.function_id, pids)
        with faults.lock:
            faults.killed.append({"function": armed.function_id, "pids": pids, "busySeconds": armed.after_s})


def install(http_app: web.Application, stack: LocalStack) -> None:
    """Called by stack.py before the HTTP server starts; a no-op unless TIDINGS_FAULTS=1."""
    if os.environ.get(ENVIRONMENT_VARIABLE) != "1":
        return
    assert stack.runner is not None
    faults = Faults()
    workers = WorkerTracker(stack.runner)
    _hook_gateway(stack, faults, workers)
    _hook_dynamodb(faults)
    watcher = asyncio.get_running_loop().create_task(_watch_busy_workers(faults, workers))

    async def stop_watching(_: web.Application) -> None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    http_app.on_cleanup.append(stop_watching)

    @web.middleware
    async def control(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != ROUTE:
            response: web.StreamResponse = await handler(request)
            return response
        if request.method == "POST":
            refused = refuse_cross_site(request)
            if refused is not None:
                return refused
            try:
                body = await request.json()
                apply_request(faults, stack, body)
            except FaultRequestError as exc:
                return _error(400, "bad_fault", str(exc))
            except ValueError as exc:
                return _error(400, "bad_json", f"the body is not JSON: {exc}")
            log.warning("faults: %s", json.dumps(body))
        elif request.method != "GET":
            return _error(405, "method", "GET or POST")
        return web.json_response(faults.snapshot(), headers={"Cache-Control": "no-store"})

    # after the host check and the stack's own /_tidings/ middleware (which passes other
    # /_tidings/ paths on), before the router and its static catch-all
    http_app.middlewares.append(control)
    print(f"Faults: enabled ({ENVIRONMENT_VARIABLE}=1), control at {ROUTE}", file=stack.out, flush=True)
