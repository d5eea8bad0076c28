"""The guard recomputes SigV4 as AWS does: the query is decoded and encoded again before signing."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.local.aws_guard import (
    Signature,
    _botocore_signature,
    _direct_shape,
    _direct_signature,
    expected_signature,
    parse_signature,
)

KEY, SECRET = "AKIAEXAMPLEEXAMPLE00", "s" * 40


def presigned(**params: str) -> str:
    s3 = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:4566",
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3v4"),
    )
    url: str = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "media", "Key": "u/a b.mp4", **params}
    )
    return url


def recomputed(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    signature = parse_signature({"host": parts.netloc}, query)
    assert signature is not None and signature.presigned
    expected = expected_signature(
        signature, SECRET, "PUT", parts.path, parts.query, {"host": parts.netloc}, "UNSIGNED-PAYLOAD"
    )
    return expected, signature.signature


def test_a_presigned_url_verifies_as_sent() -> None:
    expected, sent = recomputed(presigned())
    assert expected == sent


def test_a_client_that_unescapes_slashes_in_the_query_still_verifies() -> None:
    url = presigned()
    assert "%2F" in url  # X-Amz-Credential's scope
    expected, sent = recomputed(url.replace("%2F", "/"))  # what aiohttp (yarl) sends
    assert expected == sent


def test_a_changed_query_value_does_not_verify() -> None:
    url = presigned()
    expected, sent = recomputed(url.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200"))
    assert expected != sent


# --- the direct computation of the commonest shape, against botocore's --------------------------

_PATH_SEGMENTS = st.text(alphabet="abcAZ09-_.~%20+=@:!$' é/", max_size=12)
_HEADER_VALUES = st.text(alphabet="abc 019\t-=/:;,.", max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["POST", "GET", "DELETE", "put"]),
    segments=st.lists(_PATH_SEGMENTS, max_size=5),
    extra=st.dictionaries(
        st.sampled_from(["content-type", "x-amz-target", "user-agent", "x-b"]), _HEADER_VALUES
    ),
    unsigned_missing=st.booleans(),
    service=st.sampled_from(["execute-api", "dynamodb", "sqs"]),
)
def test_the_direct_signature_is_botocores_for_header_signed_requests_without_a_query(
    method: str, segments: list[str], extra: dict[str, str], unsigned_missing: bool, service: str
) -> None:
    raw_path = "/" + "/".join(segments)
    headers = {"host": "127.0.0.1:3000", "x-amz-date": "20261202T101500Z", **extra}
    names = tuple(sorted(headers, reverse=True))  # any order the client chose
    if unsigned_missing:
        names += ("x-not-sent",)  # a signed header the request lacks signs as empty
    signature = Signature(
        KEY, "20261202", "eu-west-1", service, names, "", "20261202T101500Z", presigned=False
    )
    payload = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert _direct_shape(signature, raw_path, "", headers)
    direct = _direct_signature(signature, SECRET, method, raw_path, headers, payload)
    assert direct == _botocore_signature(signature, SECRET, method, raw_path, "", headers, payload)


def test_other_shapes_go_to_botocore_and_a_boto3_request_verifies_either_way() -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:4566/",
        data=b'{"TableName":"t"}',
        headers={"X-Amz-Target": "DynamoDB_20120810.Query", "Content-Type": "application/x-amz-json-1.0"},
    )
    SigV4Auth(Credentials(KEY, SECRET), "dynamodb", "us-east-1").add_auth(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = "127.0.0.1:4566"
    signature = parse_signature(headers, {})
    assert signature is not None and _direct_shape(signature, "/", "", headers)
    payload = hashlib.sha256(b'{"TableName":"t"}').hexdigest()
    assert expected_signature(signature, SECRET, "POST", "/", "", headers, payload) == signature.signature
    assert expected_signature(signature, "x" * 40, "POST", "/", "", headers, payload) != signature.signature
    # a query, S3, a presigned URL or an empty payload-hash header: botocore's own path
    assert not _direct_shape(signature, "/", "a=1", headers)
    assert not _direct_shape(replace(signature, service="s3"), "/", "", headers)
    assert not _direct_shape(replace(signature, presigned=True), "/", "", headers)
    assert not _direct_shape(signature, "/", "", headers | {"x-amz-content-sha256": ""})
    assert not _direct_shape(replace(signature, signed_headers=("host", "host")), "/", "", headers)
    assert not _direct_shape(replace(signature, signed_headers=("Host",)), "/", "", headers)
