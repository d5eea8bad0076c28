"""The local stack on a developer's laptop (issue 14, items 2-9): only the hosts it serves, faults
same-origin and atomic, no 500 on odd paths, --host 0.0.0.0 keeping secrets on loopback, clean
start-up errors, one stack per state file, and a quiet Ctrl-C that leaves no temporary files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stack_harness import ROOT, RunningStack, create_job, local_token, start_stack, stop_stack

from tidings.local.faults import ENVIRONMENT_VARIABLE


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENVIRONMENT_VARIABLE, "1")
        running = start_stack(ROOT / "template.yaml", tmp_path_factory.mktemp("laptop"))
    try:
        yield running
    finally:
        assert stop_stack(running) == 0


def call(url: str, *, method: str = "GET", body: bytes | None = None, **headers: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        status, raw = refused.code, refused.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1].split("/")[0]


def test_token_minting_refuses_a_foreign_host(stack: RunningStack) -> None:
    port = port_of(stack.http_url)
    status, body = call(f"{stack.http_url}/_tidings/token?user=anyone", Host=f"evil.test:{port}")
    assert status == 403 and "token" not in body
    status, body = call(f"{stack.http_url}/_tidings/token?user=anyone", Host=f"localhost:{port}")
    assert status == 200 and body["token"]


def test_console_replay_refuses_a_foreign_host_and_origin(stack: RunningStack) -> None:
    create_job(stack, local_token(stack, "rebind"))  # at least one invocation to replay
    api = f"{stack.http_url}/_tidings/console/api"
    _, listed = call(f"{api}/invocations")
    seq = listed["invocations"][0]["seq"]
    port = port_of(stack.http_url)
    foreign = {"Host": f"evil.test:{port}", "Origin": f"http://evil.test:{port}"}
    replay = f"{api}/invocations/{seq}/replay"
    status, _ = call(replay, method="POST", body=b"{}", **foreign, **{"Content-Type": "application/json"})
    assert status == 403
    own = {"Origin": stack.http_url, "Content-Type": "application/json"}
    status, _ = call(replay, method="POST", body=b"{}", **own)
    assert status == 201


def test_the_websocket_handshake_refuses_a_foreign_host_before_any_authorizer(stack: RunningStack) -> None:
    port = int(port_of(stack.websocket_url))
    stage = stack.websocket_url.rsplit("/", 1)[1]
    authorized_before = stack.log_text().count("$connect authorizer")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            (
                f"GET /{stage} HTTP/1.1\r\nHost: evil.test:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert b" 403 " in status_line
    time.sleep(0.5)  # an authorizer run would be logged by now
    assert stack.log_text().count("$connect authorizer") == authorized_before


def test_the_aws_endpoint_refuses_a_foreign_host(stack: RunningStack) -> None:
    port = port_of(stack.aws_endpoint)
    status, _ = call(f"{stack.aws_endpoint}/moto-api/data.json", Host=f"evil.test:{port}")
    assert status == 403


def test_faults_accept_only_same_origin_json(stack: RunningStack) -> None:
    faults = f"{stack.http_url}/_tidings/faults"
    body = json.dumps({"dynamodbOutage": {"seconds": 60}}).encode()
    status, _ = call(faults, method="POST", body=body, **{"Content-Type": "text/plain"})
    assert status == 415
    status, _ = call(
        faults, method="POST", body=body, Origin="http://evil.test:1", **{"Content-Type": "application/json"}
    )
    assert status == 403
    _, state = call(faults)
    assert state["dynamodbDownForSeconds"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"throttle": [1]},
        {"dynamodbOutage": 5},
        {"throttle": {"fraction": 0.5}, "killWhenBusy": {"function": "NoSuchFunction"}},
    ],
)
def test_bad_fault_requests_are_400_and_change_nothing(stack: RunningStack, body: dict[str, Any]) -> None:
    faults = f"{stack.http_url}/_tidings/faults"
    status, answer = call(
        faults, method="POST", body=json.dumps(body).encode(), **{"Content-Type": "application/json"}
    )
    assert status == 400 and answer["error"]["message"]
    _, state = call(faults)
    assert state["throttleFraction"] == 0.0 and state["killWhenBusy"] is None


@pytest.mark.parametrize("path", ["/%00", "/a%00b/index.html", "/" + "x" * 5000])
def test_odd_static_paths_are_404(stack: RunningStack, path: str) -> None:
    status, _ = call(f"{stack.http_url}{path}")
    assert status == 404
    assert "Traceback" not in stack.log_text()


def run_dev(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tidings.local", "--no-demo", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout
    )


def test_a_taken_aws_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {**os.environ, "TIDINGS_STATE": str(tmp_path / "state.json")}
        done = run_dev("--ws-port", "0", "--http-port", "0", "--aws-port", str(port), env=env)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()  # the same shape as a busy WebSocket or HTTP port
    assert line.startswith("tidings dev: [Errno ")
    assert line.endswith(f"AWS endpoint: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_a_second_stack_on_the_same_state_refuses_naming_the_first(stack: RunningStack) -> None:
    env = {**os.environ, "TIDINGS_STATE": str(stack.state_file)}
    done = run_dev("--ws-port", "0", "--http-port", "0", "--aws-port", "0", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"PID {stack.process.pid}" in done.stderr and stack.websocket_url in done.stderr
    assert json.loads(stack.state_file.read_text())["pid"] == stack.process.pid  # left alone


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "not a list"),
        ("", "no Resources"),
        (
            "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: 'bad name!'\n",
            "CreateQueue",
        ),
    ],
)
def test_hostile_templates_exit_2_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(text)
    done = run_dev("--template", str(template), "--ws-port", "0", "--http-port", "0", "--aws-port", "0")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr and "Ready." not in done.stdout


def test_a_template_without_a_websocket_api_advertises_none(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n")
    running = start_stack(template, tmp_path)
    try:
        assert "WebSocket URL" not in running.log_text() and "Callback URL" not in running.log_text()
        assert "AWS endpoint" in running.urls
        state = json.loads(running.state_file.read_text())
        assert state["websocketUrl"] is None and state["callbackUrl"] is None
    finally:
        assert stop_stack(running) == 0


def lan_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_host_0000_warns_prints_usable_urls_and_keeps_aws_on_loopback(tmp_path: Path) -> None:
    running = start_stack(ROOT / "template.yaml", tmp_path, "--host", "0.0.0.0")
    try:
        log = running.log_text()
        assert "warning: --host 0.0.0.0 exposes the WebSocket API" in log
        assert "token minting, the console and the AWS endpoint answer only on this machine" in log
        assert "0.0.0.0" not in "".join(running.urls.values())
        assert running.websocket_url.startswith("ws://127.0.0.1:")
        assert running.aws_endpoint.startswith("http://127.0.0.1:")
        address = lan_address()
        if address is not None:  # the AWS endpoint does not listen on the network at all
            with pytest.raises(OSError):
                socket.create_connection((address, int(port_of(running.aws_endpoint))), timeout=5).close()
            socket.create_connection((address, int(port_of(running.http_url))), timeout=5).close()
    finally:
        assert stop_stack(running) == 0


def test_ctrl_c_during_a_job_is_quiet_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary), "TIDINGS_STATE": str(tmp_path / "state.json")}
    env["PYTHONUNBUFFERED"] = "1"
    ports = ["--ws-port", "0", "--http-port", "0", "--aws-port", "0"]
    command = [sys.executable, "-m", "tidings.devtools", *ports]  # tidings dev, with its demo job
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any(temporary.rglob("segment-*")):
            assert process.poll() is None, "tidings dev exited early"
            time.sleep(0.2)
        work = [path.name for path in temporary.rglob("*") if path.name.startswith(("plan-", "segment-"))]
        assert work, "no transcode work folder appeared under the stack's TMPDIR"
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "NotImplementedError" not in output, output[-3000:]
    assert sorted(str(p.relative_to(temporary)) for p in temporary.rglob("*")) == []
