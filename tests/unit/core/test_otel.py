"""OpenTelemetry tracing pieces fed with values: backend choice, exporters, SigV4 signing, annotations."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.credentials import Credentials
from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tidings_core import config, otel, tracing
from tidings_core.config import ConfigError, Settings


class _Result(BaseHTTPResult):
    def content(self) -> bytes:
        return b"{}"

    def headers(self) -> dict[str, str]:
        return {}


class RecordingTransport(BaseHTTPTransport):
    """Stands in for urllib3: keeps each request the signer hands on."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        self.requests.append({"method": method, "url": url, "headers": headers or {}, "data": data})
        return _Result(status_code=200, reason="OK")

    def close(self) -> None:
        pass

    def is_connection_error(self, exception: Exception | None) -> bool:
        return False


def test_the_backend_defaults_to_the_xray_sdk_and_rejects_unknown_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRACING", raising=False)
    config.settings.cache_clear()
    assert tracing.mode() == "xray-sdk"
    monkeypatch.setenv("TRACING", "zipkin")
    config.settings.cache_clear()
    with pytest.raises(ConfigError, match="TRACING must be one of xray-sdk, opentelemetry"):
        tracing.mode()
    config.settings.cache_clear()


def test_exporters_follow_otel_traces_exporter() -> None:
    assert otel.exporter(Settings(otel_traces_exporter="none")) is None
    assert isinstance(otel.exporter(Settings(otel_traces_exporter="console")), ConsoleSpanExporter)
    credentialed = Settings(otel_traces_exporter="otlp", region="eu-west-1")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        env.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        assert isinstance(otel.exporter(credentialed), OTLPSpanExporter)
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER must be one of otlp, console, none"):
        otel.exporter(Settings(otel_traces_exporter="jaeger"))


def test_the_otlp_endpoint_is_xrays_in_the_functions_region_unless_overridden() -> None:
    assert (
        otel.xray_endpoint(Settings(region="eu-west-1")) == "https://xray.eu-west-1.amazonaws.com/v1/traces"
    )
    assert otel.xray_endpoint(
        Settings(region="eu-west-1", otel_traces_endpoint="http://127.0.0.1:4318/v1/traces")
    ) == ("http://127.0.0.1:4318/v1/traces")
    with pytest.raises(ConfigError, match="REGION is not set"):
        otel.xray_endpoint(Settings())


def test_spans_are_posted_as_otlp_json_signed_for_xray() -> None:
    inner = RecordingTransport()
    credentials = Credentials("AKIDEXAMPLE", "secret", "session-token")
    transport = otel.SigV4Transport(inner, credentials, "eu-west-1")
    exporter = OTLPSpanExporter(
        endpoint="https://xray.eu-west-1.amazonaws.com/v1/traces", _transport=transport
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("test").start_span("## handler").end()
    [sent] = inner.requests
    assert (sent["method"], sent["url"]) == ("POST", "https://xray.eu-west-1.amazonaws.com/v1/traces")
    headers = {name.lower(): value for name, value in sent["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/xray/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "session-token"
    body = json.loads(sent["data"])
    [span] = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert span["name"] == "## handler"


def test_the_console_exporter_prints_one_json_line_per_span() -> None:
    out = io.StringIO()
    exporter = ConsoleSpanExporter(out=out, formatter=otel._json_line)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    tracer.start_span("one").end()
    tracer.start_span("two").end()
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["one", "two"]


def test_annotations_are_attributes_listed_once_for_xray_and_metadata_is_namespaced() -> None:
    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    provider = otel.OpenTelemetryProvider(tracer_provider, _NoParent())
    with provider.in_subsegment("## handler") as segment:
        provider.put_annotation("job_id", "job-1")
        provider.put_annotation("job_id", "job-2")
        segment.put_annotation("outcome", "new")
        provider.put_metadata("fan_out", {"recipients": 3}, namespace="tidings")
        segment.put_metadata("pages", 1, namespace="tidings")
        with provider.in_subsegment("## post page"):
            pass
    page, handler = memory.get_finished_spans()
    attributes = dict(handler.attributes or {})
    assert attributes["job_id"] == "job-2"
    assert attributes[otel.ANNOTATIONS] == ("job_id", "outcome")
    assert json.loads(str(attributes["tidings.fan_out"])) == {"recipients": 3}
    assert attributes["tidings.pages"] == 1
    assert page.parent is not None and page.parent.span_id == handler.context.span_id


def test_only_botocore_can_be_instrumented() -> None:
    provider = otel.OpenTelemetryProvider(TracerProvider(), _NoParent())
    with pytest.raises(ConfigError, match="botocore only, not requests"):
        provider.patch(["botocore", "requests"])


class _NoParent:
    """A propagator that finds no incoming trace (outside Lambda)."""

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        from opentelemetry.context import Context

        return Context()
