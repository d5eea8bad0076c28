"""Route selection expressions (R2-R4)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.local.routing import (
    BodyPath,
    SelectionExpressionError,
    evaluate,
    parse_selection_expression,
    select_route,
)

ROUTES = {"$connect": 1, "$disconnect": 1, "$default": 1, "subscribe": 1, "v2-beta": 1, "1": 1, "true": 1}


@pytest.mark.parametrize(
    ("source", "parts"),
    [
        ("$request.body.action", (BodyPath(("action",)),)),
        ("${request.body.action}", (BodyPath(("action",)),)),
        ("$request.body.a.b", (BodyPath(("a", "b")),)),
        ("${request.body.version}-beta", (BodyPath(("version",)), "-beta")),
        ("v-${request.body.a}.${request.body.b}", ("v-", BodyPath(("a",)), ".", BodyPath(("b",)))),
        ("\\$default", ("$default",)),
        ("$request.body", (BodyPath(()),)),
    ],
)
def test_parse(source: str, parts: tuple[object, ...]) -> None:
    assert parse_selection_expression(source).parts == parts


@pytest.mark.parametrize("source", ["", "$request.header.x", "${request.body.a", "$foo", "${request.body.}"])
def test_malformed_expressions_are_rejected(source: str) -> None:
    with pytest.raises(SelectionExpressionError):
        parse_selection_expression(source)


@pytest.mark.parametrize(
    ("source", "body", "value"),
    [
        ("$request.body.action", '{"action": "subscribe"}', "subscribe"),
        ("${request.body.action}", '{"action": "subscribe"}', "subscribe"),
        ("$request.body.a.b", '{"a": {"b": "deep"}}', "deep"),
        ("${request.body.version}-beta", '{"version": "v2"}', "v2-beta"),
        ("$request.body.n", '{"n": 1}', "1"),
        ("$request.body.flag", '{"flag": true}', "true"),
        ("$request.body.obj", '{"obj": {"k": [1, 2]}}', '{"k":[1,2]}'),
        ("\\$default", "anything, not even JSON", "$default"),
        ("$request.body.action", "not json", None),
        ("$request.body.action", '{"other": 1}', None),
        ("$request.body.action", '{"action": null}', None),
        ("$request.body.a.b", '{"a": "string"}', None),
        ("$request.body.action", "[1, 2]", None),
    ],
)
def test_evaluate(source: str, body: str, value: str | None) -> None:
    assert evaluate(parse_selection_expression(source), body) == value


@pytest.mark.parametrize(
    ("source", "body", "route"),
    [
        ("$request.body.action", '{"action": "subscribe"}', "subscribe"),
        ("$request.body.action", '{"action": "Subscribe"}', "$default"),  # exact match only
        ("$request.body.action", '{"action": "subscribe "}', "$default"),
        ("$request.body.action", "not json", "$default"),
        ("$request.body.action", '{"action": "$connect"}', "$default"),  # R4
        ("$request.body.action", '{"action": "$disconnect"}', "$default"),
        ("$request.body.n", '{"n": 1}', "1"),
        ("$request.body.flag", '{"flag": true}', "true"),
        ("${request.body.version}-beta", '{"version": "v2"}', "v2-beta"),
        ("\\$default", '{"action": "subscribe"}', "$default"),
    ],
)
def test_select_route(source: str, body: str, route: str) -> None:
    assert select_route(parse_selection_expression(source), ROUTES, body) == route


def test_no_default_route_means_none() -> None:
    routes = {"subscribe": 1}
    expression = parse_selection_expression("$request.body.action")
    assert select_route(expression, routes, '{"action": "subscribe"}') == "subscribe"
    assert select_route(expression, routes, '{"action": "other"}') is None
    assert select_route(expression, routes, "garbage") is None


@given(st.text(max_size=200))
def test_any_body_selects_a_known_route_or_none(body: str) -> None:
    expression = parse_selection_expression("$request.body.action")
    assert select_route(expression, ROUTES, body) in set(ROUTES) - {"$connect", "$disconnect"}


@given(st.text(min_size=1, max_size=30).filter(lambda s: s not in ("$connect", "$disconnect")))
def test_string_action_round_trips(action: str) -> None:
    expression = parse_selection_expression("$request.body.action")
    assert select_route(expression, {action: 1, "$default": 1}, json.dumps({"action": action})) == action
