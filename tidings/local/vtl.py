"""API Gateway mapping templates (Velocity), pure: parse once at start, render per request.

The Velocity engine is airspeed (from PyPI); what is written here is API Gateway's own part, for
the subset its documentation defines and a WebSocket API can use:

- `$input.body`, `$input.json(path)`, `$input.path(path)`, `$input.params()` / `$input.params(name)`
- `$context.*`: the event's requestContext (connectionId, routeKey, requestId, domainName, stage,
  apiId, eventType, connectedAt, requestTimeEpoch, identity.sourceIp, authorizer.*, ...)
- `$stageVariables.*`
- `$util.escapeJavaScript`, `$util.urlEncode`, `$util.urlDecode`, `$util.base64Encode`,
  `$util.base64Decode`, `$util.parseJson`
- the directives `#set`, `#if` / `#elseif` / `#else`, `#foreach` (and the rest of Velocity that
  airspeed runs).

Rendering follows API Gateway rather than plain Velocity where they differ: a missing `$context`
or `$stageVariables` key and a JSONPath that matches nothing render as empty text; JSON booleans
render `true` / `false`, objects `{a=1}` and arrays `[1, 2]` (Java's `toString`, as API Gateway
prints them; use `$input.json` for JSON).

Template selection (`TemplateSelectionExpression`, `PassthroughBehavior`) and integration
response selection are here too, so the gateway only moves values between them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import airspeed  # type: ignore[import-untyped]
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext.parser import parse as parse_jsonpath

from tidings.local.routing import SelectionExpressionError, evaluate, parse_selection_expression

DEFAULT_KEY = "$default"
PASSTHROUGH_BEHAVIORS = ("WHEN_NO_MATCH", "WHEN_NO_TEMPLATES", "NEVER")


class VtlError(ValueError):
    """A mapping template that cannot be parsed or rendered; the message names it."""


# ---------------------------------------------------------------------------- JSON values
class JsonMap(dict[str, Any]):
    """A JSON object as a template sees it: Velocity's map methods, Java's rendering."""

    def __str__(self) -> str:
        return "{" + ", ".join(f"{key}={_java_text(value)}" for key, value in self.items()) + "}"


class JsonList(list[Any]):
    """A JSON array as a template sees it: Velocity's list methods, Java's rendering."""

    def __str__(self) -> str:
        return "[" + ", ".join(_java_text(value) for value in self) + "]"


class JsonBool(int):
    """A JSON boolean: true in `#if`, and rendered `true` / `false` as Java does."""

    def __str__(self) -> str:
        return "true" if self else "false"

    __repr__ = __str__


# airspeed looks Velocity's extra methods (`.size()`, `.keySet()`, ...) up by exact class; its
# module-level table is the documented place to add them. Registered once, for our classes only;
# tests/unit/local/test_vtl.py fails if airspeed moves the table.
airspeed.__additional_methods__.setdefault(JsonMap, airspeed.__additional_methods__[dict])
airspeed.__additional_methods__.setdefault(JsonList, airspeed.__additional_methods__[list])


def _java_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_template_value(value: Any) -> Any:
    """A parsed JSON value with its objects, arrays and booleans in their template classes."""
    if isinstance(value, bool):
        return JsonBool(value)
    if isinstance(value, dict):
        return JsonMap((str(key), to_template_value(item)) for key, item in value.items())
    if isinstance(value, list):
        return JsonList(to_template_value(item) for item in value)
    return value


def _plain(value: Any) -> Any:
    """Back from template classes to JSON-serialisable Python values."""
    if isinstance(value, JsonBool):
        return bool(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class _Silent(dict[str, Any]):
    """`$context` and `$stageVariables`: a key that is not there renders as empty text."""

    def __missing__(self, key: str) -> _Nothing:
        return _Nothing()


class _Nothing(_Silent):
    """A missing key: empty text, false in `#if`, and missing again one level down."""

    def __str__(self) -> str:
        return ""


def _silent(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int:
        return value
    if isinstance(value, dict):
        return _Silent({str(key): _silent(item) for key, item in value.items()})
    if kind is bool:
        return JsonBool(value)
    if isinstance(value, list):
        return JsonList([_silent(item) for item in value])
    return value


# ---------------------------------------------------------------------------- $input and $util
_NOT_JSON = object()


class _Input:
    """`$input`: the request (or integration response) body."""

    def __init__(self, body: str, params: Mapping[str, Mapping[str, str]]) -> None:
        self.body = body
        self._params = {kind: dict(values) for kind, values in params.items()}
        try:
            self._document: Any = json.loads(body) if body else _NOT_JSON
        except ValueError:
            self._document = _NOT_JSON

    def _find(self, path: str) -> tuple[bool, Any]:
        document = self._document
        if document is _NOT_JSON:
            return (True, self.body) if path.strip() == "$" and self.body else (False, None)
        if path.strip() == "$":
            return True, document
        try:
            expression = _jsonpath(path)
        except (JsonPathParserError, Exception) as exc:  # the parser raises bare Exceptions too
            raise VtlError(f"invalid JSONPath {path!r}: {exc}") from exc
        matches = expression.find(document)
        if not matches:
            return False, None
        if len(matches) == 1 and not _is_multi_path(path):
            return True, matches[0].value
        return True, [match.value for match in matches]

    def path(self, path: str) -> Any:
        found, value = self._find(str(path))
        return to_template_value(value) if found and value is not None else ""

    def json(self, path: str) -> str:
        found, value = self._find(str(path))
        return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False) if found else ""

    def params(self, name: str | None = None) -> Any:
        if name is None:
            return JsonMap((kind, JsonMap(values)) for kind, values in self._params.items())
        for kind in ("path", "querystring", "header"):
            values = self._params.get(kind, {})
            if name in values:
                return values[name]
            lowered = {key.lower(): value for key, value in values.items()} if kind == "header" else {}
            if name.lower() in lowered:
                return lowered[name.lower()]
        return ""


@lru_cache(maxsize=512)
def _jsonpath(path: str) -> Any:
    """A parsed JSONPath; parsing (ply) costs ~1 ms, so each distinct path is parsed once."""
    return parse_jsonpath(path)


_MULTI_PATH = re.compile(r"\[\*\]|\.\*|\.\.|\[\?|\[[^\]]*[:,][^\]]*\]")


def _is_multi_path(path: str) -> bool:
    return bool(_MULTI_PATH.search(path))


def escape_javascript(text: Any) -> str:
    """Java's `StringEscapeUtils.escapeJavaScript`, which API Gateway's `$util.escapeJavaScript` is.

    Written here because no library on PyPI escapes by Java's rules: quotes (`'` too), backslash
    and `/` get a backslash; \\b \\f \\n \\r \\t their short forms; other control characters and
    everything past ASCII become `\\uXXXX` (upper-case hex, UTF-16 units).
    """
    out: list[str] = []
    short = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    for char in str(text):
        code = ord(char)
        if char in "'\"\\/":
            out.append("\\" + char)
        elif char in short:
            out.append(short[char])
        elif code < 0x20 or code > 0x7E:
            if code > 0xFFFF:
                units = char.encode("utf-16-be")
                out.append(f"\\u{units[0]:02X}{units[1]:02X}\\u{units[2]:02X}{units[3]:02X}")
            else:
                out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return "".join(out)


class _Util:
    """`$util`."""

    @staticmethod
    def escapeJavaScript(text: Any) -> str:  # API Gateway's names, hence camelCase
        return escape_javascript(text)

    @staticmethod
    def urlEncode(text: Any) -> str:
        # Java's URLEncoder: space is '+', '*' stays, '~' is encoded
        return quote_plus(str(text), safe="*").replace("~", "%7E")

    @staticmethod
    def urlDecode(text: Any) -> str:
        return unquote_plus(str(text))

    @staticmethod
    def base64Encode(text: Any) -> str:
        return base64.b64encode(str(text).encode()).decode()

    @staticmethod
    def base64Decode(text: Any) -> str:
        return base64.b64decode(str(text)).decode("utf-8", errors="replace")

    @staticmethod
    def parseJson(text: Any) -> Any:
        try:
            return to_template_value(json.loads(str(text)))
        except ValueError as exc:
            raise VtlError(f"$util.parseJson: not JSON: {exc}") from exc


# ---------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class RenderInput:
    """What one rendering sees besides the template."""

    body: str
    context: Mapping[str, Any]
    stage_variables: Mapping[str, str] | None = None
    # {"header": {...}, "querystring": {...}, "path": {...}}: only $connect has any
    params: Mapping[str, Mapping[str, str]] | None = None


class MappingTemplate:
    """One mapping template, parsed at start so that a syntax error stops the stack by name."""

    def __init__(self, source: str, where: str) -> None:
        self.source = source
        self.where = where
        try:
            self._template = airspeed.Template(source)
            self._template.ensure_compiled()
        except airspeed.TemplateSyntaxError as exc:
            raise VtlError(f"{where}: mapping template does not parse: {exc}") from exc

    def render(self, values: RenderInput) -> str:
        params = values.params or {"header": {}, "querystring": {}, "path": {}}
        namespace = {
            "input": _Input(values.body, params),
            "context": _silent(values.context),
            "stageVariables": _silent(values.stage_variables or {}),
            "util": _Util(),
        }
        try:
            return str(self._template.merge(namespace))
        except VtlError as exc:
            raise VtlError(f"{self.where}: {exc}") from exc
        except Exception as exc:  # airspeed raises its own errors and the template's Python ones
            raise VtlError(f"{self.where}: rendering failed: {exc}") from exc


def parse_templates(templates: Mapping[str, str], where: str) -> dict[str, MappingTemplate]:
    return {key: MappingTemplate(str(source), f"{where}.{key}") for key, source in templates.items()}


# ---------------------------------------------------------------------------- selection
class Passthrough(Enum):
    TEMPLATE = "template"  # render the selected template
    AS_IS = "as-is"  # send the body unchanged
    REJECT = "reject"  # no template and the behaviour forbids passing through


@dataclass(frozen=True)
class Selection:
    outcome: Passthrough
    template: MappingTemplate | None = None
    key: str | None = None


_STATUS_VARIABLE = re.compile(r"\$\{integration\.response\.statuscode\}|\$integration\.response\.statuscode")


def selection_key(expression: str | None, body: str, status: int | None = None) -> str:
    """A template selection expression's value: `${request.body.x}`, `${integration.response.
    statuscode}` (integration responses only) and static text; `$default` when it has none or
    cannot be evaluated."""
    if not expression:
        return DEFAULT_KEY
    if status is not None:
        expression = _STATUS_VARIABLE.sub(str(status), expression)
    try:
        parsed = parse_selection_expression(expression)
    except SelectionExpressionError:
        return DEFAULT_KEY
    value = evaluate(parsed, body)
    return DEFAULT_KEY if value is None else value


def check_selection_expression(expression: str, where: str, *, response: bool = False) -> None:
    """Refuse at start an expression whose variables API Gateway does not offer there."""
    text = _STATUS_VARIABLE.sub("0", expression) if response else expression
    try:
        parse_selection_expression(text)
    except SelectionExpressionError as exc:
        raise VtlError(f"{where}: {exc}") from exc


def select_request_template(
    templates: Mapping[str, MappingTemplate], expression: str | None, body: str, passthrough: str
) -> Selection:
    """Which request template renders a message, or whether it passes through or is refused.

    The selection expression's value picks a template by key; no match falls back to the
    `$default` template. With none: WHEN_NO_MATCH passes the body through, WHEN_NO_TEMPLATES
    only when the integration has no templates at all, NEVER refuses.
    """
    key = selection_key(expression, body)
    for candidate in (key, DEFAULT_KEY):
        if candidate in templates:
            return Selection(Passthrough.TEMPLATE, templates[candidate], candidate)
    if passthrough == "WHEN_NO_MATCH" or (passthrough == "WHEN_NO_TEMPLATES" and not templates):
        return Selection(Passthrough.AS_IS)
    return Selection(Passthrough.REJECT)


@dataclass(frozen=True)
class ResponseMapping:
    """One `AWS::ApiGatewayV2::IntegrationResponse`: its key, selection expression and templates."""

    key: str  # "$default" or "/regex/"
    template_selection_expression: str | None
    templates: Mapping[str, MappingTemplate]


def select_integration_response(
    responses: Sequence[ResponseMapping], selector: str | None
) -> ResponseMapping | None:
    """The integration response for a backend outcome.

    `selector` is what API Gateway matches the `/regex/` keys against: a Lambda error's
    `errorMessage` (None when the function succeeded) or an AWS service's status code. The whole
    text must match; otherwise `$default`.
    """
    default: ResponseMapping | None = None
    for response in responses:
        if response.key == DEFAULT_KEY:
            default = response
            continue
        pattern = (
            response.key[1:-1]
            if len(response.key) >= 2 and response.key[0] == response.key[-1] == "/"
            else None
        )
        if pattern is not None and selector is not None and re.fullmatch(pattern, selector, re.S):
            return response
    return default


def render_response(
    response: ResponseMapping | None, body: str, status: int, request_body: str, values: RenderInput
) -> str:
    """The message a route response sends: the integration response's selected template applied to
    the backend's body, or the body unchanged when no template is selected."""
    if response is None or not response.templates:
        return body
    key = selection_key(response.template_selection_expression, request_body, status)
    template = response.templates.get(key) or response.templates.get(DEFAULT_KEY)
    if template is None:
        return body
    return template.render(RenderInput(body, values.context, values.stage_variables, values.params))


def mock_status(rendered: str | None) -> int | None:
    """The status a `MOCK` integration answers with: the `statusCode` of its rendered request
    template. No template (the body passed through, or nothing to render) answers 200, the
    default integration response; a rendered template without a numeric `statusCode` is None
    (API Gateway fails the request with an internal error)."""
    if rendered is None:
        return 200
    try:
        document = json.loads(rendered)
    except ValueError:
        return None
    status = document.get("statusCode") if isinstance(document, dict) else None
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return None
    return status
