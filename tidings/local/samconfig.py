"""The SAM CLI's configuration files, read the way `sam deploy` and `sam local` read them. Pure.

- samconfig.toml: `--config-env ENV` takes `parameter_overrides` from `[ENV.deploy.parameters]`,
  else from `[ENV.global.parameters]` (a `Key=Value Key2="Value 2"` string or a list of those).
- `--env-vars FILE`: `{"Parameters": {...}, "LogicalIdOrName": {...}}`; `Parameters` applies to
  every function, a function's own object wins, and only variables the template declares for a
  function are overridden (SAM ignores the others).
"""

from __future__ import annotations

import json
import shlex
import tomllib
from collections.abc import Mapping
from typing import Any

from tidings.local.model import Function


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message is one line for the user."""


def parse_parameter_overrides(value: Any) -> dict[str, str]:
    """`Key=Value Key2="two words"` (or a list of such strings) -> {Key: Value, ...}."""
    items: list[str] = []
    for part in value if isinstance(value, list) else [value]:
        if not isinstance(part, str):
            raise ConfigError(f"parameter_overrides must be text, got {part!r}")
        try:
            items += shlex.split(part)
        except ValueError as exc:
            raise ConfigError(f"parameter_overrides: {exc}") from None
    overrides: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"parameter_overrides takes Key=Value, not {item!r}")
        overrides[key] = text
    return overrides


def config_env_parameter_overrides(toml_text: str, config_env: str) -> dict[str, str]:
    """The parameter overrides `sam deploy --config-env config_env` would use."""
    try:
        document = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"samconfig.toml is not valid TOML: {exc}") from None
    environment = document.get(config_env)
    if not isinstance(environment, dict):
        known = sorted(key for key, value in document.items() if isinstance(value, dict))
        raise ConfigError(f"samconfig.toml has no environment {config_env!r} (it has: {', '.join(known)})")
    for command in ("deploy", "global"):
        parameters = environment.get(command, {}).get("parameters", {})
        if "parameter_overrides" in parameters:
            return parse_parameter_overrides(parameters["parameter_overrides"])
    return {}


def parse_env_vars(text: str) -> dict[str, dict[str, str]]:
    """SAM's env-vars JSON: every value becomes text, as Lambda environments are."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--env-vars is not JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise ConfigError('--env-vars takes {"Parameters": {...}, "FunctionLogicalId": {...}}')
    return {
        str(scope): {str(name): _text(value) for name, value in variables.items()}
        for scope, variables in document.items()
    }


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def function_environment(function: Function, env_vars: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The function's template environment with the env-vars file applied."""
    environment = dict(function.environment)
    for scope in ("Parameters", function.name, function.logical_id):
        for name, value in env_vars.get(scope, {}).items():
            if name in environment:
                environment[name] = value
    return environment
