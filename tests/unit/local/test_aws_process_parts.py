"""The pure parts of the AWS process's seams: which requests go to the stack's interceptors, and
the SigV4 pieces the guard computes itself (the date, the cached signing key)."""

from __future__ import annotations

import datetime
import threading

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from tidings.local.aws import LAMBDA_INVOKE, STEP_FUNCTIONS_API
from tidings.local.aws_guard import amz_datetime, signing_key
from tidings.local.aws_process import InterceptMatch, Link, LinkClosed


@pytest.mark.parametrize(
    ("match", "environ", "taken"),
    [
        (LAMBDA_INVOKE, {"PATH_INFO": "/2015-03-31/functions/f/invocations"}, True),
        (LAMBDA_INVOKE, {"PATH_INFO": "/2015-03-31/functionsx"}, False),
        (
            STEP_FUNCTIONS_API,
            {"PATH_INFO": "/", "HTTP_X_AMZ_TARGET": "AWSStepFunctions.StartExecution"},
            True,
        ),
        (STEP_FUNCTIONS_API, {"PATH_INFO": "/", "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.Query"}, False),
        (STEP_FUNCTIONS_API, {"PATH_INFO": "/"}, False),
        (
            InterceptMatch(path_prefix="/a", target_prefix="T."),
            {"PATH_INFO": "/a", "HTTP_X_AMZ_TARGET": "T.x"},
            True,
        ),
        (
            InterceptMatch(path_prefix="/a", target_prefix="T."),
            {"PATH_INFO": "/b", "HTTP_X_AMZ_TARGET": "T.x"},
            False,
        ),
    ],
)
def test_intercept_match(match: InterceptMatch, environ: dict[str, str], taken: bool) -> None:
    assert match.matches(environ) is taken


def test_amz_date_is_read_strictly() -> None:
    assert amz_datetime("20261202T101500Z") == datetime.datetime(2026, 12, 2, 10, 15, tzinfo=datetime.UTC)
    arabic_indic_year = "\u0662\u0660\u0662\u0666"
    bad = ("20261302T101500Z", "2026120T101500Z", "20261202T101500Zx", f"{arabic_indic_year}1202T101500Z")
    for text in bad:
        assert amz_datetime(text) is None, text


def test_the_cached_signing_key_signs_as_botocore_does() -> None:
    request = AWSRequest(method="POST", url="http://127.0.0.1:1/dev/%40connections/x", data=b"{}")
    request.context["timestamp"] = "20261202T101500Z"
    auth = SigV4Auth(BotoCredentials("AKIA", "secret"), "execute-api", "eu-west-1")
    string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    expected = auth.signature(string_to_sign, request)
    import hashlib
    import hmac

    key = signing_key("secret", "20261202", "eu-west-1", "execute-api")
    assert hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest() == expected
    assert signing_key("secret", "20261203", "eu-west-1", "execute-api") != key


def test_a_link_answers_calls_in_order_and_fails_them_once_closed() -> None:
    from multiprocessing import Pipe

    ours, theirs = Pipe(duplex=True)
    seen: list[int] = []
    gone = threading.Event()
    stack = Link(ours, {"twice": lambda n: 2 * n, "note": seen.append}, on_closed=gone.set)
    child = Link(theirs, {})
    stack.start()
    child.start()
    child.post("note", 1)
    assert child.call("twice", 21, timeout_s=10) == 42  # after the notice: one pipe, in order
    assert seen == [1]
    with pytest.raises(RuntimeError, match="KeyError"):  # an unknown kind is the caller's error
        child.call("unknown", timeout_s=10)
    child.close()
    assert gone.wait(10)  # the other side hears of it (the AWS process stops on that)
    with pytest.raises(LinkClosed):
        child.call("twice", 1, timeout_s=10)
