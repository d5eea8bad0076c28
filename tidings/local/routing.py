"""Route selection for WebSocket messages (R1-R4), pure.

A route selection expression mixes literal text and `$request.body.<json path>` variables,
written bare (`$request.body.action`) or braced (`${request.body.version}-beta`); `\\$` is a
literal dollar (`\\$default`). The evaluated text must equal a route key exactly; anything
that cannot be evaluated selects `$default`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONNECT = "$connect"
DISCONNECT = "$disconnect"
DEFAULT = "$default"
LIFECYCLE_ROUTES = frozenset({CONNECT, DISCONNECT})

_BODY_PREFIX = "request.body"
_BARE_PATH = re.compile(r"request\.body(?:\.[A-Za-z0-9_\-]+)*")


class SelectionExpressionError(ValueError):
    """The API's route selection expression itself is malformed."""


@dataclass(frozen=True)
class BodyPath:
    """`request.body.a.b` → ("a", "b"); an empty tuple is the whole body."""

    keys: tuple[str, ...]


Part = str | BodyPath


@dataclass(frozen=True)
class SelectionExpression:
    source: str
    parts: tuple[Part, ...]

    @property
    def is_static(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)


def _body_path(variable: str, source: str) -> BodyPath:
    if variable == _BODY_PREFIX:
        return BodyPath(())
    if not variable.startswith(_BODY_PREFIX + "."):
        raise SelectionExpressionError(f"only $request.body variables are supported: {source!r}")
    keys = tuple(variable[len(_BODY_PREFIX) + 1 :].split("."))
    if any(not key for key in keys):
        raise SelectionExpressionError(f"empty key in {source!r}")
    return BodyPath(keys)


def parse_selection_expression(source: str) -> SelectionExpression:
    parts: list[Part] = []
    literal: list[str] = []
    index = 0
    while index < len(source):
        char = source[index]
        if char == "\\" and source.startswith("$", index + 1):
            literal.append("$")
            index += 2
            continue
        if char != "$":
            literal.append(char)
            index += 1
            continue
        if source.startswith("{", index + 1):
            end = source.find("}", index + 2)
            if end < 0:
                raise SelectionExpressionError(f"unclosed '${{' in {source!r}")
            variable = source[index + 2 : end]
            index = end + 1
        else:
            match = _BARE_PATH.match(source, index + 1)
            if match is None:
                raise SelectionExpressionError(f"'$' must start $request.body... in {source!r}")
            variable = match.group(0)
            index = match.end()
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_body_path(variable, source))
    if literal:
        parts.append("".join(literal))
    if not parts:
        raise SelectionExpressionError("the route selection expression is empty")
    return SelectionExpression(source, tuple(parts))


def _stringify(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


def _lookup(document: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


def evaluate(expression: SelectionExpression, body: str) -> str | None:
    """The expression's value for a message body, or None when it cannot be evaluated."""
    if expression.is_static:
        return "".join(part for part in expression.parts if isinstance(part, str))
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    pieces: list[str] = []
    for part in expression.parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        text = _stringify(_lookup(document, part.keys))
        if text is None:
            return None
        pieces.append(text)
    return "".join(pieces)


def select_route(expression: SelectionExpression, route_keys: Mapping[str, Any], body: str) -> str | None:
    """The route key a message goes to: a custom key, `$default`, or None when neither exists (R3)."""
    value = evaluate(expression, body)
    if value is not None and value in route_keys and value not in LIFECYCLE_ROUTES:
        return value
    return DEFAULT if DEFAULT in route_keys else None
