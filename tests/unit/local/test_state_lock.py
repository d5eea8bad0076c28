"""One live stack per state file (issue 14, item 7): a live owner is named, a dead one's is taken over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tidings.state import LocalStackState, StackAlreadyRunning, StateLock, write_state


def state(pid: int) -> LocalStackState:
    return LocalStackState(
        websocket_url="ws://127.0.0.1:3001/prod",
        callback_url="http://127.0.0.1:3000/prod",
        aws_endpoint="http://127.0.0.1:4566",
        http_url="http://127.0.0.1:3000",
        progress_view_url=None,
        jobs_api_url=None,
        region="us-east-1",
        stage="prod",
        token_secret_id=None,
        pid=pid,
    )


def test_a_live_owner_is_refused_with_its_pid_and_urls(tmp_path: Path) -> None:
    path = tmp_path / ".tidings" / "state.json"
    first = StateLock(path)
    write_state(state(4242), path)
    try:
        with pytest.raises(StackAlreadyRunning) as refused:
            StateLock(path)
        message = str(refused.value)
        assert "PID 4242" in message and "ws://127.0.0.1:3001/prod" in message and "\n" not in message
    finally:
        first.release()
    StateLock(path).release()  # released: the next one may start


def test_a_stale_state_file_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    write_state(state(int(dead.stdout)), path)
    lock = StateLock(path)  # nobody holds the lock: the process that wrote the file is gone
    lock.release()


def test_a_stack_still_starting_is_named_by_its_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first = StateLock(path)
    try:
        with pytest.raises(StackAlreadyRunning, match=r"PID \d+\) is starting"):
            StateLock(path)
    finally:
        first.release()
