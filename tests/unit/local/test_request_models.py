"""request_models.py: which model a message is checked against and whether API Gateway lets it through."""

from __future__ import annotations

import pytest

from tidings.local.request_models import ModelError, RequestModels, read_model, validate_request

ORDER = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "object",
    "properties": {"item": {"type": "string"}, "count": {"type": "integer", "minimum": 1}},
    "required": ["item", "count"],
}
ANY_OBJECT = {"type": "object"}


def models(**by_key: dict[str, object]) -> RequestModels:
    return RequestModels(
        "$request.body.action",
        {
            key.replace("default", "$default"): read_model(f"m_{key}", schema, "M")
            for key, schema in by_key.items()
        },
    )


def test_a_body_the_selected_model_accepts_goes_through() -> None:
    verdict = validate_request(models(order=ORDER), '{"action": "order", "item": "tea", "count": 2}')
    assert (verdict.valid, verdict.model) == (True, "m_order")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"action": "order", "item": "tea"}', "'count' is a required property"),
        ('{"action": "order", "item": "tea", "count": 0}', "count: 0 is less than the minimum of 1"),
        ('{"action": "order", "item": 5, "count": 1}', "item: 5 is not of type 'string'"),
    ],
)
def test_a_body_the_model_refuses_is_stopped_with_the_reason(body: str, reason: str) -> None:
    verdict = validate_request(models(order=ORDER), body)
    assert (verdict.valid, verdict.model, verdict.reason) == (False, "m_order", reason)


def test_no_matching_model_and_no_default_fails_but_a_default_model_takes_the_rest() -> None:
    body = '{"action": "other", "x": 1}'
    verdict = validate_request(models(order=ORDER), body)
    assert not verdict.valid and verdict.model is None and "no request model for 'other'" in verdict.reason
    assert validate_request(models(order=ORDER, default=ANY_OBJECT), body).model == "m_default"


def test_a_body_that_is_not_json_fails() -> None:
    verdict = validate_request(models(default=ANY_OBJECT), "hello")
    assert (verdict.valid, verdict.reason) == (False, "the body is not JSON")


def test_schemas_are_checked_as_draft_4_at_start_and_may_be_json_text() -> None:
    assert read_model("m", '{"type": "object"}', "Model").schema == {"type": "object"}
    with pytest.raises(ModelError, match=r"^Model\.Schema: not a valid draft-4 JSON schema: "):
        read_model("m", {"type": "objekt"}, "Model")
    with pytest.raises(ModelError, match=r"^Model\.Schema: not JSON"):
        read_model("m", "{", "Model")
