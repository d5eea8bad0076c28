"""Resource properties converted to the types their resource needs, as CloudFormation converts them.

A `Ref` to a `Number` parameter gives text, and YAML gives numbers where text is meant
(`Value: 5`); CloudFormation's resource providers convert each property to the type of its
resource schema. The schemas are the ones cfn-lint ships (CloudFormation's own provider
schemas), so a table's `ReadCapacityUnits: !Ref Capacity` reaches DynamoDB as the integer it
needs. Pure: `coerce_properties(kind, properties)`; values that do not convert are left as they
are, for the service to refuse with its own message.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from tidings.local.model import DEFAULT_REGION

_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@functools.cache
def resource_schema(kind: str) -> dict[str, Any] | None:
    """CloudFormation's provider schema for a resource type, or None when cfn-lint has none."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER, ResourceNotFoundError

    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(DEFAULT_REGION, kind)
    except ResourceNotFoundError:
        return None
    document: dict[str, Any] = schema.schema
    return document


def coerce_properties(kind: str, properties: dict[str, Any]) -> dict[str, Any]:
    """`properties` with each scalar converted to the type the resource schema gives it."""
    schema = resource_schema(kind)
    if schema is None:
        return properties
    converted = coerce(properties, schema, schema)
    return converted if isinstance(converted, dict) else properties


def _resolve_ref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in node and seen < 20:
        reference = str(node["$ref"])
        if not reference.startswith("#/"):
            return node
        target: Any = root
        for part in reference[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target if isinstance(target, dict) else {}
        seen += 1
    return node


def coerce(value: Any, node: dict[str, Any], root: dict[str, Any]) -> Any:
    node = _resolve_ref(node, root)
    kind = node.get("type")
    if isinstance(value, dict):
        properties = node.get("properties", {})
        if not isinstance(properties, dict):
            return value
        return {
            key: coerce(item, properties[key], root) if isinstance(properties.get(key), dict) else item
            for key, item in value.items()
        }
    if isinstance(value, list):
        items = node.get("items")
        return [coerce(item, items, root) for item in value] if isinstance(items, dict) else value
    if kind == "integer" and isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "number" and isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value)
        return int(number) if _INTEGER.match(value.strip()) else number
    if kind == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if kind == "string" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "string" and isinstance(value, (int, float)):
        return str(value)
    return value
