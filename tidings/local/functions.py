"""Run the app's Python handlers the way Lambda does: isolated, warm, concurrent, time-limited.

Each function gets a pool of worker processes (`worker.py`). One invocation runs at a time per
worker; when every worker of a function is busy a new one starts (up to a per-function limit,
then callers wait for a free one), so a slow invocation never blocks others. A worker that
times out is killed and one that crashes is dropped; the next invocation gets a fresh (cold)
one. When a function's code or layer directory changes, its workers are retired so the next
invocation imports the new code.

`prewarm()` initializes one worker per function ahead of any invocation, as Lambda does for
on-demand functions: "proactive initialization" (AWS Lambda Developer Guide, "Understanding the
Lambda execution environment lifecycle", section "Cold starts and latency",
https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html: for functions using
unreserved (on-demand) concurrency Lambda may initialize execution environments before any
invocation arrives, and an invocation arriving while one is being initialized can use it). The
worker imports the handler on an init frame (worker.py) and waits in the pool's idle list, so the
first invocation is warm (`cold` False, as such an environment reports no Init Duration). An
invocation that arrives while its function is being prewarmed waits for that worker rather than
start a second one; if the init fails, the worker is discarded and the invocation starts its own,
which reports the error as it always did.

Workers run WORKER_NICENESS nicer than the stack (`_lower_priority`), and so does whatever they
start (an ffmpeg): on AWS the gateway, the bus and DynamoDB never share a CPU with function
code, so a function that keeps every core busy must not slow the requests the stack's own
processes serve for the other functions (measured in docs/benchmarks.md, "one watcher").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidings.local import worker as worker_module
from tidings.local.invoke_permissions import decide
from tidings.local.model import Caller, Function, Invocation, LocalApp
from tidings.local.node_runtimes import NodeRuntime, NodeSetup, sdk_environment
from tidings.local.runtimes import FunctionRuntime, RuntimeSetup, machine_architecture, runtime_family
from tidings.local.worker import FRAME_HEADER, SYS_PATH_VARIABLE, encode_frame

log = logging.getLogger(__name__)
# The bootstrap is started by file path on the function's own interpreter, isolated (-I: no user
# site, no PYTHON* variables, no script folder on sys.path; -S: no site-packages at all), so the
# function sees only its code, its layers and its package folder — never this virtualenv.
WORKER_BOOTSTRAP = Path(worker_module.__file__).resolve()
# Node.js functions: the same protocol, spoken by a bootstrap shipped beside worker.py
NODE_WORKER_BOOTSTRAP = WORKER_BOOTSTRAP.with_name("node_worker.mjs")
# -I ignores PYTHONUNBUFFERED and PYTHONDONTWRITEBYTECODE: the flags say it instead
_INTERPRETER_FLAGS = ("-I", "-S", "-u", "-B")
# Function workers (and what they start: ffmpeg, ...) run this much nicer than the stack: on AWS the
# gateway, the bus and DynamoDB never share a CPU with function code, and here a function that
# keeps every core busy would otherwise slow each request the stack's own processes serve for it.
WORKER_NICENESS = 5
# a prewarm's init gets Lambda's Init phase limit; past it the worker is discarded (the first
# invocation then starts cold, as it would have without prewarming)
PREWARM_INIT_TIMEOUT_S = 10.0

InvocationListener = Callable[[Invocation, str, str, dict[str, Any]], Awaitable[None] | None]

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}
# Variables a developer's shell may hold that must not reach a local function.
_PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")


def _lower_priority(pid: int) -> None:
    """Run worker `pid` (and the processes it starts, which inherit it) WORKER_NICENESS nicer
    than this process. Where the system refuses (no such call, or a limit), it runs as is."""
    with contextlib.suppress(OSError, AttributeError):
        own = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, pid, min(own + WORKER_NICENESS, 19))


def prewarm_targets(app: LocalApp) -> list[str]:
    """The functions a request or an event invokes directly, which the stack prewarms: WebSocket
    routes and their authorizers, HTTP API routes and authorizers, EventBridge rules' Lambda
    targets; in that order, each once. Not those only a state machine or a `lambda:Invoke` calls
    (they run later in a flow, and would cost a process each for little)."""
    found: list[str] = []
    for api in app.websocket_apis:
        for route in api.routes.values():
            if route.authorizer is not None:
                found.append(route.authorizer.function_id)
            if route.function_id is not None:
                found.append(route.function_id)
    for http_route in app.http_routes:
        if http_route.authorizer_function_id is not None:
            found.append(http_route.authorizer_function_id)
        found.append(http_route.function_id)
    for rule in app.rules:
        for target in rule.targets:
            if target.kind == "lambda":
                found.append(target.resource_id or app.function_id_by_arn(target.arn) or "")
    return [function_id for function_id in dict.fromkeys(found) if function_id in app.functions]


def function_environment(
    function: Function,
    region: str,
    aws_endpoint: str,
    extra: Mapping[str, str] | None = None,
    credentials: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment Lambda would give this function, pointed at the embedded AWS services."""
    environment = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    environment.update(
        {
            # Tracing has no daemon locally; Powertools and the X-Ray SDK skip it when told so.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_XRAY_SDK_ENABLED": "false",
            # nor an X-Ray OTLP endpoint: an OpenTelemetry SDK prints its spans into the invocation log
            "OTEL_TRACES_EXPORTER": "console",
        }
    )
    environment.update(extra or {})
    environment.update(function.environment)
    # Reserved variables last: Lambda does not let the template override them.
    environment.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": aws_endpoint,
            # a developer's ~/.aws must not redirect or authenticate a local function
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "_HANDLER": function.handler,
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            "LAMBDA_RUNTIME_DIR": str(Path(sys.executable).parent),
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",
            # a cached .pyc of an edit made within the same second (same size) would hide the edit
            "PYTHONDONTWRITEBYTECODE": "1",
            # its role's session (aws_guard.py issues one per function and run)
            **(credentials if credentials is not None else FAKE_CREDENTIALS),
        }
    )
    return environment


