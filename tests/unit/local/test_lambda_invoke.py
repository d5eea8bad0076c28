"""lambda_invoke.py: Lambda's Invoke request and answer shapes, fed as values."""

from __future__ import annotations

import base64
import io
import json

import pytest

from tidings.local.lambda_invoke import invocation_response, parse_request, target_arn
from tidings.local.model import Invocation

ARN = "arn:aws:lambda:us-east-1:123456789012:function:worker"


@pytest.mark.parametrize(
    ("name", "qualifier", "expected"),
    [
        ("worker", None, (ARN, None)),
        ("worker:live", None, (ARN, "live")),
        ("worker", "3", (ARN, "3")),
        ("123456789012:function:worker", None, (ARN, None)),
        ("123456789012:function:worker:$LATEST", None, (ARN, "$LATEST")),
        (ARN, None, (ARN, None)),
        (f"{ARN}:7", None, (ARN, "7")),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:worker",
            None,
            (ARN.replace("us-east-1", "eu-west-1"), None),
        ),
    ],
)
def test_function_name_forms(name: str, qualifier: str | None, expected: tuple[str, str | None]) -> None:
    assert target_arn(name, qualifier, "us-east-1") == expected


def test_parse_request() -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/2015-03-31/functions/{ARN.replace(':', '%3A')}/invocations",
        "QUERY_STRING": "Qualifier=live",
        "HTTP_X_AMZ_INVOCATION_TYPE": "Event",
        "HTTP_X_AMZ_LOG_TYPE": "Tail",
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=local/20260101/eu-west-1/lambda/aws4_request, ...",
        "wsgi.input": io.BytesIO(b"{}"),
    }
    request = parse_request(environ)
    assert request is not None
    assert (request.function_name, request.invocation_type, request.qualifier) == (ARN, "Event", "live")
    assert (request.log_tail, request.region) == (True, "eu-west-1")
    assert parse_request({**environ, "REQUEST_METHOD": "GET"}) is None
    assert parse_request({**environ, "PATH_INFO": "/2015-03-31/functions/worker"}) is None


def test_answers() -> None:
    ok = invocation_response(
        Invocation("r-1", "Fn", ok=True, result={"a": 1}, logs="hello\n"), "$LATEST", True
    )
    assert ok.status == 200 and json.loads(ok.body) == {"a": 1}
    assert ok.headers["X-Amz-Executed-Version"] == "$LATEST"
    assert "X-Amz-Function-Error" not in ok.headers
    assert base64.b64decode(ok.headers["X-Amz-Log-Result"]) == b"hello\n"
    failed = invocation_response(
        Invocation(
            "r-2", "Fn", ok=False, error_type="KeyError", error_message="'x'", traceback="line 1\nline 2\n"
        ),
        "$LATEST",
        False,
    )
    assert failed.status == 200 and failed.headers["X-Amz-Function-Error"] == "Unhandled"
    assert json.loads(failed.body) == {
        "errorMessage": "'x'",
        "errorType": "KeyError",
        "requestId": "r-2",
        "stackTrace": ["line 1", "line 2"],
    }
    assert "X-Amz-Log-Result" not in failed.headers
