"""`.tidings/state.json`: where a running `tidings dev` listens, for `token`, `submit` and `watch`.

`tidings dev` writes it once its servers are up and removes it on exit; the file holds URLs,
names and the run's admin key for the embedded AWS endpoint (generated per run, useless once the
stack stops), never a token; it is created readable by its owner only (0600). Its location is
`<project root>/.tidings/state.json`, the project root being the folder of the template;
`TIDINGS_STATE` overrides the path.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

STATE_ENV = "TIDINGS_STATE"
DEFAULT_TEMPLATE = "template.yaml"
STATE_DIR = ".tidings"
STATE_FILE = "state.json"
NOT_RUNNING_HINT = "start it with `make dev` or `tidings dev`"

# attribute name -> JSON key (the file is read by people and by the browser tests)
_JSON_KEYS = {
    "websocket_url": "websocketUrl",
    "callback_url": "callbackUrl",
    "aws_endpoint": "awsEndpoint",
    "http_url": "httpUrl",
    "progress_view_url": "progressViewUrl",
    "jobs_api_url": "jobsApiUrl",
    "region": "region",
    "stage": "stage",
    "token_secret_id": "tokenSecretId",
    "aws_access_key_id": "awsAccessKeyId",
    "aws_secret_access_key": "awsSecretAccessKey",
    "pid": "pid",
    "started_at": "startedAt",
}
# null when the template has no such piece (no WebSocket API or stage, no secret, no HTTP API, no
# site) or the stack runs without credentials
_NULLABLE = frozenset(
    {
        "websocket_url",
        "callback_url",
        "progress_view_url",
        "jobs_api_url",
        "stage",
        "token_secret_id",
        "aws_access_key_id",
        "aws_secret_access_key",
    }
)


class StackNotRunning(RuntimeError):
    """No state file, an unreadable one, or one whose process has exited."""


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True, slots=True)
class LocalStackState:
    websocket_url: str | None
    callback_url: str | None
    aws_endpoint: str
    http_url: str
    progress_view_url: str | None
    jobs_api_url: str | None
    region: str
    stage: str | None
    token_secret_id: str | None = None  # the app's token secret, when its dev tools know one
    # this run's admin key for the embedded AWS endpoint (the file is 0600; never a well-known key)
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    pid: int = field(default_factory=os.getpid)
    started_at: str | float = field(default_factory=_utc_now)  # ISO 8601 UTC, or epoch seconds

    def to_json(self) -> dict[str, Any]:
        return {_JSON_KEYS[name]: value for name, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Any) -> LocalStackState:
        """Validate the decoded file; ValueError names the first missing or mistyped key."""
        if not isinstance(data, dict):
            raise ValueError("the state is not a JSON object")
        values: dict[str, Any] = {}
        for item in fields(cls):
            key = _JSON_KEYS[item.name]
            value = data.get(key)
            if item.name in ("aws_access_key_id", "aws_secret_access_key") and key not in data:
                value = None
            if item.name == "pid":
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ValueError(f"{key} must be a positive integer")
            elif not _valid_text(item.name, value):
                raise ValueError(f"{key} must be a non-empty string")
            values[item.name] = value
        return cls(**values)


def _valid_text(name: str, value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    if value is None:
        return name in _NULLABLE
    # `tidings dev` may record the start as epoch seconds
    return name == "started_at" and isinstance(value, int | float) and not isinstance(value, bool)


def state_path(template: str | os.PathLike[str] | None = None) -> Path:
    """`$TIDINGS_STATE`, else `.tidings/state.json` beside the template (default ./template.yaml)."""
    override = os.environ.get(STATE_ENV)
    if override:
        return Path(override).expanduser().resolve()
    root = Path(template or DEFAULT_TEMPLATE).expanduser().resolve().parent
    return root / STATE_DIR / STATE_FILE


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def write_state(state: LocalStackState, path: Path | None = None) -> Path:
    """Write atomically (temp file + rename) so a reader never sees half a file; returns the path."""
    target = path or state_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # mkstemp's mode, said explicitly: the file holds a key
            json.dump(state.to_json(), handle, indent=2)
            handle.write("\n")
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def read_state(path: Path | None = None, *, check_pid: bool = True) -> LocalStackState:
    """The running local stack's state; StackNotRunning (with what to do) otherwise."""
    source = path or state_path()
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StackNotRunning(
            f"local stack is not running ({source} not found): {NOT_RUNNING_HINT}"
        ) from None
    except OSError as exc:
        raise StackNotRunning(f"cannot read {source}: {exc.strerror}") from None
    try:
        state = LocalStackState.from_json(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise StackNotRunning(f"{source} is not a valid state file ({exc}): {NOT_RUNNING_HINT}") from None
    if check_pid and not pid_alive(state.pid):
        raise StackNotRunning(
            f"local stack is not running (process {state.pid} has exited): {NOT_RUNNING_HINT}"
        )
    return state


def remove_state(path: Path | None = None, *, pid: int | None = None) -> bool:
    """Delete the file when it belongs to `pid` (default: this process), so a stack never removes
    the file of another stack that started after it. Returns whether it was removed."""
    target = path or state_path()
    owner = os.getpid() if pid is None else pid
    try:
        current = json.loads(target.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return False
    if not isinstance(current, dict) or current.get("pid") != owner:
        return False
    target.unlink(missing_ok=True)
    return True


class StackAlreadyRunning(RuntimeError):
    """Another live `tidings dev` owns this state file."""


class StateLock:
    """Ownership of a state file for the life of this process: an exclusive `flock` on a lock file
    beside it. The kernel drops the lock when its process dies, so a stale state file (its stack
    was killed) is taken over, and a live stack (a reused PID cannot hold our lock) is never."""

    def __init__(self, state_file: Path) -> None:
        import fcntl

        self.path = state_file.with_name(state_file.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise StackAlreadyRunning(_owner_description(state_file, self.path)) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        """Unlock (closing the descriptor drops the flock); the lock file stays, harmlessly."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _owner_description(state_file: Path, lock_file: Path) -> str:
    try:
        state = read_state(state_file, check_pid=False)
    except StackNotRunning:
        try:
            pid = lock_file.read_text(encoding="utf-8").strip() or "?"
        except OSError:
            pid = "?"
        return f"another tidings dev (PID {pid}) is starting with {state_file}; stop it first"
    urls = ", ".join(url for url in (state.websocket_url, state.http_url, state.aws_endpoint) if url)
    return f"another tidings dev (PID {state.pid}) is running with {state_file} at {urls}; stop it first"