def importable_dir(layer_dir: Path, shims: Path) -> Path:
    """The sys.path entry for a layer folder.

    A folder that is itself a package (has `__init__.py`, e.g. a makefile-built layer whose build
    copies it under python/<name>/) is importable by its name through a one-link shim folder, so
    its siblings do not leak onto sys.path.
    """
    if not (layer_dir / "__init__.py").exists():
        return layer_dir
    shim = shims / hashlib.sha256(str(layer_dir).encode()).hexdigest()[:12]
    link = shim / layer_dir.name
    if not link.exists():
        shim.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            link.symlink_to(layer_dir, target_is_directory=True)
    return shim


class WorkerExited(Exception):
    """The worker process ended during an invocation."""


class _WorkerProcess:
    def __init__(
        self,
        process: asyncio.subprocess.Process,
        generation: int,
        tmpdir: Path,
        on_stopped: Callable[[_WorkerProcess], None],
    ) -> None:
        self.process = process
        self.generation = generation
        self.tmpdir = tmpdir  # its own TMPDIR (Lambda's /tmp), gone with the worker
        self._on_stopped = on_stopped

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(encode_frame(request))
        try:
            await self.process.stdin.drain()
            header = await self.process.stdout.readexactly(FRAME_HEADER.size)
            (length,) = FRAME_HEADER.unpack(header)
            body = await self.process.stdout.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            raise WorkerExited from error
        response: dict[str, Any] = json.loads(body)
        return response

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def stop(self) -> None:
        if self.process.returncode is None:
            # not reaped yet, so the id is still its own group's: its children (ffmpeg) go with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self._on_stopped(self)


@dataclass
class _Pool:
    function: Function
    idle: list[_WorkerProcess] = field(default_factory=list)
    busy: int = 0
    generation: int = 0
    freed: asyncio.Condition = field(default_factory=asyncio.Condition)
    running: set[_WorkerProcess] = field(default_factory=set)  # inside an invocation now
    warming: int = 0  # workers being proactively initialized (counted in `busy` too)


