"""s3_presigned.py: S3's checks of presigned URLs and POST policies, fed with what botocore signs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
import pytest
from botocore.config import Config

from tidings.local.s3_presigned import check_post_policy, check_presigned

KEY_ID, SECRET = "AKIDLOCAL", "local-secret"
ENDPOINT = "http://127.0.0.1:4566"


def secret_for(key: str) -> str | None:
    return SECRET if key == KEY_ID else None


def s3(secret: str = SECRET) -> Any:
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=ENDPOINT,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def presigned_put(size: int = 1000, expires: int = 900, **client: Any) -> tuple[str, dict[str, str]]:
    url = s3(**client).generate_presigned_url(
        "put_object",
        Params={"Bucket": "in", "Key": "uploads/u/j/clip.mp4", "ContentType": "video/mp4",
                "ContentLength": size, "IfNoneMatch": "*"},
        ExpiresIn=expires,
    )  # fmt: skip
    headers = {"Host": "127.0.0.1:4566", "Content-Type": "video/mp4", "Content-Length": str(size)}
    return url, headers | {"If-None-Match": "*"}


def now() -> datetime:
    return datetime.now(tz=UTC)


def test_a_presigned_put_as_signed_passes() -> None:
    url, headers = presigned_put()
    assert check_presigned("PUT", url, headers, secret_for, now()) is None


def test_another_size_than_the_signed_one_is_signature_does_not_match() -> None:
    url, headers = presigned_put(size=1000)
    refusal = check_presigned("PUT", url, headers | {"Content-Length": "2147483649"}, secret_for, now())
    assert refusal is not None and (refusal.status, refusal.code) == (403, "SignatureDoesNotMatch")
    assert b"<Code>SignatureDoesNotMatch</Code>" in refusal.xml()


def test_a_missing_signed_header_is_refused() -> None:
    url, headers = presigned_put()
    del headers["If-None-Match"]  # the overwrite guard cannot be left out
    refusal = check_presigned("PUT", url, headers, secret_for, now())
    assert refusal is not None and refusal.code == "SignatureDoesNotMatch"


def test_an_expired_url_is_access_denied_with_s3s_details() -> None:
    url, headers = presigned_put(expires=900)
    refusal = check_presigned("PUT", url, headers, secret_for, now() + timedelta(seconds=901))
    assert refusal is not None and (refusal.status, refusal.code) == (403, "AccessDenied")
    assert refusal.message == "Request has expired"
    assert refusal.details["X-Amz-Expires"] == "900" and "ServerTime" in refusal.details
    assert check_presigned("PUT", url, headers, secret_for, now() + timedelta(seconds=890)) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda q: q | {"X-Amz-Expires": "3600"},  # a longer life
        lambda q: q | {"X-Amz-Signature": "0" * 64},
        lambda q: q | {"X-Amz-SignedHeaders": "host"},  # dropping the signed size
        lambda q: q | {"X-Amz-Date": (now() - timedelta(minutes=1)).strftime("%Y%m%dT%H%M%SZ")},
    ],
)
def test_a_tampered_query_is_refused(tamper: Any) -> None:
    url, headers = presigned_put()
    parts = urlsplit(url)
    query = tamper(dict(parse_qsl(parts.query)))
    refusal = check_presigned("PUT", f"{ENDPOINT}{parts.path}?{urlencode(query)}", headers, secret_for, now())
    assert refusal is not None and refusal.status == 403


def test_another_key_path_method_or_secret_is_refused() -> None:
    url, headers = presigned_put()
    assert (
        check_presigned("PUT", url.replace("clip.mp4", "other.mp4"), headers, secret_for, now()) is not None
    )
    assert check_presigned("DELETE", url, headers, secret_for, now()) is not None
    forged, forged_headers = presigned_put(secret="guessed")
    refusal = check_presigned("PUT", forged, forged_headers, secret_for, now())
    assert refusal is not None and refusal.code == "SignatureDoesNotMatch"
    unknown = url.replace(KEY_ID, "AKIDOTHER")
    refusal = check_presigned("PUT", unknown, headers, secret_for, now())
    assert refusal is not None and refusal.code == "InvalidAccessKeyId"


def test_more_than_a_week_is_an_authorization_query_error() -> None:
    url, headers = presigned_put()
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | {"X-Amz-Expires": str(8 * 24 * 3600)}
    refusal = check_presigned("PUT", f"{ENDPOINT}{parts.path}?{urlencode(query)}", headers, secret_for, now())
    assert refusal is not None and (refusal.status, refusal.code) == (
        400,
        "AuthorizationQueryParametersError",
    )


# ---------------------------------------------------------------- POST policy


def presigned_post(max_size: int = 1000, expires: int = 900, **client: Any) -> dict[str, str]:
    post = s3(**client).generate_presigned_post(
        "in",
        "uploads/u/j/clip.mp4",
        Fields={"Content-Type": "video/mp4"},
        Conditions=[{"Content-Type": "video/mp4"}, ["content-length-range", 1, max_size]],
        ExpiresIn=expires,
    )
    fields: dict[str, str] = post["fields"]
    return fields


def test_a_post_within_its_policy_passes() -> None:
    assert check_post_policy("in", presigned_post(), 1000, secret_for, now()) is None


def test_an_oversize_post_is_entity_too_large() -> None:
    refusal = check_post_policy("in", presigned_post(max_size=1000), 1001, secret_for, now())
    assert refusal is not None and (refusal.status, refusal.code) == (400, "EntityTooLarge")
    assert refusal.details == {"ProposedSize": "1001", "MaxSizeAllowed": "1000"}
    empty = check_post_policy("in", presigned_post(), 0, secret_for, now())
    assert empty is not None and empty.code == "EntityTooSmall"


def test_an_expired_policy_is_access_denied() -> None:
    refusal = check_post_policy(
        "in", presigned_post(expires=60), 10, secret_for, now() + timedelta(seconds=61)
    )
    assert refusal is not None and (refusal.status, refusal.code) == (403, "AccessDenied")
    assert refusal.message == "Invalid according to Policy: Policy expired."


def test_a_tampered_post_is_refused() -> None:
    fields = presigned_post()
    other_key = check_post_policy("in", fields | {"key": "uploads/u/other.mp4"}, 10, secret_for, now())
    assert other_key is not None and "Policy Condition failed" in other_key.message
    other_type = check_post_policy("in", fields | {"Content-Type": "text/html"}, 10, secret_for, now())
    assert other_type is not None and other_type.code == "AccessDenied"
    extra = check_post_policy("in", fields | {"acl": "public-read"}, 10, secret_for, now())
    assert extra is not None and "Extra input fields: acl" in extra.message
    forged = presigned_post(max_size=10**12, secret="guessed")
    refusal = check_post_policy("in", forged, 10, secret_for, now())
    assert refusal is not None and refusal.code == "SignatureDoesNotMatch"
    wrong_bucket = check_post_policy("other-bucket", fields, 10, secret_for, now())
    assert wrong_bucket is not None and wrong_bucket.code == "AccessDenied"
