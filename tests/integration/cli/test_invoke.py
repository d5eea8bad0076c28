"""`tidings invoke FUNCTION`: one function run locally, like `sam local invoke`, alone or against a
running `tidings dev` in the same directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_harness import ROOT, RunningStack, start_stack, stop_stack  # tests/stack_harness.py

TEMPLATE = Path(__file__).parent / "notes_app" / "template.yaml"


def _invoke(*args: str, event: object = None, state: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "AWS_PROFILE")}
    if state is not None:
        env["TIDINGS_STATE"] = str(state)
    else:
        env["TIDINGS_STATE"] = str(Path("/nonexistent/tidings-state.json"))  # no stack running
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", "invoke", *args, "--template", str(TEMPLATE)],
        input=None if event is None else json.dumps(event),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_invoke_alone_runs_the_function_with_its_environment_and_env_vars(tmp_path: Path) -> None:
    env_vars = tmp_path / "env.json"
    env_vars.write_text(json.dumps({"NotesFunction": {"GREETING": "bonjour", "NOT_DECLARED": "x"}}))
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"id": "a", "note": "first"}))
    done = _invoke("NotesFunction", "--event", str(event), "--env-vars", str(env_vars))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "bonjour", "before": None}
    assert "note a handled" in done.stderr  # the handler's output, as sam local invoke shows it
    assert "embedded services started for this call" in done.stderr


def test_a_raising_handler_exits_1_with_lambdas_error_object() -> None:
    done = _invoke("NotesFunction", "--event", "-", event={"fail": True})
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "asked to fail")
    assert any("asked to fail" in line for line in error["stackTrace"])


@pytest.mark.parametrize(
    ("args", "event", "message"),
    [
        (["Missing"], None, "no function 'Missing'"),
        (["NotesFunction", "--event", "-"], "[1]", "must be a JSON object"),
        (["NotesFunction", "--event", "/nonexistent/event.json"], None, "cannot read the event"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], event: str | None, message: str) -> None:
    done = _invoke(*args, event=json.loads(event) if event else None)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def notes_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(TEMPLATE, tmp_path_factory.mktemp("notes"))
    yield stack
    stop_stack(stack)


def test_invoke_uses_the_running_stacks_embedded_services(notes_stack: RunningStack) -> None:
    first = _invoke(
        "NotesFunction", "--event", "-", event={"id": "shared", "note": "kept"}, state=notes_stack.state_file
    )
    assert first.returncode == 0, first.stderr
    assert "against the running local stack" in first.stderr
    # the item is in the running stack's table, and a second invoke reads it back
    dynamodb = notes_stack.boto3_client("dynamodb")  # with the stack's developer keys
    tables = dynamodb.list_tables()["TableNames"]
    (table,) = [name for name in tables if "NotesTable" in name]
    assert dynamodb.get_item(TableName=table, Key={"id": {"S": "shared"}})["Item"]["note"]["S"] == "kept"
    second = _invoke("NotesFunction", "--event", "-", event={"id": "shared"}, state=notes_stack.state_file)
    assert json.loads(second.stdout) == {"greeting": "hello", "before": "kept"}
