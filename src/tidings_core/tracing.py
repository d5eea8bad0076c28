"""The handlers' Powertools Tracer, over the X-Ray SDK or over OpenTelemetry (the template's `Tracing`).

Every handler keeps its module-level `tracer` and its decorators; only what records the segments
changes. With `TRACING=opentelemetry` the Tracer gets Tidings' OpenTelemetry provider (`otel.py`,
through Powertools' `BaseProvider` interface) and the X-Ray SDK is never imported; with the
default `xray-sdk` nothing differs from a plain `Tracer(patch_modules=...)`, and the OpenTelemetry
SDK is never imported. See docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .config import ConfigError, settings

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

XRAY_SDK = "xray-sdk"
OPENTELEMETRY = "opentelemetry"
MODES = (XRAY_SDK, OPENTELEMETRY)


def mode() -> str:
    """The container's tracing backend; a clear error for a value the template does not allow."""
    value = settings().tracing
    if value not in MODES:
        raise ConfigError(f"environment variable TRACING must be one of {', '.join(MODES)}, not {value!r}")
    return value


def tracer(patch_modules: Sequence[str] = (), *, auto_patch: bool = True) -> Tracer:
    """A Powertools Tracer recording through the configured backend, instrumenting `patch_modules`.

    With OpenTelemetry the Tracer is always on: `OTEL_SDK_DISABLED=true` turns the SDK off, and
    `POWERTOOLS_TRACE_DISABLED` (which the local stack sets because no X-Ray daemon listens there)
    does not apply, so traces show in the local stack's invocation logs too.
    """
    from aws_lambda_powertools import Tracer

    if mode() == XRAY_SDK:
        return Tracer(patch_modules=list(patch_modules), auto_patch=auto_patch)
    from . import otel  # imports the OpenTelemetry SDK: only on this path

    return Tracer(
        patch_modules=list(patch_modules), auto_patch=auto_patch, provider=otel.provider(), disabled=False
    )
