"""Fault injection for the local stack: throttling, crashing workers, DynamoDB outages.

Active only when `TIDINGS_FAULTS=1` is set in the environment of `tidings dev`; otherwise
`install` does nothing and `/_tidings/faults` does not exist. The reliability tests
(tests/reliability/) switch faults on and off at run time through `POST /_tidings/faults`:

    {"throttle": {"fraction": 0.3, "seed": 7,           a fraction of @connections POSTs answer 429,
                  "maxPerMessage": 2}}                  the same message to the same connection at most
                                                        twice (transient throttling; omit: no bound)
    {"killAfterPosts": {"function": "NotifyFunction",   kill that function's busy workers right after
                        "posts": 50, ...}}              the 50th delivered post (once); more keys are
                                                        an app's post filters (`post_filters`), e.g.
                                                        only the posts of one job
    {"killWhenBusy": {"function": "TranscodeSegmentFunction", "afterSeconds": 1.0}}
                                                        kill a worker that has been running that long (once)
    {"dynamodbOutage": {"seconds": 3}}                  every DynamoDB call answers 500 for 3 s
    {"reset": true}                                     everything off, counters kept

`GET /_tidings/faults` returns the settings and counters (posts answered 429, workers killed,
DynamoDB calls refused). `FaultInjection` is an add-on (addons.py): it wraps the gateway's
PostToConnection, reads which workers are inside an invocation and answers DynamoDB calls on
the embedded endpoint through the host's public hooks, so nothing changes when the variable is
not set.
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
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tidings.local.addons import StackHost
from tidings.local.aws import InterceptMatch
from tidings.local.gateway import PostHandler

log = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "TIDINGS_FAULTS"
ROUTE = "/_tidings/faults"
DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
BUSY_POLL_S = 0.05
DYNAMODB_OUTAGE_BODY = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
        "message": "Internal server error (injected by tidings faults)",
    }
)


class FaultRequestError(ValueError):
    """A fault request the control endpoint cannot apply (answered 400)."""


# A post filter: the request's value in, a test of each posted body out (FaultRequestError when
# the value is not one it takes). An app names its own, e.g. only the posts of one of its jobs.
PostFilter = Callable[[Any], Callable[[bytes], bool]]


@dataclass
class KillAfterPosts:
    function_id: str
    posts: int
    only: dict[str, Any] = field(default_factory=dict)  # the post filters asked for, as sent
    counts: Callable[[bytes], bool] = lambda _data: True
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
                    **self.kill_after_posts.only,
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


def parse_request(
    functions: Collection[str], body: Any, post_filters: Mapping[str, PostFilter] | None = None
) -> FaultChange:
    """Validate a control request (see the module docstring); FaultRequestError names the problem."""
    post_filters = post_filters or {}
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
            only = {key: value for key, value in spec.items() if key not in ("function", "posts")}
            unknown_filters = set(only) - set(post_filters)
            if unknown_filters:
                known_filters = ", ".join(["function", "posts", *sorted(post_filters)])
                raise FaultRequestError(
                    f"killAfterPosts takes {known_filters}, not {', '.join(sorted(unknown_filters))}"
                )
            tests = [post_filters[key](value) for key, value in only.items() if value is not None]
            changes["kill_after_posts"] = KillAfterPosts(
                function_id=_function(functions, spec.get("function"), "killAfterPosts.function"),
                posts=int(_number(spec.get("posts"), "killAfterPosts.posts", 1, 1_000_000)),
                only=only,
                counts=lambda data: all(test(data) for test in tests),
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


class Workers:
    """The host's view of which workers are inside an invocation, and how long they have been."""

    def __init__(self, host: StackHost) -> None:
        self.host = host
        self.busy_since: dict[int, float] = {}

    def busy(self, function_id: str) -> list[int]:
        return self.host.busy_worker_pids(function_id)

    def kill(self, pids: Iterable[int]) -> list[int]:
        killed = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return killed


def throttle_and_count(faults: Faults, workers: Workers) -> Callable[[str, bytes, PostHandler], int]:
    """Throttle and post-counting kills in front of the gateway's PostToConnection."""

    def post(connection_id: str, data: bytes, deliver: PostHandler) -> int:
        with faults.lock:
            if faults.throttle_fraction and faults.rng.random() < faults.throttle_fraction:
                key = (connection_id, hash(data))
                times = faults.throttled_messages.get(key, 0)
                bound = faults.throttle_max_per_message
                if bound is None or times < bound:
                    faults.throttled_messages[key] = times + 1
                    faults.throttled += 1
                    return 429  # http.py answers LimitExceededException, as API Gateway does
        status = deliver(connection_id, data)
        kill = faults.kill_after_posts
        if status == 200 and kill is not None and kill.counts(data):
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

    return post


def dynamodb_outage(faults: Faults) -> Callable[[dict[str, Any]], Callable[..., Iterable[bytes]] | None]:
    """An embedded-AWS interceptor: every DynamoDB API call answers 500 while an outage is on."""

    def refuse(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = DYNAMODB_OUTAGE_BODY.encode()
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def intercept(environ: dict[str, Any]) -> Callable[..., Iterable[bytes]] | None:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith(DYNAMODB_TARGET_PREFIX) and faults.dynamodb_down():
            return refuse
        return None

    return intercept


async def _watch_busy_workers(faults: Faults, workers: Workers) -> None:
    """Kill a worker of the armed function once it has been inside an invocation long enough."""
    while True:
        await asyncio.sleep(BUSY_POLL_S)
        armed = faults.kill_when_busy
        if armed is None:
            workers.busy_since.clear()
            continue
        now = time.monotonic()
        busy = workers.busy(armed.function_id)
        for pid in busy:
            workers.busy_since.setdefault(pid, now)
        ripe = [pid for pid in busy if now - workers.busy_since[pid] >= armed.after_s]
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


class FaultInjection:
    """The faults add-on; does nothing unless TIDINGS_FAULTS=1. `post_filters`: an app's own
    `killAfterPosts` keys (e.g. only the posts of one job)."""

    name = "faults"

    def __init__(self, post_filters: Mapping[str, PostFilter] | None = None) -> None:
        self.post_filters = dict(post_filters or {})

    def install(self, host: StackHost) -> None:
        if os.environ.get(ENVIRONMENT_VARIABLE) != "1":
            return
        faults = Faults()
        workers = Workers(host)
        functions = set(host.app.functions)
        host.gateway.wrap_post(throttle_and_count(faults, workers))
        host.intercept_aws(dynamodb_outage(faults), InterceptMatch(target_prefix=DYNAMODB_TARGET_PREFIX))
        watcher = asyncio.get_running_loop().create_task(_watch_busy_workers(faults, workers))

        async def stop_watching() -> None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

        host.on_stop(stop_watching)

        async def control(request: web.Request) -> web.Response:
            if request.method == "POST":
                refused = refuse_cross_site(request)
                if refused is not None:
                    return refused
                try:
                    body = await request.json()
                    parse_request(functions, body, self.post_filters).apply(faults)
                except FaultRequestError as exc:
                    return _error(400, "bad_fault", str(exc))
                except ValueError as exc:
                    return _error(400, "bad_json", f"the body is not JSON: {exc}")
                log.warning("faults: %s", json.dumps(body))
            return web.json_response(faults.snapshot(), headers={"Cache-Control": "no-store"})

        host.add_routes(ROUTE, [web.get("", control), web.post("", control)], purpose="fault control")
        host.say(f"Faults: enabled ({ENVIRONMENT_VARIABLE}=1), control at {ROUTE}")
