"""The guard recomputes SigV4 as AWS does: the query is decoded and encoded again before signing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config

from tidings.local.aws_guard import expected_signature, parse_signature

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
