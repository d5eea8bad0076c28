"""vtl.py: API Gateway's mapping-template variables on captured-shape WebSocket events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import airspeed  # type: ignore[import-untyped]
import pytest

from tidings.local.vtl import (
    JsonList,
    JsonMap,
    MappingTemplate,
    Passthrough,
    RenderInput,
    ResponseMapping,
    VtlError,
    escape_javascript,
    mock_status,
    parse_templates,
    render_response,
    select_integration_response,
    select_request_template,
    selection_key,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def render(source: str, body: str = "", context: dict[str, Any] | None = None, **extra: Any) -> str:
    message = _event("websocket_message.json")
    values = RenderInput(body, context if context is not None else message["requestContext"], **extra)
    return MappingTemplate(source, "T").render(values)


def test_context_variables_come_from_the_event_request_context() -> None:
    source = (
        '{"c":"$context.connectionId","r":"$context.routeKey","q":"$context.requestId",'
        '"d":"$context.domainName","s":"$context.stage","a":"$context.apiId","e":"$context.eventType",'
        '"at":$context.connectedAt,"t":$context.requestTimeEpoch,"ip":"$context.identity.sourceIp",'
        '"user":"$context.authorizer.userId","p":"$context.authorizer.principalId"}'
    )
    assert json.loads(render(source)) == {
        "c": "BFaT_fALIAMCKug=",
        "r": "subscribe",
        "q": "BFaUCHN0oAMFZ8Q=",
        "d": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "s": "dev",
        "a": "abcdef1234",
        "e": "MESSAGE",
        "at": 1731332746000,
        "t": 1731332748503,
        "ip": "203.0.113.7",
        "user": "alice",
        "p": "alice",
    }


def test_missing_context_keys_render_empty_as_api_gateway_does() -> None:
    connect = _event("websocket_connect.json")["requestContext"]
    del connect["authorizer"]  # a route without an authorizer
    assert render('"$context.authorizer.userId|$context.nope"', context=connect) == '"|"'


def test_input_body_json_and_path() -> None:
    message = _event("websocket_message.json")
    body = message["body"]
    assert render("$input.body", body) == body
    assert render("$input.json('$')", body) == '{"action":"subscribe","topic":"job:job-1"}'
    assert render("$input.json('$.topic')", body) == '"job:job-1"'
    assert render("$input.path('$.topic')", body) == "job:job-1"
    assert render("[$input.path('$.missing')][$input.json('$.missing')]", body) == "[][]"


def test_input_path_gives_objects_lists_and_booleans_the_template_can_walk() -> None:
    body = json.dumps({"items": [{"n": "a"}, {"n": "b"}], "flag": False, "deep": {"x": 1, "ok": True}})
    source = (
        "#set($doc = $input.path('$'))"
        "#foreach($item in $doc.items)$item.n#if($foreach.hasNext),#end#end"
        "|$doc.items.size()|$doc.flag|#if($doc.flag)on#{else}off#end|$doc.deep"
    )
    assert render(source, body) == "a,b|2|false|off|{x=1, ok=true}"
    assert render("$input.json('$.items[*].n')", body) == '["a","b"]'


def test_set_if_elseif_else() -> None:
    source = "#set($n = $input.path('$.n'))#if($n > 10)big#elseif($n > 1)mid#{else}small#end"
    assert [render(source, json.dumps({"n": n})) for n in (20, 5, 0)] == ["big", "mid", "small"]


def test_util_functions() -> None:
    assert render("$util.urlEncode('a b&c=d~*')") == "a+b%26c%3Dd%7E*"
    assert render("$util.urlDecode('a+b%26c')") == "a b&c"
    assert render("$util.base64Encode('hello')") == "aGVsbG8="
    assert render("$util.base64Decode('aGVsbG8=')") == "hello"
    assert render("#set($o = $util.parseJson($input.body))$o.a.b", '{"a":{"b":"deep"}}') == "deep"
    assert render("\"$util.escapeJavaScript($input.path('$.t'))\"", json.dumps({"t": 'say "hi"\n'})) == (
        '"say \\"hi\\"\\n"'
    )


def test_escape_javascript_follows_java_rules() -> None:
    assert escape_javascript("it's a/b\\c\t") == "it\\'s a\\/b\\\\c\\t"
    assert escape_javascript("é\x01") == "\\u00E9\\u0001"
    assert escape_javascript("😀") == "\\uD83D\\uDE00"


def test_params_on_connect() -> None:
    params = {"header": {"Origin": "https://x.example"}, "querystring": {"room": "r1"}, "path": {}}
    assert render("$input.params('room')|$input.params('origin')", params=params) == "r1|https://x.example"


def test_stage_variables() -> None:
    assert render("$stageVariables.table|$stageVariables.none|", stage_variables={"table": "t1"}) == "t1||"


def test_a_template_that_does_not_parse_is_refused_by_name() -> None:
    with pytest.raises(
        VtlError, match=r"^Integ\.RequestTemplates\.\$default: mapping template does not parse"
    ):
        parse_templates({"$default": "#if($x)never closed"}, "Integ.RequestTemplates")


def test_a_rendering_error_names_the_template() -> None:
    with pytest.raises(VtlError, match=r"^T: .*parseJson"):
        render("$util.parseJson('not json')")


def test_airspeed_method_table_still_serves_our_json_classes() -> None:
    # vtl.py registers JsonMap/JsonList in airspeed's module-level method table; if airspeed moves
    # or renames it, `.size()` and `.keySet()` stop working on template values: fail loudly here.
    assert airspeed.__additional_methods__[JsonList] is airspeed.__additional_methods__[list]
    assert airspeed.__additional_methods__[JsonMap] is airspeed.__additional_methods__[dict]


# --------------------------------------------------------------------------- selection
TEMPLATES = parse_templates({"$default": "D", "v2": "V2"}, "I.RequestTemplates")


@pytest.mark.parametrize(
    ("expression", "body", "key"),
    [
        (None, "{}", "$default"),
        ("\\$default", "{}", "$default"),
        ("${request.body.version}", '{"version":"v2"}', "v2"),
        ("${request.body.version}", '{"version":"v9"}', "$default"),
        ("${request.body.version}", "not json", "$default"),
    ],
)
def test_request_template_selection(expression: str | None, body: str, key: str) -> None:
    selection = select_request_template(TEMPLATES, expression, body, "NEVER")
    assert selection.outcome is Passthrough.TEMPLATE
    assert selection.key == key


@pytest.mark.parametrize(
    ("templates", "behaviour", "outcome"),
    [
        ({}, "WHEN_NO_MATCH", Passthrough.AS_IS),
        ({}, "WHEN_NO_TEMPLATES", Passthrough.AS_IS),
        ({}, "NEVER", Passthrough.REJECT),
        ({"v2": "V2"}, "WHEN_NO_MATCH", Passthrough.AS_IS),
        ({"v2": "V2"}, "WHEN_NO_TEMPLATES", Passthrough.REJECT),
        ({"v2": "V2"}, "NEVER", Passthrough.REJECT),
    ],
)
def test_passthrough_behaviour_when_no_template_is_selected(
    templates: dict[str, str], behaviour: str, outcome: Passthrough
) -> None:
    parsed = parse_templates(templates, "I")
    selection = select_request_template(parsed, "${request.body.version}", '{"version":"v1"}', behaviour)
    assert selection.outcome is outcome


def test_integration_response_selection_by_error_message_or_status() -> None:
    default = ResponseMapping("$default", None, {})
    bad = ResponseMapping("/Bad.*/", None, {})
    client = ResponseMapping("/4\\d\\d/", None, {})
    responses = (default, bad, client)
    assert select_integration_response(responses, None) is default  # a Lambda that succeeded
    assert select_integration_response(responses, "Bad input: x") is bad
    assert select_integration_response(responses, "not Bad") is default  # the whole text must match
    assert select_integration_response(responses, "404") is client
    assert select_integration_response(responses, "200") is default
    assert select_integration_response((bad,), "other") is None


def test_response_template_selected_by_status_and_rendered_on_the_backend_body() -> None:
    response = ResponseMapping(
        "$default",
        "${integration.response.statuscode}",
        parse_templates({"200": "{\"ok\":$input.json('$.n')}", "$default": "failed"}, "R"),
    )
    values = RenderInput("", {"connectionId": "c"})
    assert render_response(response, '{"n":3}', 200, "{}", values) == '{"ok":3}'
    assert render_response(response, '{"n":3}', 400, "{}", values) == "failed"
    assert render_response(None, '{"n":3}', 200, "{}", values) == '{"n":3}'  # no template: as is
    assert selection_key("${integration.response.statuscode}", "{}", 201) == "201"


@pytest.mark.parametrize(
    ("rendered", "status"),
    [
        ('{"statusCode": 200}', 200),
        ('{ "statusCode" : 403, "other": 1 }', 403),
        (None, 200),  # no template: the default integration response
        ('{"statusCode": "200"}', None),
        ('{"statusCode":, "x": 1}', None),
        ("[200]", None),
        ('{"statusCode": 99}', None),
    ],
)
def test_a_mock_answers_with_its_rendered_status_code(rendered: str | None, status: int | None) -> None:
    assert mock_status(rendered) == status


def test_a_mock_status_selects_the_integration_response_by_regex() -> None:
    ok = ResponseMapping("/2\\d\\d/", None, {})
    denied = ResponseMapping("/403/", None, {})
    default = ResponseMapping("$default", None, {})
    responses = [ok, denied, default]
    assert select_integration_response(responses, str(mock_status('{"statusCode": 204}'))) is ok
    assert select_integration_response(responses, "403") is denied
    assert select_integration_response(responses, "500") is default
    assert select_integration_response([ok], "500") is None
