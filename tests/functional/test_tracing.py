"""X-Ray through Powertools Tracer, as on Lambda with `Tracing: Active`: what each function emits.

The handlers run in their own process (xray_probe.py) with tracing on and an in-memory emitter
in place of the X-Ray daemon.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functional.handler_probe import run_probe  # tests/functional/handler_probe.py

PROBE = Path(__file__).with_name("xray_probe.py")
LAMBDA_PARENT = "53995c3f42cd8ad8"  # the Parent of the probe's _X_AMZN_TRACE_ID


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_probe(PROBE, tmp_path_factory.mktemp("xray") / "probe.json")


def _entities(traced: dict[str, Any], function: str) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = traced["invocations"][function]["entities"]
    return entities


def _handler_segment(traced: dict[str, Any], function: str) -> dict[str, Any]:
    [segment] = [e for e in _entities(traced, function) if e["name"] == "## handler"]
    return segment


def _operations(traced: dict[str, Any], function: str, service: str) -> list[str]:
    return [e["aws"]["operation"] for e in _entities(traced, function) if e["name"] == service]


@pytest.mark.parametrize("function", ["authorize", "connect", "subscribe", "notify", "disconnect"])
def test_every_function_records_its_handler_under_the_lambda_segment(
    traced: dict[str, Any], function: str
) -> None:
    segment = _handler_segment(traced, function)
    assert segment["parent_id"] == LAMBDA_PARENT
    assert segment["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert segment["annotations"]["Service"] == "tidings"
    assert "fault" not in segment and "error" not in segment


def test_dynamodb_calls_are_subsegments_of_the_invocation(traced: dict[str, Any]) -> None:
    assert _operations(traced, "connect", "dynamodb") == ["PutItem"]
    assert _operations(traced, "subscribe", "dynamodb") == [
        "GetItem",
        "UpdateItem",
        "GetItem",
        "PutItem",
        "GetItem",
    ]  # the frame rate limit (read, take), owner, subscription, latest state
    notify = _operations(traced, "notify", "dynamodb")
    assert notify[0] == "UpdateItem" and "Query" in notify  # the claim, then the subscribers
    assert "Query" in _operations(traced, "disconnect", "dynamodb")  # its subscriptions, by index
    for function in ("connect", "subscribe", "notify", "disconnect"):
        trace_ids = {e["trace_id"] for e in _entities(traced, function)}
        assert trace_ids == {"1-5759e988-bd862e3fe1be46a994272793"}


def test_notify_annotates_the_job_and_times_each_delivery_page(traced: dict[str, Any]) -> None:
    segment = _handler_segment(traced, "notify")
    assert segment["annotations"]["job_id"] == "job-1"  # X-Ray search: annotation.job_id = "job-1"
    assert segment["annotations"]["outcome"] == "new"
    fan_out = segment["metadata"]["tidings"]["fan_out"]
    assert (fan_out["recipients"], fan_out["delivered"], fan_out["pages"]) == (1, 1, 1)
    [page] = [e for e in _entities(traced, "notify") if e["name"] == "## post page"]
    assert page["metadata"]["tidings"]["recipients"] == 1
    assert page["end_time"] > page["start_time"]


def test_connection_handlers_annotate_the_connection(traced: dict[str, Any]) -> None:
    for function in ("connect", "subscribe", "disconnect"):
        assert _handler_segment(traced, function)["annotations"]["connection_id"] == "conn-1"


def test_the_authorizer_traces_its_secret_read_but_never_the_token_or_the_policy(
    traced: dict[str, Any],
) -> None:
    # the key ring: AWSCURRENT and AWSPREVIOUS (a token of the previous key is valid until the next rotation)
    assert _operations(traced, "authorize", "secretsmanager") == ["GetSecretValue", "GetSecretValue"]
    assert "metadata" not in _handler_segment(traced, "authorize")  # capture_response=False
    assert traced["invocations"]["authorize"]["result"]["principalId"] == "alice"  # it did allow
    signature = traced["token"].split(".")[2]  # enough of the token to recognise any copy of it
    assert signature not in json.dumps(traced["invocations"])
    assert signature not in traced["logs"]
