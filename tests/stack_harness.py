"""The local stack for tests: `tidings dev` as a subprocess, or a `RunningStack` in a background thread.

Shared by tests/integration/stack and tests/browser (pytest puts tests/ on sys.path, so both
`import stack_harness`). The subprocess is how a user runs it; the in-process stack is for tests
that reach inside, e.g. to stop and restart only the WebSocket gateway while jobs keep running.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import urlopen

from tidings.devtools.dev import add_ons
from tidings.local.stack import DevOptions, LocalStack, StackUrls
from tidings.local.stack import RunningStack as InProcessRunningStack

ROOT = Path(__file__).resolve().parent.parent
URL_LINE = re.compile(r"^(WebSocket URL|Callback URL|AWS endpoint|Progress view): (\S+)$")
T = TypeVar("T")
# How long a stack may take to print Ready. A warm start takes a few seconds; the first start on
# an empty runtime cache (~/.cache/tidings, a fresh machine) installs each function's packages
# with pip first, 30-60 s per requirement set and more on a loaded 2-core machine. A cap, not a
# wait: a stack that is ready sooner is used at once, one that fails prints why at once.
STARTUP_TIMEOUT = 240.0  # under pytest-timeout's 300 s per test (pyproject.toml)


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    urls: dict[str, str]
    state_file: Path
    output: list[str] = field(default_factory=list)

    @property
    def websocket_url(self) -> str:
        return self.urls["WebSocket URL"]

    @property
    def callback_url(self) -> str:
        return self.urls["Callback URL"]

    @property
    def aws_endpoint(self) -> str:
        return self.urls["AWS endpoint"]

    @property
    def http_url(self) -> str:
        return self.callback_url.rsplit("/", 1)[0]

    def log_text(self) -> str:
        return "".join(self.output)

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                if regex.search(line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}; log:\n{self.log_text()[-4000:]}")

    def admin_credentials(self) -> dict[str, str]:
        """The run's admin key for the embedded AWS endpoint, from the stack's state file."""
        state = json.loads(self.state_file.read_text())
        return {
            "aws_access_key_id": state["awsAccessKeyId"],
            "aws_secret_access_key": state["awsSecretAccessKey"],
        }

    def boto3_client(self, service: str) -> Any:
        import boto3

        # boto3's stubs overload client() per literal service name; this helper takes any name
        make_client: Any = boto3.client
        return make_client(
            service, endpoint_url=self.aws_endpoint, region_name="us-east-1", **self.admin_credentials()
        )


def management_client(stack: RunningStack) -> Any:
    """boto3's `apigatewaymanagementapi` on the stack's callback URL, signed with the run's admin
    key (the management API refuses unsigned calls and keys of no run)."""
    import boto3
    from botocore.config import Config

    make_client: Any = boto3.client
    return make_client(
        "apigatewaymanagementapi",
        endpoint_url=stack.callback_url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
        **stack.admin_credentials(),
    )


def start_stack(
    template: Path, tmp_path: Path, *extra: str, timeout: float = STARTUP_TIMEOUT
) -> RunningStack:
    """Run `tidings dev` (`python -m tidings.devtools`) on free ports (unless `extra` says otherwise)
    until `Ready.`."""
    state_file = tmp_path / "state.json"
    env = {**os.environ, "TIDINGS_STATE": str(state_file), "PYTHONUNBUFFERED": "1"}
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(key, None)
    command = [
        sys.executable,
        "-m",
        "tidings.devtools",
        "--template",
        str(template),
        "--ws-port",
        "0",
        "--http-port",
        "0",
        "--aws-port",
        "0",
        "--no-demo",
        *extra,
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    stack = RunningStack(process=process, urls={}, state_file=state_file)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.output.append(line)
            match = URL_LINE.match(line.strip())
            if match:
                stack.urls[match.group(1)] = match.group(2)
            if line.startswith("Ready."):
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout) or process.poll() is not None:
        process.kill()
        raise AssertionError(f"tidings dev did not start:\n{stack.log_text()}")
    return stack


def stop_stack(stack: RunningStack) -> int:
    """Ctrl-C, as a user stops it; the exit code."""
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
        try:
            return stack.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            raise AssertionError("tidings dev did not stop within 30 s of Ctrl-C") from None
    return stack.process.returncode


def fetch_token(http_url: str, user: str) -> str:
    """A token for `user` from a local stack's `/_tidings/token` (what the progress view asks for)."""
    with urlopen(f"{http_url}/_tidings/token?user={user}", timeout=30) as response:  # noqa: S310
        return str(json.loads(response.read())["token"])


def local_token(stack: RunningStack, user: str) -> str:
    return fetch_token(stack.http_url, user)


class InProcessStack:
    """`tidings dev`'s stack (with Tidings' add-ons) on its own event loop in a daemon thread,
    driven from synchronous tests.

    The stack's log goes to `log` (a StringIO) instead of the terminal. `call` runs a coroutine
    on the stack's loop and waits for its result, e.g. `call(stack.gateway.stop())`.
    """

    def __init__(self, options: DevOptions) -> None:
        self.log = io.StringIO()
        self.options = options
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="local-stack", daemon=True)
        self._running: InProcessRunningStack | None = None

    @property
    def stack(self) -> InProcessRunningStack:
        assert self._running is not None, "not started"
        return self._running

    @property
    def urls(self) -> StackUrls:
        return self.stack.urls

    def start(self, timeout: float = STARTUP_TIMEOUT) -> StackUrls:
        self._thread.start()
        try:
            local = LocalStack(self.options, add_ons=add_ons(self.options), out=self.log)
            self._running = self.call(local.start(), timeout)
        except BaseException:
            self.stop()
            raise
        return self._running.urls

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            try:
                if self._running is not None:
                    self.call(self._running.stop())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(timeout=30)
        self.loop.close()

    @property
    def http_url(self) -> str:
        return self.urls.http_url

    def token(self, user: str) -> str:
        return fetch_token(self.http_url, user)


def create_job(stack: RunningStack, token: str, size: int = 1000) -> str:
    """A job through the jobs HTTP API (`POST /jobs`), as a user of the progress view creates one;
    `size` is the upload's declared size (the plan step refuses an object of another size)."""
    from urllib.request import Request

    body = json.dumps({"filename": "clip.mp4", "contentType": "video/mp4", "size": size}).encode()
    request = Request(  # noqa: S310 - the local stack on 127.0.0.1
        f"{stack.http_url}/jobs",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urlopen(request, timeout=60) as response:  # noqa: S310
        assert response.status == 201
        return str(json.loads(response.read())["jobId"])


def job_bus_name(events: Any) -> str:
    """The template's own event bus (the only one besides `default`)."""
    [bus] = [b["Name"] for b in events.list_event_buses()["EventBuses"] if b["Name"] != "default"]
    return str(bus)


def put_job_event(stack: RunningStack, detail: dict[str, Any], events: Any = None) -> None:
    """PutEvents of one `JobProgress` event on the stack's job bus, as a transcode worker does."""
    events = events or stack.boto3_client("events")
    entry = {
        "Source": "tidings.transcode",
        "DetailType": "JobProgress",
        "Detail": json.dumps(detail),
        "EventBusName": job_bus_name(events),
    }
    result = events.put_events(Entries=[entry])
    assert result["FailedEntryCount"] == 0, result
