"""OpenTelemetry through Powertools Tracer (`Tracing: opentelemetry`): what each function's spans carry.

The handlers run in their own process (otel_probe.py) with `TRACING=opentelemetry`, Lambda's trace
header, and an in-memory span exporter in place of the OTLP exporter to X-Ray.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functional.handler_probe import run_probe  # tests/functional/handler_probe.py

PROBE = Path(__file__).with_name("otel_probe.py")
LAMBDA_PARENT = "0x53995c3f42cd8ad8"  # the Parent of the probe's _X_AMZN_TRACE_ID
TRACE_ID = "0x5759e988bd862e3fe1be46a994272793"  # its Root 1-5759e988-bd862e3fe1be46a994272793
ANNOTATIONS = "aws.xray.annotations"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_probe(PROBE, tmp_path_factory.mktemp("otel") / "probe.json")


def _spans(traced: dict[str, Any], function: str) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = traced["invocations"][function]["spans"]
    return spans


def _handler_span(traced: dict[str, Any], function: str) -> dict[str, Any]:
    [span] = [s for s in _spans(traced, function) if s["name"] == "## handler"]
    return span


def _annotations(span: dict[str, Any]) -> dict[str, Any]:
    """The attributes X-Ray indexes as annotations: those listed in `aws.xray.annotations`."""
    attributes: dict[str, Any] = span["attributes"]
    return {key: attributes[key] for key in attributes.get(ANNOTATIONS, [])}


def _aws_calls(traced: dict[str, Any], function: str) -> list[str]:
    return [s["name"] for s in _spans(traced, function) if s["kind"] == "SpanKind.CLIENT"]


@pytest.mark.parametrize("function", ["authorize", "connect", "subscribe", "notify", "disconnect"])
def test_every_function_records_its_handler_as_a_child_of_the_lambda_segment(
    traced: dict[str, Any], function: str
) -> None:
    span = _handler_span(traced, function)
    assert span["parent_id"] == LAMBDA_PARENT
    assert span["context"]["trace_id"] == TRACE_ID
    assert _annotations(span)["Service"] == "tidings"
    assert span["status"]["status_code"] != "ERROR"
    assert span["resource"]["attributes"]["service.name"] == "tidings"


def test_botocore_calls_are_spans_under_the_handler_in_the_same_trace(traced: dict[str, Any]) -> None:
    # the key ring: the current and the previous signing key
    assert _aws_calls(traced, "authorize") == ["Secrets Manager.GetSecretValue"] * 2
    assert _aws_calls(traced, "connect") == ["DynamoDB.PutItem"]
    # the frame rate limit (read, take), owner, subscription, latest state
    subscribe = ["GetItem", "UpdateItem", "GetItem", "PutItem", "GetItem"]
    assert _aws_calls(traced, "subscribe") == [f"DynamoDB.{operation}" for operation in subscribe]
    notify = _aws_calls(traced, "notify")
    assert notify[0] == "DynamoDB.UpdateItem" and "DynamoDB.Query" in notify  # the claim, then subscribers
    assert "DynamoDB.Query" in _aws_calls(traced, "disconnect")
    for function in ("authorize", "connect", "subscribe", "notify", "disconnect"):
        handler_id = _handler_span(traced, function)["context"]["span_id"]
        for span in _spans(traced, function):
            assert span["context"]["trace_id"] == TRACE_ID
            if span["kind"] == "SpanKind.CLIENT":
                assert span["parent_id"] == handler_id, span["name"]


def test_notify_keeps_the_job_id_annotation_and_times_each_delivery_page(traced: dict[str, Any]) -> None:
    span = _handler_span(traced, "notify")
    assert _annotations(span)["job_id"] == "job-1"  # X-Ray search: annotation.job_id = "job-1"
    assert _annotations(span)["outcome"] == "new"
    fan_out = json.loads(span["attributes"]["tidings.fan_out"])  # metadata: not indexed
    assert "tidings.fan_out" not in span["attributes"][ANNOTATIONS]
    assert (fan_out["recipients"], fan_out["delivered"], fan_out["pages"]) == (1, 1, 1)
    [page] = [s for s in _spans(traced, "notify") if s["name"] == "## post page"]
    assert page["attributes"]["tidings.recipients"] == 1
    assert page["parent_id"] == span["context"]["span_id"]


def test_connection_handlers_annotate_the_connection(traced: dict[str, Any]) -> None:
    for function in ("connect", "subscribe", "disconnect"):
        assert _annotations(_handler_span(traced, function))["connection_id"] == "conn-1"


def test_no_span_holds_the_token_or_the_authorizer_policy(traced: dict[str, Any]) -> None:
    handler = _handler_span(traced, "authorize")
    assert not [key for key in handler["attributes"] if key.endswith("response")]  # capture_response=False
    assert traced["invocations"]["authorize"]["result"]["principalId"] == "alice"  # it did allow
    signature = traced["token"].split(".")[2]  # enough of the token to recognise any copy of it
    every_span = [span for invocation in traced["invocations"].values() for span in invocation["spans"]]
    assert every_span and signature not in json.dumps(every_span)
    assert signature not in traced["logs"]


def test_the_xray_sdk_is_never_imported(traced: dict[str, Any]) -> None:
    assert traced["xray_sdk_modules"] == []
