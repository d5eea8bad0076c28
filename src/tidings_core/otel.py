"""OpenTelemetry behind Powertools Tracer: segments are OpenTelemetry spans, exported to X-Ray.

`OpenTelemetryProvider` is a Powertools `BaseProvider` (the interface Tracer takes as `provider=`),
so `capture_lambda_handler`, `put_annotation`, `put_metadata` and `in_subsegment` keep working
unchanged in every handler. What maps where (docs/observability.md):

- a subsegment is a span; the outermost one of an invocation is the child of the segment Lambda
  opened for it (`_X_AMZN_TRACE_ID`, read by the X-Ray Lambda propagator), so both share one trace;
- an annotation is a span attribute whose key is also listed in `aws.xray.annotations`: X-Ray
  indexes exactly those as annotations (every other attribute becomes metadata);
- metadata is a `namespace.key` attribute, JSON-encoded when it is not a plain value;
- botocore is instrumented by `opentelemetry-instrumentation-botocore` (one span per AWS call).

Spans are batched and flushed when the invocation's outermost span ends (Lambda freezes the
process between invocations). `OTEL_TRACES_EXPORTER` picks where they go: `otlp` (default) posts
OTLP/JSON to X-Ray's OTLP endpoint `https://xray.REGION.amazonaws.com/v1/traces`, signed with
SigV4 (IAM `xray:PutSpans`, `xray:PutSpansForIndexing`; the account needs Transaction Search);
`console` prints one JSON line per span to stdout (the local stack sets it: the lines land in each
invocation's log); `none` exports nothing (tests add their own in-memory exporter).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment
from opentelemetry import trace
from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.propagators.aws import AwsXRayLambdaPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, Status, StatusCode

from .config import ConfigError, Settings, settings

if TYPE_CHECKING:
    import numbers
    import traceback

    from botocore.credentials import Credentials
    from opentelemetry.propagators.textmap import TextMapPropagator

ANNOTATIONS = "aws.xray.annotations"  # the span attribute listing which attributes X-Ray indexes
EXPORTERS = ("otlp", "console", "none")
SIGNING_SERVICE = "xray"
SCOPE = "tidings"


def _attribute_value(value: Any) -> str | bool | int | float:
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, default=str, sort_keys=True)


class SpanSegment(BaseSegment):
    """A Powertools segment backed by one OpenTelemetry span."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def close(self, end_time: int | None = None) -> None:
        self.span.end(end_time=None if end_time is None else int(end_time * 1_000_000_000))

    def add_subsegment(self, subsegment: Any) -> None:
        """Nothing to do: a span finds its parent through the OpenTelemetry context."""

    def remove_subsegment(self, subsegment: Any) -> None:
        """Nothing to do: a span finds its parent through the OpenTelemetry context."""

    def put_annotation(self, key: str, value: str | numbers.Number | bool) -> None:
        self.span.set_attribute(key, _attribute_value(value))
        attributes = getattr(self.span, "attributes", None) or {}
        indexed = tuple(attributes.get(ANNOTATIONS, ()))
        if key not in indexed:
            self.span.set_attribute(ANNOTATIONS, (*indexed, key))

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.span.set_attribute(f"{namespace}.{key}", _attribute_value(value))

    def add_exception(
        self, exception: BaseException, stack: list[traceback.StackSummary], remote: bool = False
    ) -> None:
        self.span.record_exception(exception)
        self.span.set_status(Status(StatusCode.ERROR, type(exception).__name__))


