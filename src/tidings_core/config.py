"""Settings from the environment the template's `Globals` set, read once per container."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_AUDIENCE = "tidings"
DEFAULT_ISSUER = "tidings"
MAX_TOKEN_LIFETIME_SECONDS = 24 * 60 * 60
DEFAULT_SERVICE = "tidings"


class ConfigError(RuntimeError):
    """A setting a code path needs is missing from the environment."""


@dataclass(frozen=True, slots=True)
class Settings:
    connections_table: str = ""
    subscriptions_table: str = ""
    jobs_table: str = ""
    callback_url: str = ""
    token_secret_arn: str = ""
    token_audience: str = DEFAULT_AUDIENCE
    event_bus_name: str = ""
    fanout_table: str = ""
    deliver_function: str = ""
    token_issuer: str = DEFAULT_ISSUER
    # a stack may shorten tokens' maximum lifetime, never lengthen it past 24 h
    token_max_lifetime: int = MAX_TOKEN_LIFETIME_SECONDS
    # tracing (docs/observability.md): the template's `Tracing` parameter, and what OpenTelemetry needs
    tracing: str = "xray-sdk"
    service_name: str = DEFAULT_SERVICE
    function_name: str = ""
    region: str = ""
    otel_traces_exporter: str = "otlp"
    otel_traces_endpoint: str = ""
    # the account's API Gateway throttle, which the shards of one fan-out share (push.Pacer)
    management_api_rps: float = 10_000.0
    management_api_burst: float = 5_000.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            connections_table=env.get("CONNECTIONS_TABLE", ""),
            subscriptions_table=env.get("SUBSCRIPTIONS_TABLE", ""),
            jobs_table=env.get("JOBS_TABLE", ""),
            callback_url=env.get("CALLBACK_URL", ""),
            token_secret_arn=env.get("TOKEN_SECRET_ARN", ""),
            token_audience=env.get("TOKEN_AUDIENCE") or DEFAULT_AUDIENCE,
            event_bus_name=env.get("EVENT_BUS_NAME", ""),
            fanout_table=env.get("FANOUT_TABLE", ""),
            deliver_function=env.get("DELIVER_FUNCTION", ""),
            token_issuer=env.get("TOKEN_ISSUER") or DEFAULT_ISSUER,
            token_max_lifetime=_lifetime(env.get("TOKEN_MAX_LIFETIME_SECONDS")),
            tracing=env.get("TRACING") or "xray-sdk",
            service_name=env.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE,
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME", ""),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION", ""),
            # the OpenTelemetry SDK's own variables, for the choices Tidings makes itself
            otel_traces_exporter=(env.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower(),
            otel_traces_endpoint=env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
            management_api_rps=_positive("MANAGEMENT_API_RPS", env.get("MANAGEMENT_API_RPS"), 10_000.0),
            management_api_burst=_positive("MANAGEMENT_API_BURST", env.get("MANAGEMENT_API_BURST"), 5_000.0),
        )

    def require(self, name: str) -> str:
        """The value of field `name`; a clear error naming the variable when it is empty."""
        value: str = getattr(self, name)
        if not value:
            raise ConfigError(f"environment variable {name.upper()} is not set")
        return value


def _positive(name: str, raw: str | None, default: float) -> float:
    """A positive number of requests (per second); empty means `default`."""
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def _lifetime(raw: str | None) -> int:
    """TOKEN_MAX_LIFETIME_SECONDS, clamped to 1 s .. 24 h; empty means 24 h."""
    if not raw:
        return MAX_TOKEN_LIFETIME_SECONDS
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"TOKEN_MAX_LIFETIME_SECONDS must be whole seconds, got {raw!r}") from None
    return max(1, min(value, MAX_TOKEN_LIFETIME_SECONDS))


@functools.cache
def settings() -> Settings:
    """The container's settings (the environment does not change during a Lambda's life)."""
    return Settings.from_env()
