"""worker.py's init frame (proactive initialization) and which functions the stack prewarms."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tidings.local.functions import prewarm_targets
from tidings.local.model import (
    Authorizer,
    Function,
    HttpRoute,
    LocalApp,
    Route,
    Rule,
    RuleTarget,
    WebSocketApi,
)
from tidings.local.stack import parse_args
from tidings.local.worker import InvocationOutput, Worker


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A Worker that imports module `mod_<test>` from tmp_path; the module's source is set per test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    module = f"warm_{abs(hash(str(tmp_path)))}"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("_HANDLER", f"{module}.handler")

    def make(source: str) -> Worker:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        output = InvocationOutput()
        monkeypatch.setattr(sys, "stdout", output)  # as main() sets it for the handler
        monkeypatch.setattr(sys, "stderr", output)
        return Worker(output)

    yield make
    sys.modules.pop(module, None)
    root.handlers, root.level = handlers, level


REQUEST = {"request_id": "r-1", "event": {"n": 1}, "deadline_ms": 2**41}


def test_init_frame_imports_once_and_first_invocation_is_warm(worker: Any) -> None:
    w = worker(
        """
        import sys
        print("importing")
        IMPORTS = getattr(sys, "_warm_imports", 0) + 1
        sys._warm_imports = IMPORTS
        def handler(event, context):
            return {"imports": IMPORTS, "n": event["n"]}
        """
    )
    answer = w.handle({"init": True})
    assert answer["ok"] is True and answer["init_ms"] >= 0
    assert "logs" not in answer  # what the import printed goes with the first invocation
    response = w.handle(REQUEST)
    assert response["ok"] is True
    assert response["cold"] is False
    assert response["result"]["n"] == 1
    assert "importing" in response["logs"]
    again = w.handle({"init": True})  # a second init does not import again
    assert again["ok"] is True
    assert w.handle(REQUEST)["result"]["imports"] == response["result"]["imports"]


def test_without_init_the_first_invocation_is_cold(worker: Any) -> None:
    w = worker("def handler(event, context):\n    return 1\n")
    assert w.handle(REQUEST)["cold"] is True
    assert w.handle(REQUEST)["cold"] is False


def test_init_reports_the_import_error_an_invocation_would(worker: Any) -> None:
    source = "import not_a_module_anywhere\ndef handler(event, context):\n    return 1\n"
    answer = worker(source).handle({"init": True})
    invoked = worker(source).handle(REQUEST)
    assert answer["ok"] is False
    assert answer["errorType"] == invoked["errorType"] == "Runtime.ImportModuleError"
    assert answer["errorMessage"] == invoked["errorMessage"]
    assert "not_a_module_anywhere" in answer["errorMessage"]
    assert "Runtime.ImportModuleError" in answer["logs"]


def test_init_reports_a_missing_handler(worker: Any) -> None:
    answer = worker("def other(event, context):\n    return 1\n").handle({"init": True})
    assert (answer["ok"], answer["errorType"]) == (False, "Runtime.HandlerNotFound")


# ------------------------------------------------------------------ which functions are prewarmed
def _function(logical_id: str) -> Function:
    return Function(
        logical_id=logical_id,
        name=logical_id,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{logical_id}",
        code_dir=Path("/nowhere"),
        handler="app.handler",
        runtime="python3.12",
        timeout_s=3.0,
        memory_mb=128,
        environment={},
    )


def test_prewarm_targets_are_the_functions_routes_and_rules_invoke() -> None:
    ids = ["Connect", "Auth", "Default", "Http", "HttpAuth", "Notify", "ByArn", "MachineOnly", "Invoked"]
    app = LocalApp(template_path=Path("t.yaml"), region="us-east-1", parameters={})
    app.functions = {fid: _function(fid) for fid in ids}
    app.websocket_apis = [
        WebSocketApi(
            logical_id="Api",
            api_id="abc",
            name="api",
            stage="prod",
            route_selection_expression="$request.body.action",
            routes={
                "$connect": Route("$connect", "Connect", "CUSTOM", Authorizer("A", "Auth")),
                "$default": Route("$default", "Default"),
                "ping": Route("ping", None),  # a mock or service integration: no function
                "again": Route("again", "Default"),
            },
        )
    ]
    app.http_routes = [
        HttpRoute("Http", "GET", "/jobs", "Http", authorizer_function_id="HttpAuth"),
        HttpRoute("Http", "POST", "/jobs", "Http"),
    ]
    app.rules = [
        Rule(
            "Events",
            "events",
            "default",
            {},
            (
                RuleTarget("n", app.functions["Notify"].arn, "lambda", "Notify"),
                RuleTarget("a", app.functions["ByArn"].arn, "lambda", ""),
                RuleTarget("m", "arn:aws:states:us-east-1:123456789012:stateMachine:m", "states", "M"),
                RuleTarget("q", "arn:aws:sqs:us-east-1:123456789012:q", "sqs", "Queue"),
                RuleTarget(
                    "gone", "arn:aws:lambda:us-east-1:123456789012:function:Skipped", "lambda", "Skipped"
                ),
            ),
        )
    ]
    assert prewarm_targets(app) == ["Auth", "Connect", "Default", "HttpAuth", "Http", "Notify", "ByArn"]


def test_an_app_without_routes_or_rules_prewarms_nothing() -> None:
    app = LocalApp(template_path=Path("t.yaml"), region="us-east-1", parameters={})
    app.functions = {"Lonely": _function("Lonely")}
    assert prewarm_targets(app) == []


def test_prewarm_is_on_by_default_and_no_prewarm_turns_it_off(tmp_path: Path) -> None:
    template = str(tmp_path / "template.yaml")
    assert parse_args(["--template", template]).prewarm is True
    assert parse_args(["--template", template, "--no-prewarm"]).prewarm is False


def test_reserved_concurrent_executions_is_read_from_the_template(tmp_path: Path) -> None:
    from tidings.local.template import LocalEndpoints, load_app

    (tmp_path / "code").mkdir()
    (tmp_path / "template.yaml").write_text(
        """
Transform: AWS::Serverless-2016-10-31
Resources:
  Zero:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: code/, Handler: app.handler, Runtime: python3.12, ReservedConcurrentExecutions: 0}
  Some:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: code/, Handler: app.handler, Runtime: python3.12, ReservedConcurrentExecutions: 5}
  Unreserved:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: code/, Handler: app.handler, Runtime: python3.12}
"""
    )
    endpoints = LocalEndpoints("ws://127.0.0.1:3101", "http://127.0.0.1:3100", "http://127.0.0.1:4599")
    app = load_app(tmp_path / "template.yaml", endpoints)
    assert {fid: f.reserved_concurrency for fid, f in app.functions.items()} == {
        "Zero": 0,
        "Some": 5,
        "Unreserved": None,
    }
