"""invocation_line.py: the terminal tells the truth about each invocation (issue 13, item 6)."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.local.invocation_line import outcome, output_summary, status_code, text_line
from tidings.local.model import Invocation


def invocation(ok: bool = True, result: Any = None, logs: str = "", **fields: Any) -> Invocation:
    return Invocation("r-1", "Fn", ok=ok, result=result, logs=logs, duration_ms=12.34, **fields)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"statusCode": 500, "body": "x"}, 500),
        ({"statusCode": "404"}, 404),
        ({"statusCode": True}, None),
        ({"body": "no status"}, None),
        ("text", None),
        (None, None),
    ],
)
def test_status_code_of_a_result(result: Any, expected: int | None) -> None:
    assert status_code(result) == expected


def test_outcomes() -> None:
    assert outcome(invocation(result={"statusCode": 200})).text == "ok"
    assert outcome(invocation(result={"statusCode": 399})).failed is False
    caught = outcome(invocation(result={"statusCode": 500, "body": "internal error"}))
    assert (caught.failed, caught.text, caught.status_code) == (True, "error status 500", 500)
    raised = outcome(invocation(ok=False, error_type="ValueError", error_message="no good"))
    assert (raised.failed, raised.text) == (True, "error ValueError: no good")


def test_output_is_collapsed_to_its_first_line_with_a_count() -> None:
    assert output_summary("") == ""
    assert output_summary("\n  \n") == ""
    assert output_summary("only line\n") == "only line"
    assert output_summary("\nfirst\nsecond\n") == "first (+1 line)"
    assert output_summary("a\nb\nc\n") == "a (+2 lines)"
    assert output_summary("x" * 30, width=10) == "x" * 9 + "…"


def test_text_line() -> None:
    caught = invocation(result={"statusCode": 502}, logs="caught: refused\nanswering 502\n", cold=True)
    line = text_line(caught, "Notify", "send", "12:00:00")
    assert line.startswith("12:00:00  Notify ")
    assert line.endswith("12.3 ms  cold  error status 502  | caught: refused (+1 line)")
    quiet = text_line(invocation(result={"ok": True}), "Notify", "", "12:00:00")
    assert quiet.endswith("warm  ok")
    assert " - " in quiet  # no trigger shows as '-'
