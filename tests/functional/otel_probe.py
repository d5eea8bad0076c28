"""Run handlers as Lambda runs them with `Tracing: opentelemetry`, under moto; keep every span they end.

    python tests/functional/otel_probe.py OUT.json   (test_tracing_otel.py runs it in its own process)

Its own process because OpenTelemetry instruments botocore for the whole process and Powertools
Tracer shares one provider between instances; neither may leak into the other tests. Spans go to
an in-memory exporter (`OTEL_TRACES_EXPORTER=none` keeps the SDK's own exporters out). Writes
`{"token": ..., "invocations": {function: {"result", "spans"}}}` to OUT.json, each span as the
SDK's JSON (stdout carries the handlers' own logs and metrics).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from functional.conftest import FUNCTION_ENV  # noqa: E402 - tests/ must be on sys.path first

os.environ.update(
    {
        **FUNCTION_ENV,
        # as the local stack sets it: OpenTelemetry tracing must not depend on it
        "POWERTOOLS_TRACE_DISABLED": "true",
        "TRACING": "opentelemetry",
        "OTEL_TRACES_EXPORTER": "none",
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "probe",
        "LAMBDA_TASK_ROOT": str(TESTS.parent / "src"),
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
SIGNING_KEY = "otel-probe-signing-key-0123456789abcdef"


def main(out: str) -> None:
    from handler_probe import handlers_under_moto
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with handlers_under_moto(SIGNING_KEY) as run:
        from tidings_core import otel

        memory = InMemorySpanExporter()
        otel.provider().tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
        handlers = run.load_handlers()
        invocations: dict[str, Any] = {}
        for name, event in run.calls.items():
            memory.clear()  # job-1's creation and the imports are not the handlers' spans
            result = handlers[name].handler(event, run.context())
            spans = [json.loads(span.to_json()) for span in memory.get_finished_spans()]
            invocations[name] = {"result": result, "spans": spans}
    loaded = sorted(name for name in sys.modules if name.split(".")[0] == "aws_xray_sdk")
    Path(out).write_text(
        json.dumps({"token": run.token, "invocations": invocations, "xray_sdk_modules": loaded}, default=str)
    )


if __name__ == "__main__":
    main(sys.argv[1])
