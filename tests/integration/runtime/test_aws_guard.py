"""The embedded AWS endpoint answers only this run's signed keys, and no other web origin."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from urllib.error import HTTPError

import boto3
import pytest
from botocore.exceptions import ClientError

from tidings.local.aws import AwsServices


@pytest.fixture
def aws() -> Iterator[AwsServices]:
    services = AwsServices(port=0)
    services.start_server()
    yield services
    services.stop()


def request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    prepared = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310 - local
    try:
        with urllib.request.urlopen(prepared) as reply:  # noqa: S310 - the endpoint on 127.0.0.1
            return reply.status, dict(reply.headers)
    except HTTPError as error:
        return error.code, dict(error.headers)


def test_well_known_keys_and_wrong_secrets_are_refused(aws: AwsServices) -> None:
    local = boto3.client(
        "secretsmanager", endpoint_url=aws.endpoint, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    with pytest.raises(ClientError) as unknown:
        local.list_secrets()
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"
    forged = boto3.client(
        "dynamodb", endpoint_url=aws.endpoint, region_name="us-east-1",
        aws_access_key_id=aws.credentials.admin.access_key_id, aws_secret_access_key="x" * 40,
    )  # fmt: skip
    with pytest.raises(ClientError) as bad:
        forged.list_tables()
    assert bad.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert aws.client("dynamodb").list_tables()["TableNames"] == []  # the admin key works


def test_no_cross_origin_reads_and_no_browser_reaches_moto_api(aws: AwsServices) -> None:
    status, headers = request(aws.endpoint + "/", "OPTIONS", {"Origin": "http://evil.test",
                              "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert status == 403 and not any(k.lower().startswith("access-control-") for k in headers)
    status, headers = request(aws.endpoint + "/moto-api/data.json", headers={"Origin": "http://evil.test"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, _ = request(aws.endpoint + "/moto-api/reset", "POST", {"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    status, _ = request(aws.endpoint + "/moto-api/data.json")  # unsigned, from anywhere
    assert status == 403
