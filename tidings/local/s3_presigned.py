"""S3's own checks of presigned requests and browser POST uploads, which moto does not make.

moto accepts a presigned URL whatever its signature or expiry, and a POST upload whatever its
policy. Real S3 refuses them, and an app's limits (a signed Content-Length, a POST policy's
`content-length-range`) rest on that. This module decides like S3 (pure: values in, a refusal
or None out); ``check_request` reads a WSGI request for the AWS endpoint's guard (`aws_guard.py`).

- Query-string SigV4 (`X-Amz-Signature` in the URL): algorithm, credential scope, `X-Amz-Expires`
  (at most 7 days), expiry against `X-Amz-Date`, every signed header present, and the
  signature itself, recomputed with botocore's S3 presign signer from the request as received.
- POST policy (multipart form with `policy`): the SigV4 signature of the policy document, its
  `expiration`, every condition (exact match, `eq`, `starts-with`, `content-length-range`) and
  no form field the policy does not cover.

Answers have S3's XML error shape and status (403 AccessDenied / SignatureDoesNotMatch,
400 EntityTooLarge / EntityTooSmall / AuthorizationQueryParametersError).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_EXPIRES_SECONDS = 7 * 24 * 60 * 60
CLOCK_SKEW = timedelta(minutes=15)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
# form fields a POST policy need not cover (S3's documentation)
_UNCOVERED_FIELDS = frozenset({"policy", "x-amz-signature", "file"})

SecretFor = Callable[[str], str | None]  # access key id -> secret key, None when unknown


@dataclass(frozen=True, slots=True)
class S3Refusal:
    status: int
    code: str
    message: str
    details: dict[str, str] = field(default_factory=dict)

    def xml(self) -> bytes:
        extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in self.details.items())
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message>{extra}</Error>"
        ).encode()


def _signature_mismatch() -> S3Refusal:
    return S3Refusal(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )


def _query_error(message: str) -> S3Refusal:
    return S3Refusal(400, "AuthorizationQueryParametersError", message)


def _amz_date(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        return None


def _scope(credential: str) -> tuple[str, str, str, str] | None:
    """access key, date, region and service of `AKID/20250101/us-east-1/s3/aws4_request`."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
        return None
    return parts[0], parts[1], parts[2], parts[3]


def is_presigned(raw_query: str) -> bool:
    return "X-Amz-Signature=" in raw_query or "x-amz-signature=" in raw_query.lower()


