"""The embedded S3 checks presigned URLs and POST policies as S3 does (moto alone checks neither).

Against the local stack's AWS endpoint on a free port: an upload of another size than signed,
an expired URL, a tampered one and an oversize POST are refused with S3's error, and the
signed `If-None-Match: *` makes a second PUT fail (412).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from tidings.local.aws import AwsServices
from tidings.local.aws_guard import Denial
from tidings.local.iam import Principal, parse_document

BUCKET = "upload-rules"


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsServices]:
    services = AwsServices(port=0)
    services.start_server()
    services.client("s3").create_bucket(Bucket=BUCKET)
    yield services
    services.stop()


def signer(aws: AwsServices) -> Any:
    """A client with a key of this run (the guard refuses any other), as the uploads function has."""
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=aws.endpoint,
        config=Config(signature_version="s3v4"),
        **aws.credentials.admin.boto(),
    )


def presigned_put(aws: AwsServices, key: str, size: int, expires: int = 900) -> str:
    url: str = signer(aws).generate_presigned_url(
        "put_object",
        Params={
            "Bucket": BUCKET,
            "Key": key,
            "ContentType": "video/mp4",
            "ContentLength": size,
            "IfNoneMatch": "*",
        },
        ExpiresIn=expires,
    )
    return url


HEADERS = {"Content-Type": "video/mp4", "If-None-Match": "*"}


def error_code(response: requests.Response) -> str:
    match = re.search(r"<Code>([^<]+)</Code>", response.text)
    return match.group(1) if match else ""


def test_the_signed_size_is_enforced(aws: AwsServices) -> None:
    url = presigned_put(aws, "uploads/a/1/clip.mp4", size=10)
    bigger = requests.put(url, data=b"x" * 11, headers=HEADERS, timeout=10)
    assert bigger.status_code == 403 and error_code(bigger) == "SignatureDoesNotMatch"
    ok = requests.put(url, data=b"x" * 10, headers=HEADERS, timeout=10)
    assert ok.status_code == 200
    again = requests.put(url, data=b"y" * 10, headers=HEADERS, timeout=10)
    assert again.status_code == 412  # one upload per key: the job's object stays
    body = aws.client("s3").get_object(Bucket=BUCKET, Key="uploads/a/1/clip.mp4")["Body"].read()
    assert body == b"x" * 10


def test_an_expired_url_is_refused(aws: AwsServices) -> None:
    url = presigned_put(aws, "uploads/a/2/clip.mp4", size=3, expires=1)
    time.sleep(2.1)
    expired = requests.put(url, data=b"abc", headers=HEADERS, timeout=10)
    assert expired.status_code == 403 and error_code(expired) == "AccessDenied"
    assert "Request has expired" in expired.text  # S3's words, not a signature mismatch
    assert "<X-Amz-Expires>1</X-Amz-Expires>" in expired.text


def test_a_tampered_url_is_refused(aws: AwsServices) -> None:
    url = presigned_put(aws, "uploads/a/3/clip.mp4", size=3)
    for tampered in (
        url.replace("uploads/a/3/", "uploads/b/3/"),
        url.replace("X-Amz-Expires=900", "X-Amz-Expires=9000"),
    ):
        refused = requests.put(tampered, data=b"abc", headers=HEADERS, timeout=10)
        assert refused.status_code == 403 and error_code(refused) == "SignatureDoesNotMatch"
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="uploads/b/")


def test_an_oversize_post_upload_is_entity_too_large(aws: AwsServices) -> None:
    post = signer(aws).generate_presigned_post(
        BUCKET, "uploads/a/4/clip.mp4", Conditions=[["content-length-range", 1, 5]], ExpiresIn=60
    )
    big = requests.post(post["url"], data=post["fields"], files={"file": ("clip.mp4", b"123456")}, timeout=10)
    assert big.status_code == 400 and error_code(big) == "EntityTooLarge"
    assert "<MaxSizeAllowed>5</MaxSizeAllowed>" in big.text
    small = requests.post(
        post["url"], data=post["fields"], files={"file": ("clip.mp4", b"12345")}, timeout=10
    )
    assert small.status_code in (200, 204)
    assert aws.client("s3").head_object(Bucket=BUCKET, Key="uploads/a/4/clip.mp4")["ContentLength"] == 5


def test_a_cors_preflight_of_a_presigned_url_is_not_a_signed_request(aws: AwsServices) -> None:
    """Browsers send OPTIONS to the presigned URL first, without its headers: S3 answers it from
    the bucket's CORS rules, never with a signature error."""
    aws.client("s3").put_bucket_cors(
        Bucket=BUCKET,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedMethods": ["PUT"],
                    "AllowedOrigins": ["http://127.0.0.1:3000"],
                    "AllowedHeaders": ["content-type", "if-none-match"],
                }
            ]
        },
    )
    url = presigned_put(aws, "uploads/a/5/clip.mp4", size=3)
    preflight = requests.options(
        url,
        headers={
            "Origin": "http://127.0.0.1:3000",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,if-none-match",
        },
        timeout=10,
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"


def test_a_post_upload_needs_its_signers_put_object(aws: AwsServices) -> None:
    """S3 authenticates and authorizes the key that signed a POST policy as for any signed request:
    a function role without `s3:PutObject` on the key gets 403 AccessDenied, nothing is stored, and
    the denial is reported like any other (`on_denied`); a role key without its session token is
    refused."""
    denials: list[Denial] = []
    guarded = AwsServices(port=0, on_denied=denials.append)
    guarded.start_server()
    try:
        guarded.client("s3").create_bucket(Bucket=BUCKET)
        role = "arn:aws:iam::123456789012:role/app-UploadsRole-1"
        allowed = {
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/uploads/*",
        }
        document = {"Version": "2012-10-17", "Statement": [allowed]}
        keys = guarded.credentials.issue_role(
            "UploadsFunction", Principal(role, "UploadsFunction", parse_document(document, "inline"))
        )
        client = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=guarded.endpoint,
            config=Config(signature_version="s3v4"),
            **keys.boto(),
        )

        def post(key: str) -> requests.Response:
            form = client.generate_presigned_post(BUCKET, key, ExpiresIn=60)
            return requests.post(
                form["url"], data=form["fields"], files={"file": ("a.mp4", b"abc")}, timeout=10
            )

        refused = post("elsewhere/a.mp4")
        assert refused.status_code == 403 and error_code(refused) == "AccessDenied", refused.text
        assert "s3:PutObject" in refused.text
        listed = guarded.client("s3").list_objects_v2(Bucket=BUCKET)
        assert "Contents" not in listed  # nothing stored
        assert [(d.caller, d.action, d.resource) for d in denials] == [
            ("UploadsFunction", "s3:PutObject", f"arn:aws:s3:::{BUCKET}/elsewhere/a.mp4")
        ]
        accepted = post("uploads/u/1/a.mp4")
        assert accepted.status_code in (200, 204), accepted.text
        stored = guarded.client("s3").get_object(Bucket=BUCKET, Key="uploads/u/1/a.mp4")["Body"].read()
        assert stored == b"abc"
        assert len(denials) == 1
        # the role's key and secret without its session token: a policy signed so is refused
        tokenless = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=guarded.endpoint,
            config=Config(signature_version="s3v4"),
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
        )
        form = tokenless.generate_presigned_post(BUCKET, "uploads/u/2/a.mp4", ExpiresIn=60)
        assert "x-amz-security-token" not in form["fields"]
        files = {"file": ("a.mp4", b"abc")}
        no_token = requests.post(form["url"], data=form["fields"], files=files, timeout=10)
        assert no_token.status_code == 400 and error_code(no_token) == "InvalidToken", no_token.text
        listed = guarded.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="uploads/u/2/")
        assert "Contents" not in listed
    finally:
        guarded.stop()
