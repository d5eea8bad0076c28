"""Template parameters typed and checked as CloudFormation does, before any resource is read.

Pure: `parameter_value` takes a parameter's spec, its raw value (override or `Default`) and a
lookup for SSM parameters, and returns what `Ref` to it gives:

- `String` and the AWS-specific types (`AWS::EC2::VPC::Id`, ...): the text.
- `Number`: the text, once checked to be a number (CloudFormation's `Ref` gives a string; a
  resource property that needs a number gets one from `cfn_types.coerce_properties`).
- `List<Number>`, `CommaDelimitedList`, `List<...>`: a list of strings, each member space-trimmed.
- `AWS::SSM::Parameter::Name`: the name; `AWS::SSM::Parameter::Value<T>`: the value the named
  parameter holds (a list for `Value<List<...>>` and `Value<CommaDelimitedList>`).

Constraints (`AllowedValues`, `AllowedPattern`, `MinLength`/`MaxLength`, `MinValue`/`MaxValue`)
are checked as CloudFormation checks them; a broken one is a one-line `ValueError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

# the named SSM parameter's value, or None when it does not exist
SsmLookup = Callable[[str], str | None]

_SSM_VALUE = re.compile(r"^AWS::SSM::Parameter::Value<(.+)>$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class ParameterError(ValueError):
    """A parameter value CloudFormation would refuse; the message names the parameter."""


def raw_text(value: Any) -> str:
    """A parameter's value as CloudFormation receives it: text (a YAML list joins with commas)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(raw_text(item) for item in value)
    return str(value)


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")] if text else []


def parameter_value(name: str, spec: Mapping[str, Any], raw: Any, ssm: SsmLookup) -> Any:
    """What `Ref: name` gives, or `ParameterError` naming the parameter and the broken rule."""
    kind = str(spec.get("Type", "String"))
    text = raw_text(raw)
    ssm_type = _SSM_VALUE.match(kind)
    if ssm_type:
        value = ssm(text)
        if value is None:
            raise ParameterError(
                f"parameter {name} ({kind}): SSM parameter {text!r} does not exist in the embedded SSM "
                "(declare it in the template, or give another name with --parameter-overrides)"
            )
        inner = ssm_type.group(1)
        return _split(value) if inner.startswith("List<") or inner == "CommaDelimitedList" else value
    _check_allowed(name, spec, text)
    if kind == "Number":
        _check_number(name, spec, text)
        return text
    if kind == "List<Number>":
        items = _split(text)
        for item in items:
            _check_number(name, spec, item)
        return items
    if kind == "CommaDelimitedList" or kind.startswith("List<"):
        return _split(text)
    _check_text(name, spec, text)
    return text


def _check_allowed(name: str, spec: Mapping[str, Any], text: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed and text not in [raw_text(item) for item in allowed]:
        raise ParameterError(f"parameter {name}={text!r} is not one of {allowed}")


def _check_number(name: str, spec: Mapping[str, Any], text: str) -> None:
    if not _NUMBER.match(text.strip()):
        raise ParameterError(f"parameter {name}={text!r} must be a number")
    number = float(text)
    if "MinValue" in spec and number < float(spec["MinValue"]):
        raise ParameterError(f"parameter {name}={text} is less than MinValue {spec['MinValue']}")
    if "MaxValue" in spec and number > float(spec["MaxValue"]):
        raise ParameterError(f"parameter {name}={text} is more than MaxValue {spec['MaxValue']}")


def _check_text(name: str, spec: Mapping[str, Any], text: str) -> None:
    if "MinLength" in spec and len(text) < int(spec["MinLength"]):
        raise ParameterError(f"parameter {name}: shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
        raise ParameterError(f"parameter {name}: longer than MaxLength {spec['MaxLength']}")
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(str(pattern), text):
        detail = spec.get("ConstraintDescription") or f"does not match AllowedPattern {pattern}"
        raise ParameterError(f"parameter {name}: {detail}")
