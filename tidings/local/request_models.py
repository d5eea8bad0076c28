"""Request validation of WebSocket routes by model (`AWS::ApiGatewayV2::Model`), pure.

A route with a `ModelSelectionExpression` validates each message before its integration runs:
the expression's value picks one of the route's `RequestModels` (falling back to `$default`),
and the body must be JSON that the model's schema (JSON Schema draft 4) accepts. No matching
model, a body that is not JSON, or a schema violation fails the request: API Gateway calls no
backend and answers the client with its error message (the gateway sends `Forbidden`).

The schemas are checked at start (a schema that is not draft-4 valid stops the start by name);
validation itself is the `jsonschema` library's Draft4Validator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import SchemaError

from tidings.local.vtl import DEFAULT_KEY, selection_key

# What the client gets when validation fails (`{"message": ..., "connectionId", "requestId"}`)
VALIDATION_ERROR = "Forbidden"


class ModelError(ValueError):
    """A model or a route's RequestModels the local stack cannot use; the message names it."""


@dataclass(frozen=True)
class Model:
    name: str
    schema: Mapping[str, Any]

    @cached_property
    def validator(self) -> Draft4Validator:
        """Built once per model (the schema was checked at start)."""
        return Draft4Validator(self.schema)


def read_model(name: str, schema: Any, where: str) -> Model:
    """A model's schema as the template gives it (an object, or JSON text), checked as draft 4."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ModelError(f"{where}.Schema: not JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise ModelError(f"{where}.Schema: a JSON schema object is required")
    try:
        Draft4Validator.check_schema(schema)
    except SchemaError as exc:
        raise ModelError(f"{where}.Schema: not a valid draft-4 JSON schema: {exc.message}") from exc
    return Model(name, schema)


@dataclass(frozen=True)
class RequestModels:
    """A route's `ModelSelectionExpression` and its `RequestModels` (selection key → model)."""

    selection_expression: str
    models: Mapping[str, Model]


@dataclass(frozen=True)
class Verdict:
    valid: bool
    model: str | None = None  # the model's name (None: no model matched)
    reason: str = ""  # why it failed, for the terminal line


def validate_request(request_models: RequestModels, body: str) -> Verdict:
    """Whether API Gateway lets a message through to the route's integration."""
    key = selection_key(request_models.selection_expression, body)
    model = request_models.models.get(key) or request_models.models.get(DEFAULT_KEY)
    if model is None:
        return Verdict(False, None, f"no request model for {key!r} and no $default model")
    try:
        document = json.loads(body)
    except ValueError:
        return Verdict(False, model.name, "the body is not JSON")
    errors = sorted(model.validator.iter_errors(document), key=lambda error: list(error.path))
    if not errors:
        return Verdict(True, model.name)
    first = errors[0]
    where = "/".join(str(part) for part in first.path)
    return Verdict(False, model.name, f"{where + ': ' if where else ''}{first.message}")