def check_presigned(
    method: str,
    url: str,
    headers: Mapping[str, str],
    secret_for: SecretFor,
    now: datetime,
) -> S3Refusal | None:
    """S3's verdict on a query-string SigV4 request; `url` as received (scheme, host, raw path, query)."""
    base, _, raw_query = url.partition("?")
    params = parse_qsl(raw_query, keep_blank_values=True)
    values = {k: v for k, v in params}
    if values.get("X-Amz-Algorithm") != ALGORITHM:
        return _query_error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    scope = _scope(values.get("X-Amz-Credential", ""))
    signed_at = _amz_date(values.get("X-Amz-Date", ""))
    signed_names = [h for h in values.get("X-Amz-SignedHeaders", "").split(";") if h]
    signature = values.get("X-Amz-Signature", "")
    try:
        expires = int(values.get("X-Amz-Expires", ""))
    except ValueError:
        return _query_error("X-Amz-Expires should be a number")
    if scope is None or signed_at is None or not signed_names or not signature:
        return _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
            "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    if not 0 < expires <= MAX_EXPIRES_SECONDS:
        return _query_error(
            "X-Amz-Expires must be less than a week (in seconds) that is, "
            "the given X-Amz-Expires must be less than 604800 seconds"
        )
    if scope[1] != signed_at.strftime("%Y%m%d"):
        return _query_error("Invalid credential date. Date is not the same as X-Amz-Date.")
    if now > signed_at + timedelta(seconds=expires):
        return S3Refusal(
            403,
            "AccessDenied",
            "Request has expired",
            {
                "X-Amz-Expires": str(expires),
                "Expires": (signed_at + timedelta(seconds=expires)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )
    if signed_at > now + CLOCK_SKEW:
        return S3Refusal(403, "AccessDenied", "Request is not valid yet")
    secret = secret_for(scope[0])
    if secret is None:
        return S3Refusal(
            403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        )
    lowered = {k.lower(): v for k, v in headers.items()}
    if "host" not in signed_names or any(name not in lowered for name in signed_names):
        return _signature_mismatch()
    unsigned = [(k, v) for k, v in params if k != "X-Amz-Signature"]  # repeated keys kept, in order
    unsigned_query = percent_encode_sequence(unsigned)  # type: ignore[arg-type]  # pairs are accepted
    request = AWSRequest(method=method.upper(), url=f"{base}?{unsigned_query}")
    for name in signed_names:
        request.headers[name] = lowered[name]
    request.context["timestamp"] = signed_at.strftime(_AMZ_DATE)
    signer = S3SigV4QueryAuth(Credentials(scope[0], secret), scope[3], scope[2], expires=expires)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        return _signature_mismatch()
    return None


# ---------------------------------------------------------------- POST policy


def _policy_failed(condition: Any) -> S3Refusal:
    return S3Refusal(
        403, "AccessDenied", f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}"
    )


def _invalid_condition(condition: Any) -> S3Refusal:
    return S3Refusal(
        400, "InvalidPolicyDocument", f"Invalid Policy: Invalid condition {json.dumps(condition)}"
    )


def _condition_field(name: Any) -> str | None:
    return name[1:].lower() if isinstance(name, str) and name.startswith("$") else None


def check_post_policy(
    bucket: str,
    fields: Mapping[str, str],
    file_size: int,
    secret_for: SecretFor,
    now: datetime,
) -> S3Refusal | None:
    """S3's verdict on a browser POST upload: `fields` are the form fields (not the file)."""
    form = {k.lower(): v for k, v in fields.items()}
    form.setdefault("bucket", bucket)
    policy_b64 = form.get("policy", "")
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
    except (binascii.Error, ValueError):
        return S3Refusal(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
    if not isinstance(policy, dict) or not isinstance(policy.get("conditions"), list):
        return S3Refusal(400, "InvalidPolicyDocument", "Invalid Policy: Policy missing conditions.")
    # the signature first: nothing else in an unsigned policy can be trusted
    if form.get("x-amz-algorithm") != ALGORITHM:
        return S3Refusal(400, "InvalidArgument", "POST requires x-amz-algorithm AWS4-HMAC-SHA256")
    scope = _scope(form.get("x-amz-credential", ""))
    signed_at = _amz_date(form.get("x-amz-date", ""))
    if scope is None or signed_at is None:
        return S3Refusal(400, "InvalidArgument", "POST requires x-amz-credential and x-amz-date")
    secret = secret_for(scope[0])
    if secret is None:
        return S3Refusal(
            403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        )
    signer = SigV4Auth(Credentials(scope[0], secret), scope[3], scope[2])
    request = AWSRequest(method="POST", url="https://s3.amazonaws.com/")
    request.context["timestamp"] = signed_at.strftime(_AMZ_DATE)
    if not hmac.compare_digest(signer.signature(policy_b64, request), form.get("x-amz-signature", "")):
        return _signature_mismatch()
    expiration = _iso_time(policy.get("expiration"))
    if expiration is None:
        return S3Refusal(400, "InvalidPolicyDocument", "Invalid Policy: Policy missing expiration.")
    if now > expiration:
        return S3Refusal(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    covered = set(_UNCOVERED_FIELDS)
    for condition in policy["conditions"]:
        refusal = _check_condition(condition, form, file_size, covered)
        if refusal is not None:
            return refusal
    extra = sorted(k for k in form if k not in covered and not k.startswith("x-ignore-") and k != "bucket")
    if extra:
        return S3Refusal(
            403, "AccessDenied", f"Invalid according to Policy: Extra input fields: {', '.join(extra)}"
        )
    return None


def _iso_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_condition(
    condition: Any, form: dict[str, str], file_size: int, covered: set[str]
) -> S3Refusal | None:
    if isinstance(condition, dict) and len(condition) == 1:
        [(name, expected)] = condition.items()
        covered.add(name.lower())
        return None if form.get(name.lower()) == expected else _policy_failed(["eq", f"${name}", expected])
    if not isinstance(condition, list) or len(condition) != 3:
        return _invalid_condition(condition)
    operator = str(condition[0]).lower()
    if operator == "content-length-range":
        low, high = int(condition[1]), int(condition[2])
        if file_size > high:
            return S3Refusal(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                {"ProposedSize": str(file_size), "MaxSizeAllowed": str(high)},
            )
        if file_size < low:
            return S3Refusal(
                400,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
                {"ProposedSize": str(file_size), "MinSizeAllowed": str(low)},
            )
        return None
    name = _condition_field(condition[1])
    if name is None or operator not in ("eq", "starts-with"):
        return _invalid_condition(condition)
    covered.add(name)
    value = form.get(name, "")
    expected = str(condition[2])
    matched = value == expected if operator == "eq" else value.startswith(expected)
    return None if matched else _policy_failed(condition)


# ---------------------------------------------------------------- on the AWS endpoint


@dataclass(frozen=True, slots=True)
class PostUpload:
    """A browser POST upload whose policy signature checked out: who signed it, and what it writes.

    S3 then authorizes the signer as for any other request: `s3:PutObject` on `bucket/key`
    (the form's `key`, with `${filename}` replaced by the file's name, as S3 does)."""

    access_key_id: str
    region: str
    bucket: str
    key: str
    security_token: str | None = None  # the form's, required of temporary credentials


@dataclass(frozen=True, slots=True)
class S3Verdict:
    """What S3 itself says of a request before anything else: refused, or (a browser POST
    upload, which carries no request signature) authenticated by its policy, whose signer's
    permissions are still to be checked."""

    refusal: S3Refusal | None
    authenticated_post: PostUpload | None = None


def check_request(
    environ: dict[str, Any], secret_for: SecretFor, now: datetime, *, max_form_bytes: int = 5 * 1024**3
) -> S3Verdict | None:
    """S3's checks of a WSGI request: a presigned URL, or a multipart POST upload with a policy.

    None: neither (other checks apply). A POST's body is read here and put back for the next
    reader. A CORS preflight carries no credentials: S3 answers it from the bucket's CORS rules.
    """
    query = str(environ.get("QUERY_STRING", ""))
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    if method == "OPTIONS":
        return None
    headers = _headers(environ)
    if is_presigned(query):
        host = headers.get("host", "")
        path = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{path.partition('?')[0]}?{query}"
        refusal = check_presigned(method, url, headers, secret_for, now)
        return S3Verdict(refusal) if refusal is not None else None
    if method == "POST" and headers.get("content-type", "").startswith("multipart/form-data") and not query:
        return _post_upload(environ, headers, secret_for, now, max_form_bytes)
    return None


def _post_upload(
    environ: dict[str, Any], headers: Mapping[str, str], secret_for: SecretFor, now: datetime, limit: int
) -> S3Verdict | None:
    from werkzeug.formparser import parse_form_data

    length = int(headers.get("content-length") or 0)
    if length > limit:
        return S3Verdict(
            S3Refusal(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        )
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    _, form, files = parse_form_data(dict(environ, **{"wsgi.input": io.BytesIO(raw)}))
    if "policy" not in form:
        return None  # not a browser upload
    upload = files.get("file")
    size = 0
    if upload is not None:
        upload.stream.seek(0, io.SEEK_END)
        size = upload.stream.tell()
    bucket = str(environ.get("PATH_INFO", "/")).strip("/").split("/", 1)[0]
    if not bucket:  # virtual-hosted style: bucket.s3...
        bucket = headers.get("host", "").split(".", 1)[0]
    refusal = check_post_policy(bucket, dict(form.items()), size, secret_for, now)
    fields = {k.lower(): v for k, v in form.items()}
    scope = _scope(fields.get("x-amz-credential", ""))
    if refusal is not None or scope is None:  # (check_post_policy refuses a POST without a scope)
        return S3Verdict(refusal)
    filename = upload.filename if upload is not None and upload.filename else ""
    key = fields.get("key", "").replace("${filename}", filename)
    return S3Verdict(None, PostUpload(scope[0], scope[2], bucket, key, fields.get("x-amz-security-token")))


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers
