"""`tidings watch` in a pseudo-terminal: a live bar per segment, and a clean terminal after Ctrl-C.

A small WebSocket server plays the stack's side of the protocol (subscribed, snapshot, progress
with four segments); the CLI runs as a real process on a pty. Only the signing secret is stubbed
(it comes from Secrets Manager, which this test does not need).
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from tidings.client import HIDE_CURSOR, SHOW_CURSOR
from tidings.state import LocalStackState, state_path, write_state

JOB = "job-pty"
CHILD = """
import sys
from tidings import cli, client
client.signing_secret = lambda target, secrets=None: "pty-test-signing-key-0123456789abcdef"
sys.exit(cli.main(sys.argv[1:]))
"""


def _progress(seq: int, stage: str = "transcoding") -> dict[str, object]:
    percent = min(100.0, seq * 2.0)
    return {
        "type": "completed" if stage == "completed" else "progress",
        "jobId": JOB,
        "userId": "u",
        "seq": seq,
        "stage": stage,
        "percent": percent,
        "etaSeconds": 30,
        "speed": 1.5,
        "segments": [
            {"index": n, "percent": min(100.0, percent * (n + 1)), "state": "encoding"} for n in range(4)
        ],
        **({"output": {"bucket": "b", "key": "out.mp4"}} if stage == "completed" else {}),
    }


class FakeStack:
    """Answers one watcher: the snapshot, then progress every 50 ms; completes after `complete_at`."""

    def __init__(self, complete_at: int | None) -> None:
        self.complete_at = complete_at
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _handle(self, socket: ServerConnection) -> None:
        request = json.loads(await socket.recv())
        assert request == {"action": "subscribe", "topic": f"job:{JOB}"}
        await socket.send(json.dumps({"type": "subscribed", "topic": f"job:{JOB}"}))
        await socket.send(json.dumps({"type": "snapshot", "topic": f"job:{JOB}", "jobs": [_progress(1)]}))
        seq = 1
        while True:
            await asyncio.sleep(0.05)
            seq += 1
            done = self.complete_at is not None and seq >= self.complete_at
            await socket.send(json.dumps(_progress(seq, "completed" if done else "transcoding")))
            if done:
                await socket.wait_closed()
                return

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0, subprotocols=[Subprotocol("tidings.v1")]) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self) -> FakeStack:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


@pytest.fixture
def template(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "template.yaml"
    path.write_text("Resources: {}\n")
    yield path


def _run_on_pty(template: Path, port: int) -> tuple[int, int]:
    write_state(
        LocalStackState(
            websocket_url=f"ws://127.0.0.1:{port}/dev",
            callback_url="http://127.0.0.1:1/dev",
            aws_endpoint="http://127.0.0.1:1",
            http_url="http://127.0.0.1:1",
            progress_view_url=None,
            jobs_api_url=None,
            region="us-east-1",
            stage="dev",
            token_secret_id="secret",
        ),
        state_path(template),
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: a 100x30 terminal, UTF-8
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        # as a shell starts a foreground job: Ctrl-C's SIGINT at its default, whatever this test
        # process inherited (a run in the background, e.g. `cmd &` or nohup, ignores SIGINT, and an
        # ignored signal stays ignored across exec)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "TERM": "xterm"}
        env.pop("TIDINGS_STATE", None)
        os.execve(  # noqa: S606 (a fixed argv: this interpreter and the test's child script)
            sys.executable,
            [sys.executable, "-c", CHILD, "watch", JOB, "--user", "u", "--template", str(template)],
            env,
        )
    return pid, fd


def _read(fd: int, until: str | None, timeout: float) -> str:
    """Read the terminal until `until` appears (None: until the child closes it)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child exited and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
            if until is not None and until in b"".join(chunks).decode("utf-8", "replace"):
                break
    return b"".join(chunks).decode("utf-8", "replace")


def _exit_code(pid: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the watcher did not exit")


def test_watch_draws_a_bar_per_segment_and_ctrl_c_leaves_the_terminal_clean(template: Path) -> None:
    with FakeStack(complete_at=None) as stack:
        pid, fd = _run_on_pty(template, stack.port)
        try:
            drawn = _read(fd, until="seg  4", timeout=30)
            drawn += _read(fd, until="\x1b[4A", timeout=10)  # at least one redraw in place
            assert HIDE_CURSOR in drawn
            assert "seg  1 [" in drawn and "seg  4 [" in drawn, drawn
            assert "ETA 0:30" in drawn and "1.5x" in drawn
            assert "█" in drawn
            os.write(fd, b"\x03")  # Ctrl-C, as typed: the terminal sends SIGINT
            rest = _read(fd, until=None, timeout=30)
        finally:
            code = _exit_code(pid)
            os.close(fd)
    output = drawn + rest
    assert code == 130
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    # the cursor is shown again after it was last hidden, and the last line is ended
    assert output.rfind(SHOW_CURSOR) > output.rfind(HIDE_CURSOR)


def test_watch_on_a_terminal_ends_with_the_result_and_the_cursor_shown(template: Path) -> None:
    with FakeStack(complete_at=8) as stack:
        pid, fd = _run_on_pty(template, stack.port)
        try:
            output = _read(fd, until=None, timeout=30)
        finally:
            code = _exit_code(pid)
            os.close(fd)
    assert code == 0, output
    assert "seg  4 [" in output
    assert "completed: s3://b/out.mp4" in output
    assert output.rfind(SHOW_CURSOR) > output.rfind(HIDE_CURSOR)