class FunctionRunner:
    """`FunctionInvoker` for a `LocalApp`: every invocation runs in a worker process."""

    def __init__(
        self,
        app: LocalApp,
        aws_endpoint: str,
        *,
        max_workers_per_function: int = 10,
        on_invocation: InvocationListener | None = None,
        extra_environment: Mapping[str, str] | None = None,
        watch: bool = True,
        credentials: Mapping[str, Mapping[str, str]] | None = None,
        runtimes: RuntimeSetup | None = None,
        invoke_permissions: bool = True,
        node_runtimes: NodeSetup | None = None,
    ) -> None:
        self.app = app
        self.aws_endpoint = aws_endpoint
        self.max_workers = max_workers_per_function
        self.on_invocation = on_invocation
        self.extra_environment = dict(extra_environment or {})
        self.watch = watch
        # function logical id -> AWS_ACCESS_KEY_ID / SECRET / SESSION_TOKEN of its role's session
        self.credentials = dict(credentials or {})
        self.runtimes = runtimes or RuntimeSetup()
        # Node.js functions: the same cache and progress lines as the Python runtimes'
        self.node_runtimes = node_runtimes or NodeSetup(
            cache_dir=self.runtimes.cache_dir,
            progress=self.runtimes.progress,
            architecture=machine_architecture(),
        )
        # False: a service's call runs without checking the function's resource-based policy
        self.invoke_permissions = invoke_permissions
        self._pools: dict[str, _Pool] = {}
        # one folder per run for the layer shims and each worker's TMPDIR, removed by stop()
        self.run_dir = Path(tempfile.mkdtemp(prefix="tidings-run-"))
        self._shims = self.run_dir / "layers"
        self._workers: set[_WorkerProcess] = set()
        self._stopped = False
        self._watcher: asyncio.Task[None] | None = None
        self._stop_watching = asyncio.Event()
        self._listeners: set[asyncio.Task[None]] = set()
        self._prewarms: set[asyncio.Task[dict[str, str]]] = set()
        self.reloads = 0

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Installs what the functions' runtimes lack (first start only), then watches the code."""
        await self.runtimes.prepare(self.app.functions.values())
        await self.node_runtimes.prepare(
            function
            for function in self.app.functions.values()
            if runtime_family(function.runtime) == "nodejs"
        )
        if self.watch and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_code(), name="tidings-code-watcher")

    async def stop(self) -> None:
        """Stop every worker, busy ones too, and delete the run's temporary files; later
        invocations fail at once instead of starting workers."""
        self._stopped = True
        self._stop_watching.set()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for pool in self._pools.values():
            pool.idle = []
        while self._workers:
            await next(iter(self._workers)).stop()  # each removes itself
        if self._prewarms:
            # a prewarm in flight sees `_stopped` (or its killed worker) and stops what it started
            await asyncio.gather(*self._prewarms, return_exceptions=True)
        while self._workers:
            await next(iter(self._workers)).stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    async def __aenter__(self) -> FunctionRunner:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def function_id_for(self, name_or_arn: str) -> str | None:
        """The logical id of a function given its logical id, name, ARN or qualified ARN."""
        if name_or_arn in self.app.functions:
            return name_or_arn
        for logical_id, function in self.app.functions.items():
            if name_or_arn in (function.name, function.arn) or name_or_arn.startswith(function.arn + ":"):
                return logical_id
        return None

    def busy_worker_pids(self, function_id: str) -> list[int]:
        """Process ids of the function's live workers that are inside an invocation now (what a
        fault injector kills to crash an invocation midway)."""
        pool = self._pools.get(function_id)
        if pool is None:
            return []
        return [worker.process.pid for worker in pool.running if worker.alive]

    # ---------------------------------------------------------------- prewarming
    def prewarm(self, function_ids: Iterable[str], *, at_once: int = 2) -> asyncio.Task[dict[str, str]]:
        """Initialize one worker for each of these functions that has none yet, in the background,
        `at_once` at a time (Lambda's proactive initialization, see the module docstring).

        Never blocks or fails an invocation. The task's result: function id → "warm" (a worker
        waits, initialized), "failed" (its init failed or timed out: discarded), "skipped" (it
        has workers already, or may have none), "stopped" (the runner stopped or the function's
        code reloaded meanwhile) or "unknown"."""
        task = asyncio.create_task(
            self._prewarm(list(dict.fromkeys(function_ids)), at_once), name="tidings-prewarm"
        )
        self._prewarms.add(task)
        task.add_done_callback(self._prewarms.discard)
        return task

    async def _prewarm(self, function_ids: list[str], at_once: int) -> dict[str, str]:
        gate = asyncio.Semaphore(max(1, at_once))
        outcomes: dict[str, str] = {}

        async def one(function_id: str) -> None:
            async with gate:
                try:
                    outcomes[function_id] = await self._prewarm_one(function_id)
                except Exception:  # a prewarm never takes the stack down
                    log.exception("prewarming %s failed", function_id)
                    outcomes[function_id] = "failed"

        await asyncio.gather(*(one(function_id) for function_id in function_ids))
        return outcomes

    async def _prewarm_one(self, function_id: str) -> str:
        function = self.app.functions.get(function_id)
        if function is None:
            return "unknown"
        if self._stopped:
            return "stopped"
        pool = self._pool(function)
        async with pool.freed:
            if pool.busy or pool.idle or self.max_workers < 1 or function.reserved_concurrency == 0:
                return "skipped"
            pool.busy += 1
            pool.warming += 1
            generation = pool.generation
        worker: _WorkerProcess | None = None
        outcome = "failed"
        try:
            worker = await self._spawn(function, generation)
            if self._stopped:
                outcome = "stopped"
            else:
                response = await asyncio.wait_for(worker.call({"init": True}), timeout=PREWARM_INIT_TIMEOUT_S)
                if response.get("ok") and not response.get("retire"):
                    outcome = "warm"
                    log.debug("prewarmed %s in %.0f ms", function_id, float(response.get("init_ms", 0.0)))
        except (TimeoutError, WorkerExited, OSError) as error:
            log.debug("prewarming %s: %r", function_id, error)
        finally:
            async with pool.freed:
                pool.busy -= 1
                pool.warming -= 1
                if worker is not None:
                    if (
                        outcome == "warm"
                        and not self._stopped
                        and worker.alive
                        and worker.generation == pool.generation
                    ):
                        pool.idle.append(worker)
                    else:
                        outcome = "stopped" if outcome == "warm" else outcome
                        await worker.stop()
                # invocations waiting for this worker: one takes it, the others start their own
                pool.freed.notify_all()
        return outcome

    # ---------------------------------------------------------------- invoking
    async def invoke(
        self,
        function_id: str,
        event: dict[str, Any],
        *,
        source: str = "",
        request_id: str | None = None,
        caller: Caller | None = None,
    ) -> Invocation:
        request_id = request_id or str(uuid.uuid4())
        function = self.app.functions.get(function_id)
        refusal = self.refusal(function, caller) if function is not None and caller is not None else None
        if refusal is not None:
            # as on AWS, the service's Invoke is refused before the function runs
            invocation = Invocation(
                request_id=request_id,
                function_id=function_id,
                ok=False,
                error_type="AccessDeniedException",
                error_message=refusal,
                refused=True,
            )
        elif function is None:
            invocation = Invocation(
                request_id=request_id,
                function_id=function_id,
                ok=False,
                error_type="ResourceNotFoundException",
                error_message=f"Function not found: {function_id}",
            )
        else:
            invocation = await self._invoke(function, request_id, event)
        self._announce(invocation, function_id, source, event)
        return invocation

    def refusal(self, function: Function, caller: Caller) -> str | None:
        """Why `caller` may not invoke `function` (with the permission that would allow it), or None."""
        if not self.invoke_permissions:
            return None
        refused = decide(self.app.permissions, function, caller)
        return None if refused is None else str(refused)

    def _announce(self, invocation: Invocation, function_id: str, source: str, event: dict[str, Any]) -> None:
        if self.on_invocation is None:
            return
        try:
            outcome = self.on_invocation(invocation, function_id, source, event)
        except Exception:
            log.exception("invocation listener failed")
            return
        if outcome is not None:
            task = asyncio.ensure_future(outcome)
            self._listeners.add(task)  # type: ignore[arg-type]
            task.add_done_callback(self._listeners.discard)  # type: ignore[arg-type]

    def _pool(self, function: Function) -> _Pool:
        pool = self._pools.get(function.logical_id)
        if pool is None:
            pool = self._pools[function.logical_id] = _Pool(function)
        return pool

    async def _acquire(self, pool: _Pool) -> _WorkerProcess | None:
        """An idle warm worker, or None when the caller may start a new one."""
        async with pool.freed:
            while True:
                while pool.idle:
                    worker = pool.idle.pop()
                    if worker.alive and worker.generation == pool.generation:
                        pool.busy += 1
                        return worker
                    await worker.stop()
                if pool.warming:  # a proactively initialized worker is on its way: take that one
                    await pool.freed.wait()
                    continue
                if pool.busy < self.max_workers:
                    pool.busy += 1
                    return None
                await pool.freed.wait()

    async def _release(self, pool: _Pool, worker: _WorkerProcess | None) -> None:
        async with pool.freed:
            pool.busy -= 1
            if worker is not None:
                if worker.alive and worker.generation == pool.generation:
                    pool.idle.append(worker)
                else:
                    await worker.stop()
            pool.freed.notify()

    async def _spawn(self, function: Function, generation: int) -> _WorkerProcess:
        environment = function_environment(
            function,
            self.app.region,
            self.aws_endpoint,
            self.extra_environment,
            self.credentials.get(function.logical_id),
        )
        (self.run_dir / "tmp").mkdir(exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=f"{function.logical_id}-", dir=self.run_dir / "tmp"))
        environment["TMPDIR"] = str(tmpdir)
        if runtime_family(function.runtime) == "nodejs":
            command = self._node_command(
                function, await self.node_runtimes.for_function(function), environment
            )
        else:
            command = self._python_command(function, await self.runtimes.for_function(function), environment)
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=environment,
            cwd=str(function.code_dir),
            # its own process group: a Ctrl-C in the terminal is the stack's to handle, and stop()
            # ends the worker with its children
            start_new_session=True,
        )
        _lower_priority(process.pid)
        worker = _WorkerProcess(process, generation, tmpdir, self._workers.discard)
        self._workers.add(worker)
        return worker

    def _python_command(
        self, function: Function, runtime: FunctionRuntime, environment: dict[str, str]
    ) -> list[str]:
        """The worker command of a Python function; its import path goes in `environment`."""
        sys_path = [
            str(function.code_dir),
            *(str(importable_dir(path, self._shims)) for path in function.layer_dirs),
            str(runtime.packages),
        ]
        environment[SYS_PATH_VARIABLE] = os.pathsep.join(sys_path)
        environment["LAMBDA_RUNTIME_DIR"] = str(runtime.packages)
        return [str(runtime.interpreter.path), *_INTERPRETER_FLAGS, str(WORKER_BOOTSTRAP)]

    @staticmethod
    def _node_command(function: Function, runtime: NodeRuntime, environment: dict[str, str]) -> list[str]:
        """The worker command of a Node.js function; its module folders go in NODE_PATH, as on
        Lambda (node_worker.mjs gives them to ES-module imports too)."""
        environment["NODE_PATH"] = os.pathsep.join(
            [*(str(path) for path in runtime.module_paths), str(function.code_dir)]
        )
        environment["LAMBDA_RUNTIME_DIR"] = str(NODE_WORKER_BOOTSTRAP.parent)
        for name, value in sdk_environment(function.runtime).items():
            environment.setdefault(name, value)
        for name in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"):
            environment.pop(name, None)
        return [str(runtime.node.path), str(NODE_WORKER_BOOTSTRAP)]

    async def _invoke(self, function: Function, request_id: str, event: dict[str, Any]) -> Invocation:
        if self._stopped:
            started = time.perf_counter()
            return self._failure(function, request_id, started, "Runtime.Stopped", "the stack is stopping")
        pool = self._pool(function)
        worker = await self._acquire(pool)
        started = time.perf_counter()
        try:
            if worker is None:
                worker = await self._spawn(function, pool.generation)
            request = {
                "request_id": request_id,
                "event": event,
                "function_arn": function.arn,
                "deadline_ms": int((time.time() + function.timeout_s) * 1000),
            }
            pool.running.add(worker)
            try:
                response = await asyncio.wait_for(worker.call(request), timeout=function.timeout_s)
            except TimeoutError:
                await worker.stop()
                return self._failure(
                    function,
                    request_id,
                    started,
                    "Sandbox.Timedout",
                    f"Task timed out after {function.timeout_s:.2f} seconds",
                )
            except WorkerExited:
                # the pipe closes a moment before the process is reaped: wait for its own exit status
                # rather than kill it and report the kill
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.process.wait(), timeout=2.0)
                await worker.stop()
                code = worker.process.returncode
                reason = f"signal: {-code}" if code is not None and code < 0 else f"exit status {code}"
                return self._failure(
                    function, request_id, started, "Runtime.ExitError", f"Runtime exited with error: {reason}"
                )
            if response.get("retire"):  # the worker says its environment is not reusable
                await worker.stop()
            return Invocation(
                request_id=request_id,
                function_id=function.logical_id,
                ok=bool(response["ok"]),
                result=response.get("result"),
                error_type=response.get("errorType"),
                error_message=response.get("errorMessage"),
                traceback="".join(response["stackTrace"]) if response.get("stackTrace") else None,
                logs=str(response.get("logs", "")),
                duration_ms=float(response.get("duration_ms", 0.0)),
                cold=bool(response.get("cold", False)),
            )
        except Exception as error:  # failing to start a worker fails this invocation, not the runner
            log.exception("invocation of %s failed", function.logical_id)
            return self._failure(function, request_id, started, "Runtime.Unknown", str(error))
        finally:
            if worker is not None:
                pool.running.discard(worker)
            await self._release(pool, worker)

    @staticmethod
    def _failure(
        function: Function, request_id: str, started: float, error_type: str, message: str
    ) -> Invocation:
        return Invocation(
            request_id=request_id,
            function_id=function.logical_id,
            ok=False,
            error_type=error_type,
            error_message=message,
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    # ---------------------------------------------------------------- reloading
    def watched_dirs(self) -> dict[Path, set[str]]:
        """Each code or layer folder, with the functions that load it."""
        watched: dict[Path, set[str]] = {}
        for function_id, function in self.app.functions.items():
            for path in (function.code_dir, *function.layer_dirs):
                watched.setdefault(path, set()).add(function_id)
        return watched

    async def retire(self, function_ids: set[str]) -> None:
        """Stop using the current workers of these functions; the next invocation is cold."""
        for function_id in function_ids:
            function = self.app.functions.get(function_id)
            if function is None:
                continue
            pool = self._pool(function)
            async with pool.freed:
                pool.generation += 1
                workers, pool.idle = pool.idle, []
            for worker in workers:
                await worker.stop()
        self.reloads += 1

    async def _watch_code(self) -> None:
        from watchfiles import awatch

        watched = self.watched_dirs()
        paths = [path for path in watched if path.exists()]
        if not paths:
            return
        try:
            async for changes in awatch(*paths, stop_event=self._stop_watching):
                affected: set[str] = set()
                for _, changed in changes:
                    changed_path = Path(changed)
                    for path, function_ids in watched.items():
                        if changed_path.is_relative_to(path):
                            affected |= function_ids
                if affected:
                    log.info("code changed; reloading %s", ", ".join(sorted(affected)))
                    await self.retire(affected)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("code watcher stopped; edits will need a restart")
