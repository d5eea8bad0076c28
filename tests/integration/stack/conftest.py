"""`tidings dev` as a real subprocess on free ports, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ECHO_TEMPLATE = Path(__file__).parent / "echo_app" / "template.yaml"
URL_LINE = re.compile(r"^(WebSocket URL|Callback URL|AWS endpoint|Progress view): (\S+)$")


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

    def boto3_client(self, service: str):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )


def start_stack(template: Path, tmp_path: Path, *extra: str, timeout: float = 90.0) -> RunningStack:
    state_file = tmp_path / "state.json"
    env = {**os.environ, "TIDINGS_STATE": str(state_file), "PYTHONUNBUFFERED": "1"}
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(key, None)
    command = [
        sys.executable,
        "-m",
        "tidings.local",
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
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
        try:
            return stack.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            raise AssertionError("tidings dev did not stop within 30 s of Ctrl-C") from None
    return stack.process.returncode


@pytest.fixture(scope="module")
def tidings_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(ROOT / "template.yaml", tmp_path_factory.mktemp("tidings"))
    yield stack
    stop_stack(stack)


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(ECHO_TEMPLATE, tmp_path_factory.mktemp("echo"))
    yield stack
    stop_stack(stack)


def local_token(stack: RunningStack, user: str) -> str:
    from urllib.request import urlopen

    with urlopen(f"{stack.http_url}/_tidings/token?user={user}", timeout=30) as response:  # noqa: S310
        return str(json.loads(response.read())["token"])
