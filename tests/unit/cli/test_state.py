"""`.tidings/state.json`: location, round trip, validation and the stale-pid check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.state import (
    STATE_ENV,
    LocalStackState,
    StackNotRunning,
    pid_alive,
    read_state,
    remove_state,
    state_path,
    write_state,
)


def sample_state(pid: int | None = None, **changes: object) -> LocalStackState:
    values: dict[str, object] = {
        "websocket_url": "ws://127.0.0.1:3001",
        "callback_url": "http://127.0.0.1:3000",
        "aws_endpoint": "http://127.0.0.1:4566",
        "http_url": "http://127.0.0.1:3000",
        "progress_view_url": "http://127.0.0.1:3000/",
        "jobs_api_url": None,
        "region": "us-east-1",
        "stage": "dev",
        "token_secret_id": "tidings-token-secret",
        "pid": os.getpid() if pid is None else pid,
        **changes,
    }
    return LocalStackState(**values)  # type: ignore[arg-type]


def exited_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_path_is_beside_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_ENV, raising=False)
    (tmp_path / "app").mkdir()
    assert state_path(tmp_path / "app" / "template.yaml") == tmp_path / "app" / ".tidings" / "state.json"
    monkeypatch.chdir(tmp_path)
    assert state_path() == tmp_path.resolve() / ".tidings" / "state.json"


def test_the_environment_overrides_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "elsewhere.json"))
    assert state_path("ignored/template.yaml") == tmp_path / "elsewhere.json"


def test_write_then_read_round_trips_with_camel_case_keys(tmp_path: Path) -> None:
    path = tmp_path / ".tidings" / "state.json"
    state = sample_state()
    assert write_state(state, path) == path
    on_disk = json.loads(path.read_text())
    assert on_disk["websocketUrl"] == "ws://127.0.0.1:3001"
    assert on_disk["jobsApiUrl"] is None and on_disk["tokenSecretId"] == "tidings-token-secret"
    assert set(on_disk) == {"websocketUrl", "callbackUrl", "awsEndpoint", "httpUrl", "progressViewUrl",
                            "jobsApiUrl", "region", "stage", "tokenSecretId", "pid", "startedAt",
                            "awsAccessKeyId", "awsSecretAccessKey"}  # fmt: skip
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the run's admin key
    assert read_state(path) == state
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp file left behind


def test_a_missing_file_says_how_to_start_the_stack(tmp_path: Path) -> None:
    with pytest.raises(StackNotRunning, match=r"not running .*make dev"):
        read_state(tmp_path / "state.json")


def test_a_dead_pid_means_the_stack_is_not_running(tmp_path: Path) -> None:
    path = write_state(sample_state(pid=exited_pid()), tmp_path / "state.json")
    with pytest.raises(StackNotRunning, match=r"process \d+ has exited.*tidings dev"):
        read_state(path)
    assert read_state(path, check_pid=False).websocket_url == "ws://127.0.0.1:3001"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a valid state file"),
        ("[]", "not a JSON object"),
        (json.dumps({**sample_state().to_json(), "websocketUrl": ""}), "websocketUrl"),
        (json.dumps({**sample_state().to_json(), "pid": "12"}), "pid"),
        (json.dumps({k: v for k, v in sample_state().to_json().items() if k != "awsEndpoint"}),
         "awsEndpoint"),
    ],
)  # fmt: skip
def test_a_damaged_file_is_a_clear_error(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StackNotRunning, match=problem):
        read_state(path)


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(exited_pid())


def test_remove_only_deletes_the_owners_file(tmp_path: Path) -> None:
    path = write_state(sample_state(pid=os.getpid() + 1), tmp_path / "state.json")
    assert not remove_state(path)  # another stack's file
    assert path.exists()
    assert remove_state(path, pid=os.getpid() + 1)
    assert not path.exists()
    assert not remove_state(path)


def test_reads_the_file_tidings_dev_writes(tmp_path: Path) -> None:
    # the shape tidings/local/stack.py writes: epoch startedAt, an extra key, nulls for absent parts
    written = {**sample_state().to_json(), "startedAt": 1_764_190_000.25, "template": "/app/template.yaml",
               "progressViewUrl": None, "stage": None}  # fmt: skip
    path = tmp_path / "state.json"
    path.write_text(json.dumps(written))
    state = read_state(path)
    assert state.started_at == 1_764_190_000.25 and state.stage is None
    assert state.token_secret_id == "tidings-token-secret"


def test_a_stack_without_a_token_secret_is_a_clear_cli_error(tmp_path: Path) -> None:
    from tidings.client import CliError, local_target

    with pytest.raises(CliError, match="no token secret"):
        local_target(sample_state(token_secret_id=None))
