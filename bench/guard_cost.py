"""CPU cost of the embedded endpoint's guard per request: SigV4 recomputed, IAM evaluated.

    .venv/bin/python -m bench.guard_cost

300 signed DynamoDB Query requests per caller (the admin key: signature only; a role: signature
and IAM) through `AwsGuard` in front of an app that answers at once; medians. A forged secret
must be refused in the same run, or the figures mean nothing.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from tidings.local.aws_guard import AwsGuard, Credentials, RunCredentials
from tidings.local.iam import Principal, Statement

ACCOUNT = "123456789012"
TABLE = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/subs"
BODY = json.dumps(
    {
        "TableName": "subs",
        "KeyConditionExpression": "topic = :t",
        "ExpressionAttributeValues": {":t": {"S": "job:x"}},
    }
).encode()


def _answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
    return [b"{}"]


def signed_environ(credentials: Credentials) -> dict[str, Any]:
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:4566/",
        data=BODY,
        headers={
            "X-Amz-Target": "DynamoDB_20120810.Query",
            "Content-Type": "application/x-amz-json-1.0",
            "Host": "127.0.0.1:4566",
        },
    )
    keys = BotoCredentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    SigV4Auth(keys, "dynamodb", "us-east-1").add_auth(request)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "4566",
        "CONTENT_LENGTH": str(len(BODY)),
        "wsgi.input": io.BytesIO(BODY),
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": "127.0.0.1",
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    return environ


def main() -> None:
    run = RunCredentials()
    allowed = (Statement("Allow", ("dynamodb:Query",), (TABLE,)),)
    role = run.issue_role("Notify", Principal(f"arn:aws:iam::{ACCOUNT}:role/notify", "Notify", allowed))
    guard = AwsGuard(_answer, run, account=ACCOUNT, enforce_iam=True)
    statuses: list[str] = []

    def start_response(status: str, headers: Any, *args: Any) -> None:
        statuses.append(status)

    for label, credentials in (("admin (signature)", run.admin), ("role (signature + IAM)", role)):
        environs = [signed_environ(credentials) for _ in range(300)]
        spent = []
        for environ in environs:
            started = time.perf_counter()
            list(guard(environ, start_response))
            spent.append((time.perf_counter() - started) * 1000)
        print(f"{label}: {statistics.median(spent):.3f} ms per request (median of 300), last {statuses[-1]}")
    forged = Credentials(role.access_key_id, "x" * 40, role.session_token)
    list(guard(signed_environ(forged), start_response))
    print(f"forged secret: {statuses[-1]}")


if __name__ == "__main__":
    main()