class OpenTelemetryProvider(BaseProvider):
    """Powertools Tracer's provider over an OpenTelemetry `TracerProvider`."""

    def __init__(self, tracer_provider: TracerProvider, propagator: TextMapPropagator) -> None:
        self.tracer_provider = tracer_provider
        self._tracer = tracer_provider.get_tracer(SCOPE)
        self._propagator = propagator

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[SpanSegment, None, None]:
        outermost = not trace.get_current_span().get_span_context().is_valid
        # the invocation's first span continues Lambda's trace (the runtime's _X_AMZN_TRACE_ID)
        parent = self._propagator.extract({}) if outermost else None
        try:
            with self._tracer.start_as_current_span(name or "## subsegment", context=parent) as span:
                yield SpanSegment(span)
        finally:
            if outermost:  # before Lambda freezes the process
                self.tracer_provider.force_flush()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(
        self, name: str | None = None, **kwargs: Any
    ) -> AsyncGenerator[SpanSegment, None]:
        with self.in_subsegment(name, **kwargs) as segment:
            yield segment

    def put_annotation(self, key: str, value: str | numbers.Number | bool) -> None:
        SpanSegment(trace.get_current_span()).put_annotation(key, value)

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        SpanSegment(trace.get_current_span()).put_metadata(key, value, namespace)

    def patch(self, modules: Sequence[str]) -> None:
        unknown = sorted(set(modules) - {"botocore"})
        if unknown:
            raise ConfigError(f"OpenTelemetry tracing instruments botocore only, not {', '.join(unknown)}")
        if modules:
            from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

            instrumentor = BotocoreInstrumentor()  # type: ignore[no-untyped-call]
            instrumentor.instrument(tracer_provider=self.tracer_provider)  # once per process

    def patch_all(self) -> None:
        self.patch(["botocore"])


class SigV4Transport(BaseHTTPTransport):
    """The OTLP exporter's HTTP transport, signing each request with SigV4 as X-Ray's endpoint requires.

    The OTLP/JSON exporter takes its transport as `_transport=` (a `BaseHTTPTransport`); both names
    live in underscore modules of a beta package, so pyproject pins it exactly and
    tests/unit/core/test_otel.py fails if they move.
    """

    def __init__(self, inner: BaseHTTPTransport, credentials: Credentials, region: str) -> None:
        self._inner = inner
        self._credentials = credentials
        self._region = region

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=data, headers=dict(headers or {}))
        SigV4Auth(self._credentials.get_frozen_credentials(), SIGNING_SERVICE, self._region).add_auth(request)
        signed = {name: str(value) for name, value in request.headers.items()}
        return self._inner.request(method, url, headers=signed, timeout=timeout, data=data)

    def close(self) -> None:
        self._inner.close()

    def is_connection_error(self, exception: Exception | None) -> bool:
        return self._inner.is_connection_error(exception)


def xray_endpoint(config: Settings) -> str:
    """Where spans go: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else X-Ray's OTLP endpoint in this region."""
    if config.otel_traces_endpoint:
        return config.otel_traces_endpoint
    return f"https://xray.{config.require('region')}.amazonaws.com/v1/traces"


def _json_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


def exporter(config: Settings) -> SpanExporter | None:
    """The exporter `OTEL_TRACES_EXPORTER` names (None for `none`)."""
    kind = config.otel_traces_exporter
    if kind == "otlp":
        import botocore.session
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

        credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            raise ConfigError("no AWS credentials to sign spans for X-Ray's OTLP endpoint")
        transport = SigV4Transport(Urllib3HTTPTransport(), credentials, config.require("region"))
        return OTLPSpanExporter(endpoint=xray_endpoint(config), _transport=transport)
    if kind == "console":
        return ConsoleSpanExporter(out=sys.stdout, formatter=_json_line)
    if kind == "none":
        return None
    raise ConfigError(f"environment variable OTEL_TRACES_EXPORTER must be one of {', '.join(EXPORTERS)}")


def resource(config: Settings) -> Resource:
    attributes: dict[str, str] = {"service.name": config.service_name, "cloud.provider": "aws"}
    if config.function_name:
        attributes.update({"cloud.platform": "aws_lambda", "faas.name": config.function_name})
    if config.region:
        attributes["cloud.region"] = config.region
    return Resource.create(attributes)


@functools.cache
def provider() -> OpenTelemetryProvider:
    """The container's provider: one TracerProvider, one batch exporter, one propagator."""
    config = settings()
    tracer_provider = TracerProvider(resource=resource(config))
    span_exporter = exporter(config)
    if span_exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return OpenTelemetryProvider(tracer_provider, AwsXRayLambdaPropagator())
