"""CloudFormation dynamic references, `{{resolve:ssm:...}}` and `{{resolve:secretsmanager:...}}`.

Pure: `parse` reads one reference; `substitute` replaces every reference in a text with what a
`DynamicValues` source holds (the template's own parameters and secrets, then the embedded
services). A reference that names nothing is a one-line `DynamicReferenceError`.

Forms (as CloudFormation documents them):
- `{{resolve:ssm:NAME}}`, `{{resolve:ssm:NAME:VERSION}}` (NAME may be the parameter's ARN);
  `ssm-secure` the same, for SecureString parameters;
- `{{resolve:secretsmanager:SECRET-ID:SecretString:JSON-KEY:VERSION-STAGE:VERSION-ID}}`, every
  part after SECRET-ID optional (SECRET-ID is a name or an ARN).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol

REFERENCE = re.compile(r"\{\{resolve:(ssm|ssm-secure|secretsmanager):([^{}]+)\}\}")
_ARN_PARTS = {"ssm": 6, "ssm-secure": 6, "secretsmanager": 7}


class DynamicReferenceError(ValueError):
    """A dynamic reference that cannot be resolved; the message names it."""


class DynamicValues(Protocol):
    """Where dynamic references are looked up; None when the parameter or secret does not exist."""

    def ssm_parameter(self, name: str, version: str | None) -> str | None: ...

    def secret_string(
        self, secret_id: str, version_stage: str | None, version_id: str | None
    ) -> str | None: ...


@dataclass(frozen=True)
class Reference:
    service: str  # ssm | ssm-secure | secretsmanager
    name: str  # parameter name or secret id (name or ARN)
    version: str | None = None  # ssm: version or label
    secret_part: str | None = None  # secretsmanager: only SecretString exists
    json_key: str | None = None
    version_stage: str | None = None
    version_id: str | None = None

    @property
    def text(self) -> str:
        return f"{{{{resolve:{self.service}:{self.name}}}}}"


def parse(service: str, body: str) -> Reference:
    """One reference's parts, after `{{resolve:SERVICE:`."""
    parts = body.split(":")
    arn_length = _ARN_PARTS[service] if body.startswith("arn:") else 1
    if len(parts) < arn_length or not parts[0]:
        raise DynamicReferenceError(f"{{{{resolve:{service}:{body}}}}}: malformed dynamic reference")
    name = ":".join(parts[:arn_length])
    rest = [part or None for part in parts[arn_length:]]
    if service in ("ssm", "ssm-secure"):
        if len(rest) > 1:
            raise DynamicReferenceError(f"{{{{resolve:{service}:{body}}}}}: expected NAME or NAME:VERSION")
        return Reference(service, name, version=rest[0] if rest else None)
    rest += [None] * (4 - len(rest))
    if len(rest) > 4:
        raise DynamicReferenceError(f"{{{{resolve:{service}:{body}}}}}: too many parts")
    secret_part, json_key, version_stage, version_id = rest
    if secret_part not in (None, "SecretString"):
        raise DynamicReferenceError(
            f"{{{{resolve:{service}:{body}}}}}: only SecretString can be referenced, not {secret_part}"
        )
    return Reference(service, name, None, secret_part, json_key, version_stage, version_id)


def value_of(reference: Reference, values: DynamicValues) -> str:
    if reference.service in ("ssm", "ssm-secure"):
        found = values.ssm_parameter(reference.name, reference.version)
        if found is None:
            raise DynamicReferenceError(
                f"{reference.text}: no such SSM parameter in the template or the embedded SSM"
            )
        return found
    secret = values.secret_string(reference.name, reference.version_stage, reference.version_id)
    if secret is None:
        raise DynamicReferenceError(
            f"{reference.text}: no such secret (with a value known at start) in the template or the embedded "
            "Secrets Manager"
        )
    if reference.json_key is None:
        return secret
    try:
        document = json.loads(secret)
        field = document[reference.json_key]
    except (ValueError, KeyError, TypeError):
        raise DynamicReferenceError(
            f"{reference.text}: the secret is not a JSON object with key {reference.json_key!r}"
        ) from None
    return field if isinstance(field, str) else json.dumps(field)


def substitute(text: str, values: DynamicValues) -> str:
    """`text` with every dynamic reference replaced by its value."""
    if "{{resolve:" not in text:
        return text
    return REFERENCE.sub(lambda match: value_of(parse(match.group(1), match.group(2)), values), text)
