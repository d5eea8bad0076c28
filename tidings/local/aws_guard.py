"""Who may call the embedded AWS services, and what: SigV4 signatures and IAM, as AWS checks them.

Each run generates its credentials: one admin key (the CLI, the tests, the console and the stack's
own components; written only to the 0600 state file), one key per function (its workers'
`AWS_ACCESS_KEY_ID`/`SECRET`/`SESSION_TOKEN`, so each call is its execution role's) and one per
EventBridge rule (the service principal `events.amazonaws.com` sending to a rule's dead-letter
queue, which the queue's resource policy must allow). `AwsGuard` wraps moto's WSGI app:

- a request must carry a SigV4 signature (header or presigned query) by a key of this run, and
  the signature is recomputed with botocore's signer; otherwise the service's AWS error;
- a role's request is evaluated with `iam.py` for each check `iam_requests.py` derives; refused
  calls get the service's AccessDenied shape and are reported to `on_denied`;
- no cross-origin access: CORS answers come only from an S3 bucket's own CORS rules, preflights
  elsewhere are refused, and `/moto-api/` (moto's dashboard, reset, data dump) answers only the
  admin key, never a browser.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import string
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote

from tidings.local import s3_presigned
from tidings.local.iam import Principal, Statement, context_of, denial_message, evaluate, short_resource
from tidings.local.iam_requests import AwsRequest, Check, Names, checks, s3_location
from tidings.local.model import ACCOUNT_ID as ACCOUNT

log = logging.getLogger(__name__)

SIGNATURE_MAX_SKEW = datetime.timedelta(minutes=15)
# services whose errors are XML in S3's shape, and query-protocol services (XML ErrorResponse)
_QUERY_SERVICES = {
    "sns",
    "sts",
    "iam",
    "cloudformation",
    "ses",
    "email",
    "monitoring",
    "elasticloadbalancing",
}
_JSON_ERROR_SERVICES_400 = True


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def boto(self) -> dict[str, str]:
        """Keyword arguments for boto3.client / Session."""
        out = {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}
        if self.session_token:
            out["aws_session_token"] = self.session_token
        return out

    def environment(self) -> dict[str, str]:
        """The variables Lambda gives a function (its role's temporary credentials)."""
        out = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            out["AWS_SESSION_TOKEN"] = self.session_token
        return out


@dataclass(frozen=True)
class Caller:
    """Whom a key belongs to: the run's admin, a role session, or a service principal."""

    kind: str  # "admin" | "role" | "service"
    label: str  # function / state machine logical id, or the service principal
    principal: Principal | None = None  # kind "role"
    source_arn: str = ""  # kind "service": the resource on whose behalf it calls (a rule ARN)
    resource_policies: Mapping[str, tuple[Statement, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Denial:
    caller: str  # the function's logical id
    principal_arn: str
    action: str
    resource: str
    message: str  # AWS's message

    def line(self) -> str:
        """The terminal / console line, with what would allow the call."""
        return (
            f"{self.caller}: {self.action} on {short_resource(self.resource)} denied "
            "— add it to the function's Policies"
        )


class PendingDenials:
    """Refused calls by function, until that function's next invocation takes them.

    The AWS endpoint reports on its own threads (the management API on the event loop); an
    invocation ends on the event loop, after the calls it made.
    """

    def __init__(self, limit: int = 20) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[Denial]] = {}
        self.limit = limit

    def add(self, denial: Denial) -> None:
        with self._lock:
            pending = self._pending.setdefault(denial.caller, [])
            if len(pending) < self.limit and denial not in pending:
                pending.append(denial)

    def take(self, function_id: str) -> list[Denial]:
        with self._lock:
            return self._pending.pop(function_id, [])


def _key(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def _secret(length: int = 40) -> str:
    return secrets.token_urlsafe(length)[:length]


class KeyLookup(Protocol):
    """What the guard asks of the run's keys (`RunCredentials`, or the AWS process's copy)."""

    def lookup(self, access_key_id: str) -> tuple[Credentials, Caller] | None: ...


class RunCredentials:
    """The keys of one run, by access key id (thread-safe: moto serves on many threads).
    `on_change` listeners hear of each issued or revoked key, before the call returns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, tuple[Credentials, Caller]] = {}
        self._by_label: dict[str, Credentials] = {}
        self._listeners: list[Callable[[], None]] = []
        self.admin = self._issue(Caller("admin", "admin"), session=False)

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def table(self) -> dict[str, tuple[Credentials, Caller]]:
        """Every key of the run, by access key id (a copy)."""
        with self._lock:
            return dict(self._by_key)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _issue(self, caller: Caller, *, session: bool = True) -> Credentials:
        credentials = Credentials(
            _key("ASIA" if session else "AKIA"), _secret(), _secret(64) if session else None
        )
        with self._lock:
            self._by_key[credentials.access_key_id] = (credentials, caller)
            self._by_label[caller.label] = credentials
        self._changed()
        return credentials

    def issue_role(self, label: str, principal: Principal) -> Credentials:
        return self._issue(Caller("role", label, principal))

    def issue_service(
        self, service: str, source_arn: str, resource_policies: Mapping[str, tuple[Statement, ...]]
    ) -> Credentials:
        return self._issue(Caller("service", f"{service} {source_arn}", None, source_arn, resource_policies))

    def revoke(self, keys: Iterable[Credentials]) -> None:
        """Make these keys unknown (a reloaded template's functions got new ones)."""
        with self._lock:
            for credentials in keys:
                found = self._by_key.pop(credentials.access_key_id, None)
                if found is not None and self._by_label.get(found[1].label) == credentials:
                    del self._by_label[found[1].label]
        self._changed()

    def lookup(self, access_key_id: str) -> tuple[Credentials, Caller] | None:
        with self._lock:
            return self._by_key.get(access_key_id)

    def boto_credentials(self, label: str | None = None) -> dict[str, str]:
        """Credentials for boto3 as `label` (a function's logical id, `events.amazonaws.com <rule
        ARN>`); the admin's when None or unknown."""
        with self._lock:
            credentials = self._by_label.get(label) if label else None
        return (credentials or self.admin).boto()


# ---------------------------------------------------------------- SigV4
@dataclass(frozen=True)
class Signature:
    access_key_id: str
    date: str  # yyyymmdd of the scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    presigned: bool
    expires_s: int | None = None


def parse_signature(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> Signature | None:
    """The SigV4 parts of a request (Authorization header or presigned query); None if unsigned."""
    auth = headers.get("authorization", "")
    if auth.startswith("AWS4-HMAC-SHA256 "):
        parts = dict(
            item.strip().split("=", 1) for item in auth[len("AWS4-HMAC-SHA256 ") :].split(",") if "=" in item
        )
        credential = parts.get("Credential", "").split("/")
        if len(credential) != 5:
            return None
        return Signature(
            credential[0],
            credential[1],
            credential[2],
            credential[3],
            tuple(parts.get("SignedHeaders", "").split(";")),
            parts.get("Signature", ""),
            headers.get("x-amz-date", ""),
            presigned=False,
        )
    if query.get("X-Amz-Algorithm") == ["AWS4-HMAC-SHA256"]:
        credential = query.get("X-Amz-Credential", [""])[0].split("/")
        if len(credential) != 5:
            return None
        expires = query.get("X-Amz-Expires", [""])[0]
        return Signature(
            credential[0],
            credential[1],
            credential[2],
            credential[3],
            tuple(query.get("X-Amz-SignedHeaders", [""])[0].split(";")),
            query.get("X-Amz-Signature", [""])[0],
            query.get("X-Amz-Date", [""])[0],
            presigned=True,
            expires_s=int(expires) if expires.isdigit() else None,
        )
    return None


def canonical_query_pair(pair: str) -> str:
    """`name=value` as SigV4 encodes it, whatever escaping the client's HTTP library chose.

    AWS decodes the query and encodes each name and value again (RFC 3986 unreserved characters
    kept); clients differ (aiohttp/yarl sends `%2F` as `/`), so the raw text cannot be signed as-is.
    """
    name, equals, value = pair.partition("=")
    encode = functools.partial(quote, safe="-_.~")
    return f"{encode(unquote(name))}={encode(unquote(value))}" if equals else f"{encode(unquote(name))}="


_SIGNED = "tidings_signed"  # AWSRequest.context: (signed header names, the headers as sent, payload hash)


@functools.cache
def _recompute(s3: bool) -> Any:
    """botocore's signer (S3's for S3) given back what the client chose: its signed header list,
    its payload hash (from the request's context). Made once: a class per request cost 10% of it."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest, HTTPHeaders

    base: type[SigV4Auth] = S3SigV4Auth if s3 else SigV4Auth

    class _Recompute(base):  # type: ignore[valid-type,misc]
        def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
            signed, headers, _ = request.context[_SIGNED]
            chosen = HTTPHeaders()
            for name in signed:
                chosen[name] = headers.get(name, "")
            return chosen

        def payload(self, request: AWSRequest) -> str:
            payload_hash: str = request.context[_SIGNED][2]
            return payload_hash

        def signature(self, string_to_sign: str, request: AWSRequest) -> str:
            # botocore's, with the signing key derived once per key, day, region and service
            key = signing_key(
                self.credentials.secret_key,
                request.context["timestamp"][0:8],
                self._region_name,
                self._service_name,
            )
            return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()

    return _Recompute


@functools.lru_cache(maxsize=512)
def signing_key(secret_access_key: str, day: str, region: str, service: str) -> bytes:
    """SigV4's signing key (AWS's derivation: HMAC chain over day, region, service,
    `aws4_request`), which AWS suggests caching: the same for every request of a key on a day.
    Four of the five HMACs of each check; only keys the run still knows are looked up."""
    key = f"AWS4{secret_access_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def expected_signature(
    signature: Signature,
    secret_access_key: str,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    payload_hash: str,
) -> str:
    """The signature botocore's signer computes for this request with this secret.

    botocore's SigV4Auth builds the canonical request and string to sign; only what the client
    chose is given back to it (its signed header list, its payload hash, its timestamp). The
    commonest shape (a header-signed request without a query to a service other than S3: every
    `@connections` post, every DynamoDB call) is computed by `_direct_signature` instead, to the
    same result (tests/unit/local/test_guard_signature.py checks them equal).
    """
    if _direct_shape(signature, raw_path, raw_query, headers):
        return _direct_signature(signature, secret_access_key, method, raw_path, headers, payload_hash)
    return _botocore_signature(
        signature, secret_access_key, method, raw_path, raw_query, headers, payload_hash
    )


def _direct_shape(signature: Signature, raw_path: str, raw_query: str, headers: Mapping[str, str]) -> bool:
    """No query, not S3 (its own path and payload rules), not presigned, a path that is only a
    path, the signed header names distinct and lower-case, and no empty payload-hash header."""
    names = signature.signed_headers
    return (
        not raw_query
        and not signature.presigned
        and signature.service != "s3"
        and "#" not in raw_path
        and headers.get("x-amz-content-sha256", None) != ""
        and len(set(names)) == len(names)
        and all(name and name == name.lower().strip() for name in names)
    )


def _direct_signature(
    signature: Signature,
    secret_access_key: str,
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    payload_hash: str,
) -> str:
    """botocore's canonical request for `_direct_shape`, without its request and header objects
    (69 µs of a 100 µs check): its path normalization, each signed header's value trimmed with
    inner runs of spaces made one (`SigV4Auth._header_value`), the names sorted."""
    from botocore.utils import normalize_url_path

    names = sorted(signature.signed_headers)
    canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in names)
    canonical = "\n".join(
        (
            method.upper(),
            quote(normalize_url_path(raw_path), safe="/~"),
            "",
            canonical_headers,
            ";".join(names),
            payload_hash,
        )
    )
    day = signature.amz_date[0:8]
    scope = f"{day}/{signature.region}/{signature.service}/aws4_request"
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    string_to_sign = f"AWS4-HMAC-SHA256\n{signature.amz_date}\n{scope}\n{digest}"
    key = signing_key(secret_access_key, day, signature.region, signature.service)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _botocore_signature(
    signature: Signature,
    secret_access_key: str,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    payload_hash: str,
) -> str:
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    pairs = [pair for pair in raw_query.split("&") if pair]
    if signature.presigned:
        pairs = [pair for pair in pairs if not pair.startswith("X-Amz-Signature=")]
    raw_query = "&".join(canonical_query_pair(pair) for pair in pairs)
    url = f"http://{headers.get('host', 'localhost')}{raw_path}" + (f"?{raw_query}" if raw_query else "")
    request = AWSRequest(method=method, url=url, headers={})
    if not signature.presigned and "x-amz-content-sha256" in headers:
        request.headers["X-Amz-Content-SHA256"] = headers["x-amz-content-sha256"]
    request.context["timestamp"] = signature.amz_date
    request.context[_SIGNED] = (signature.signed_headers, headers, payload_hash)
    auth = _recompute(signature.service == "s3")(
        BotoCredentials("", secret_access_key), signature.service, signature.region
    )
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    result: str = auth.signature(string_to_sign, request)
    return result


# ---------------------------------------------------------------- decisions
def authorize(caller: Caller, found: Iterable[Check], account: str, region: str) -> tuple[Check, str] | None:
    """The first check the caller fails, with AWS's message; None when every check passes."""
    if caller.kind == "admin":
        return None
    for check in found:
        if caller.kind == "role":
            assert caller.principal is not None
            context = dict(check.context) | context_of(
                {
                    "aws:PrincipalArn": caller.principal.role_arn,
                    "aws:PrincipalAccount": account,
                    "aws:PrincipalType": "AssumedRole",
                    "aws:RequestedRegion": region,
                    "aws:SecureTransport": "true",
                }
            )
            decision = evaluate(caller.principal.statements, check.action, check.resource, context)
            if not decision.allowed:
                return check, denial_message(caller.principal.arn, check.action, check.resource, decision)
        else:  # a service principal: the resource's own policy must allow it (e.g. a DLQ's)
            service = caller.label.split(" ", 1)[0]
            statements = caller.resource_policies.get(check.resource, ())
            context = dict(check.context) | context_of(
                {
                    "aws:SourceArn": caller.source_arn,
                    "aws:SourceAccount": account,
                    "aws:SecureTransport": "true",
                }
            )
            decision = evaluate(statements, check.action, check.resource, context, principal=service)
            if not decision.allowed:
                return check, (
                    f"Service {service} is not authorized to perform: {check.action} on resource: "
                    f"{check.resource} because no resource-based policy allows it"
                )
    return None


# ---------------------------------------------------------------- error shapes
def error_response(
    service: str, status: int, code: str, message: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The error as `service` sends it: S3 and query services in XML, JSON services with __type."""
    if service == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{_xml(message)}</Message>"
            f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
        ).encode()
        return status, [("Content-Type", "application/xml")], body
    if service in _QUERY_SERVICES:
        body = (
            f'<ErrorResponse xmlns="https://{service}.amazonaws.com/doc/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{_xml(message)}</Message></Error>"
            f"<RequestId>{secrets.token_hex(8)}</RequestId></ErrorResponse>"
        ).encode()
        return status, [("Content-Type", "text/xml")], body
    body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
    return status, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)], body


def access_denied(service: str, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    if service == "s3":
        return error_response("s3", 403, "AccessDenied", message)
    if service in _QUERY_SERVICES:
        return error_response(
            service, 403, "AuthorizationError" if service == "sns" else "AccessDenied", message
        )
    return error_response(service, 400, "AccessDeniedException", message)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unrecognized(service: str, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    if service == "s3":
        return error_response("s3", 403, "InvalidAccessKeyId", message)
    if service in _QUERY_SERVICES:
        return error_response(service, 403, "InvalidClientTokenId", message)
    return error_response(service, 400, "UnrecognizedClientException", message)


def _bad_signature(service: str, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    if service == "s3":
        return error_response("s3", 403, "SignatureDoesNotMatch", message)
    if service in _QUERY_SERVICES:
        return error_response(service, 403, "SignatureDoesNotMatch", message)
    return error_response(service, 400, "InvalidSignatureException", message)


_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z", re.ASCII)


def amz_datetime(text: str) -> datetime.datetime | None:
    """`X-Amz-Date` (`20261202T101500Z`) as a UTC datetime; None when it is not one (strptime
    took a sixth of a signature check)."""
    match = _AMZ_DATE.fullmatch(text)
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        return datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except ValueError:
        return None


def signature_ok(
    signature: Signature,
    credentials: Credentials,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime.datetime,
) -> bool:
    """Whether `signature` is this key's over this request: session token, time window, payload
    hash and the signature botocore computes with the key's secret."""
    if credentials.session_token is not None:
        token = headers.get("x-amz-security-token")
        if signature.presigned:
            token = parse_qs(raw_query).get("X-Amz-Security-Token", [None])[0]
        if token is None or not hmac.compare_digest(token, credentials.session_token):
            return False
    stamp = amz_datetime(signature.amz_date)
    if stamp is None:
        return False
    if signature.presigned:
        if signature.expires_s is None or now > stamp + datetime.timedelta(seconds=signature.expires_s):
            return False
    elif abs(now - stamp) > SIGNATURE_MAX_SKEW:
        return False
    if signature.presigned:
        payload_hash = "UNSIGNED-PAYLOAD"
    else:
        payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
        signed_body = payload_hash != "UNSIGNED-PAYLOAD" and not payload_hash.startswith("STREAMING-")
        if signed_body and payload_hash != hashlib.sha256(body).hexdigest():
            return False
    expected = expected_signature(
        signature, credentials.secret_access_key, method, raw_path, raw_query, headers, payload_hash
    )
    return hmac.compare_digest(expected, signature.signature)


def signed_caller(
    run: RunCredentials,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime.datetime,
) -> Caller | None:
    """Who signed this request with a key of this run; None when unsigned, unknown or forged.

    `headers` have lower-case names. The AWS endpoint and the management API both use it, so a
    request is believed on the same terms everywhere the stack takes AWS credentials.
    """
    signature = parse_signature(headers, parse_qs(raw_query, keep_blank_values=True))
    if signature is None:
        return None
    found = run.lookup(signature.access_key_id)
    if found is None:
        return None
    credentials, caller = found
    if not signature_ok(signature, credentials, method, raw_path, raw_query, headers, body, now=now):
        return None
    return caller


# ---------------------------------------------------------------- the WSGI middleware
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AwsGuard:
    """WSGI middleware in front of moto's server app (see the module docstring)."""

    def __init__(
        self,
        app: WsgiApp,
        credentials: KeyLookup,
        *,
        account: str,
        enforce_iam: bool = True,
        names: Callable[[], Names] = Names,
        on_denied: Callable[[Denial], None] | None = None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.account = account
        self.enforce_iam = enforce_iam
        self.names = names
        self.on_denied = on_denied
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = str(environ[key])
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        raw_uri = str(
            environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", ""))
        )
        raw_path, _, raw_query = raw_uri.partition("?")
        if not raw_query:
            raw_query = str(environ.get("QUERY_STRING", ""))
        query = parse_qs(raw_query, keep_blank_values=True)
        path = str(environ.get("PATH_INFO", "/"))

        if method == "OPTIONS":
            return self._preflight(environ, start_response, headers, path)
        verdict = s3_presigned.check_request(environ, self._secret_for, self.clock())
        if verdict is not None:  # S3's own rules: presigned URLs, POST policies (content-length-range)
            if verdict.refusal is not None:
                refusal = verdict.refusal
                return _send(
                    start_response, (refusal.status, [("Content-Type", "application/xml")], refusal.xml())
                )
            if verdict.authenticated_post is not None:  # its signed policy is its authentication
                return self._post_upload(verdict.authenticated_post, environ, start_response)
        signature = parse_signature(headers, query)
        service = signature.service if signature else _guess_service(headers, path)
        from_browser = headers.get("origin") or headers.get("sec-fetch-site", "none") not in (
            "none",
            "same-origin",
        )
        if path.startswith("/moto-api") and from_browser:
            return _send(start_response, error_response("s3", 403, "AccessDenied", "not from a browser"))
        if signature is None:
            return _send(
                start_response,
                error_response(
                    service,
                    403 if service in _QUERY_SERVICES | {"s3"} else 400,
                    "AccessDenied" if service == "s3" else "MissingAuthenticationTokenException",
                    "Request is missing Authentication Token",
                ),
            )
        found = self.credentials.lookup(signature.access_key_id)
        if found is None:
            return _send(
                start_response,
                _unrecognized(
                    service,
                    f"The AWS Access Key Id {signature.access_key_id} you provided does not exist "
                    "in our records.",
                ),
            )
        credentials, caller = found
        body = _read_body(environ)
        if not self._signature_ok(signature, credentials, method, raw_path, raw_query, headers, body):
            return _send(
                start_response,
                _bad_signature(
                    service,
                    "The request signature we calculated does not match the signature you provided. "
                    "Check your AWS Secret Access Key and signing method.",
                ),
            )
        if path.startswith("/moto-api") and caller.kind != "admin":
            return _send(start_response, error_response("s3", 403, "AccessDenied", "moto-api is admin only"))
        request = AwsRequest(
            service=service,
            method=method,
            path=raw_path,
            query=query,
            headers=headers,
            body=body,
            region=signature.region,
            account=self.account,
        )
        denied = self._iam_refusal(caller, request)
        if denied is not None:
            return _send(start_response, denied)
        return self._forward(environ, start_response, service)

    def _post_upload(
        self, post: s3_presigned.PostUpload, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """A browser POST upload whose policy checked out: S3 still authenticates its signer's
        session and authorizes the signer (`s3:PutObject` on the key) as for any signed request."""
        found = self.credentials.lookup(post.access_key_id)
        if found is None:  # revoked since the policy was checked (a reload)
            message = "The AWS Access Key Id you provided does not exist in our records."
            return _send(start_response, _unrecognized("s3", message))
        credentials, caller = found
        session = credentials.session_token
        if session is not None and not hmac.compare_digest(post.security_token or "", session):
            # temporary credentials are nothing without their token, in a form as in a header
            message = "The provided token is malformed or otherwise invalid."
            return _send(start_response, error_response("s3", 400, "InvalidToken", message))
        upload = AwsRequest(
            service="s3",
            method="POST",
            path=f"/{quote(post.bucket)}/{quote(post.key)}",
            query={},
            headers={},
            body=b"",
            region=post.region,
            account=self.account,
        )
        denied = self._iam_refusal(caller, upload)
        if denied is not None:
            return _send(start_response, denied)
        return self._forward(environ, start_response, "s3")

    def _iam_refusal(
        self, caller: Caller, request: AwsRequest
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """The service's AccessDenied answer when IAM refuses `caller` this request (reported to
        `on_denied`), None when it may go on: the one IAM path of every signed request."""
        if caller.kind == "admin" or not (self.enforce_iam or caller.kind == "service"):
            return None
        try:
            found_checks = checks(request, self.names())
        except Exception:  # a request iam_requests cannot read: let moto answer its own error
            log.exception("cannot derive the IAM checks of a %s request", request.service)
            found_checks = []
        refused = authorize(caller, found_checks, self.account, request.region)
        if refused is None:
            return None
        check, message = refused
        if self.on_denied is not None and caller.principal is not None:
            self.on_denied(Denial(caller.label, caller.principal.arn, check.action, check.resource, message))
        return access_denied(request.service, message)

    def _secret_for(self, access_key_id: str) -> str | None:
        found = self.credentials.lookup(access_key_id)
        return found[0].secret_access_key if found is not None else None

    def _signature_ok(
        self,
        signature: Signature,
        credentials: Credentials,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> bool:
        return signature_ok(
            signature, credentials, method, raw_path, raw_query, headers, body, now=self.clock()
        )

    def _preflight(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        headers: Mapping[str, str],
        path: str,
    ) -> Iterable[bytes]:
        """Only an S3 bucket's CORS rules may answer a preflight (S3 applies them itself)."""
        bucket, _ = s3_location(AwsRequest("s3", "OPTIONS", path, {}, headers, b"", "", self.account))
        if bucket and not path.startswith("/moto-api") and _bucket_exists(bucket):
            return self._forward(environ, start_response, "s3")
        return _send(start_response, (403, [("Content-Type", "text/plain")], b"CORS is not allowed here\n"))

    def _forward(
        self, environ: dict[str, Any], start_response: Callable[..., Any], service: str
    ) -> Iterable[bytes]:
        if service == "s3":
            return self.app(environ, start_response)  # a bucket's own CORS rules stand

        def without_cors(status: str, response_headers: list[tuple[str, str]], *args: Any) -> Any:
            kept = [(k, v) for k, v in response_headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept, *args)

        return self.app(environ, without_cors)


def _bucket_exists(name: str) -> bool:
    from moto.s3.models import s3_backends

    from tidings.local.model import ACCOUNT_ID

    try:
        return name in s3_backends[ACCOUNT_ID]["aws"].buckets
    except KeyError:
        return False


def _guess_service(headers: Mapping[str, str], path: str) -> str:
    target = headers.get("x-amz-target", "")
    if target.startswith("DynamoDB"):
        return "dynamodb"
    if target:
        return "json"
    return "s3"


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, put back for moto to read again."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" or environ.get(
        "wsgi.input_terminated"
    ):
        body = stream.read()
        environ.pop("HTTP_TRANSFER_ENCODING", None)
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return bytes(body)


def _send(
    start_response: Callable[..., Any], response: tuple[int, list[tuple[str, str]], bytes]
) -> list[bytes]:
    status, headers, body = response
    reason = {400: "Bad Request", 403: "Forbidden"}.get(status, "Error")
    start_response(f"{status} {reason}", [*headers, ("Content-Length", str(len(body)))])
    return [body]


# ---------------------------------------------------------------- the management API
MANAGE_CONNECTIONS = "execute-api:ManageConnections"
_DECISIONS_KEPT = 1024  # IAM decisions a ManagementGuard keeps (one per role session, stage and method)


# API Gateway authorizes `@connections` calls on the route's template, whatever the connection:
# its AccessDenied messages name `.../POST/@connections/{connectionId}` with the braces, so a
# policy naming one connection id never matches and `@connections/{connectionId}` (or `*`) does.
CONNECTION_ID_TEMPLATE = "{connectionId}"


def connection_arn(
    region: str, account: str, api_id: str, stage: str, method: str, connection_id: str
) -> str:
    """The resource a `@connections` call is authorized on, as API Gateway names it to IAM
    (`connection_id` is not part of it: see CONNECTION_ID_TEMPLATE)."""
    path = f"{api_id}/{stage}/{method.upper()}/@connections/{CONNECTION_ID_TEMPLATE}"
    return f"arn:aws:execute-api:{region}:{account}:{path}"


class ManagementGuard:
    """Who may call a WebSocket API's `@connections` management API, as API Gateway decides.

    The caller must sign with a key of this run (the same check as the AWS endpoint's); the admin
    key may do anything, a function's role session needs `execute-api:ManageConnections` on the
    connection's ARN (unless IAM is off); anything else is refused. `admin=False` refuses the
    admin key too (the hosts only the functions reach, management_endpoints.py). `check` answers None when the
    call may go on, else the message of the 403 ForbiddenException; refused roles are reported to
    `on_denied` so the invocation's line names what is missing.
    """

    def __init__(
        self,
        run: RunCredentials,
        *,
        api_id: str,
        region: str,
        account: str,
        enforce_iam: bool = True,
        on_denied: Callable[[Denial], None] | None = None,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        admin: bool = True,
    ) -> None:
        self.run = run
        self.admin = admin  # False: only the functions' role sessions (the workers' own endpoint)
        self.api_id = api_id
        self.region = region
        self.account = account
        self.enforce_iam = enforce_iam
        self.on_denied = on_denied
        self.clock = clock
        # IAM decisions by (role session, stage, method): the resource names no connection id and
        # the context holds only the role's and the account's facts, so for one role session
        # they are the same for every post. Kept with the caller they were made for (a key that
        # came back with another caller misses) and dropped whenever the run's keys change (a
        # template reload issues new sessions and revokes the old ones).
        self._decisions: dict[tuple[int, str, str], tuple[Caller, str | None]] = {}
        run.on_change(self._decisions.clear)

    def check(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        stage: str,
        connection_id: str,
    ) -> str | None:
        lower = {name.lower(): value for name, value in headers.items()}
        caller = signed_caller(self.run, method, raw_path, raw_query, lower, body, now=self.clock())
        if caller is None:
            return "Forbidden"
        if caller.kind == "admin":
            return None if self.admin else "Forbidden"
        if caller.kind != "role" or caller.principal is None:
            return "Forbidden"
        if not self.enforce_iam:
            return None
        key = (id(caller), stage, method)  # the entry holds the caller: its id stays its own
        cached = self._decisions.get(key)
        if cached is not None and cached[0] is caller:
            message = cached[1]
        else:
            message = self._evaluate(caller, stage, method, connection_id)
            if len(self._decisions) >= _DECISIONS_KEPT:
                self._decisions.clear()
            self._decisions[key] = (caller, message)
        if message is not None and self.on_denied is not None:
            assert caller.principal is not None
            resource = connection_arn(self.region, self.account, self.api_id, stage, method, connection_id)
            self.on_denied(Denial(caller.label, caller.principal.arn, MANAGE_CONNECTIONS, resource, message))
        return message

    def _evaluate(self, caller: Caller, stage: str, method: str, connection_id: str) -> str | None:
        """IAM's answer for this role on this stage's `@connections` route: None or AWS's message."""
        assert caller.principal is not None
        resource = connection_arn(self.region, self.account, self.api_id, stage, method, connection_id)
        context = context_of(
            {
                "aws:PrincipalArn": caller.principal.role_arn,
                "aws:PrincipalAccount": self.account,
                "aws:PrincipalType": "AssumedRole",
                "aws:RequestedRegion": self.region,
                "aws:SecureTransport": "true",
            }
        )
        decision = evaluate(caller.principal.statements, MANAGE_CONNECTIONS, resource, context)
        if decision.allowed:
            return None
        return denial_message(caller.principal.arn, MANAGE_CONNECTIONS, resource, decision)


# ---------------------------------------------------------------- the app's callers
@dataclass(frozen=True)
class AppCredentials:
    """The keys issued for an app's functions, state machines and rules."""

    functions: Mapping[str, Credentials]  # by function logical id
    machines: Mapping[str, Principal]  # by state machine logical id (checked in-process)
    # by role ARN: the `CredentialsArn` of service integrations, as API Gateway assumes it
    integrations: Mapping[str, Credentials] = field(default_factory=dict)
    # by state machine logical id: its role's session, for its service and API Tasks
    machine_keys: Mapping[str, Credentials] = field(default_factory=dict)


# the session API Gateway names when it assumes an integration's role
INTEGRATION_SESSION = "BackplaneAssumeRoleSession"


def issue_app_credentials(credentials: RunCredentials, app: Any, *, strict: bool = True) -> AppCredentials:
    """A role session per function and per service integration role (`CredentialsArn`), a principal
    per state machine and a service key per rule with a dead-letter queue. `strict`: a policy
    iam.py cannot evaluate raises UnsupportedPolicy (the stack stops on it); otherwise (IAM not
    enforced) such a role gets no statements."""
    from tidings.local.iam import UnsupportedPolicy, parse_document, role_statements

    def statements_of(owner: str, role_arn: str) -> tuple[Statement, ...]:
        role = app.roles.get(role_arn)
        try:
            if role is None:
                raise UnsupportedPolicy(
                    f"{owner}: role {role_arn or '(none)'} is not defined in this template, so its policies "
                    "are unknown locally (run with --no-iam to skip IAM checks)"
                )
            return role_statements(role.documents, role.managed_policy_arns)
        except UnsupportedPolicy as error:
            if strict:
                raise UnsupportedPolicy(
                    f"{owner}: {error}" if not str(error).startswith(owner) else str(error)
                ) from None
            return ()

    functions: dict[str, Credentials] = {}
    for logical_id, function in app.functions.items():
        principal = Principal(function.role_arn, function.name, statements_of(logical_id, function.role_arn))
        functions[logical_id] = credentials.issue_role(logical_id, principal)
    machines = {
        logical_id: Principal(
            machine.role_arn, f"{machine.name}-execution", statements_of(logical_id, machine.role_arn)
        )
        for logical_id, machine in app.state_machines.items()
    }
    resource_policies: dict[str, tuple[Statement, ...]] = {}
    for arn, documents in app.resource_policies.items():
        parsed: list[Statement] = []
        for index, document in enumerate(documents):
            try:
                parsed.extend(parse_document(document, f"policy of {arn} [{index}]"))
            except UnsupportedPolicy:
                if strict:
                    raise
        resource_policies[arn] = tuple(parsed)
    for rule in app.rules:
        arn = f"arn:aws:events:{app.region}:{ACCOUNT}:" + (
            f"rule/{rule.name}" if rule.bus_name == "default" else f"rule/{rule.bus_name}/{rule.name}"
        )
        credentials.issue_service("events.amazonaws.com", arn, resource_policies)
    integrations: dict[str, Credentials] = {}
    for api in app.websocket_apis:
        for route in api.routes.values():
            integration = route.non_proxy
            if integration is None or integration.service is None or not integration.credentials_arn:
                continue
            role_arn = integration.credentials_arn
            if role_arn not in integrations:
                owner = f"{integration.logical_id}.CredentialsArn"
                principal = Principal(role_arn, INTEGRATION_SESSION, statements_of(owner, role_arn))
                integrations[role_arn] = credentials.issue_role(
                    f"apigateway.amazonaws.com {role_arn}", principal
                )
    machine_keys = {
        logical_id: credentials.issue_role(f"states.amazonaws.com {machine.arn}", machines[logical_id])
        for logical_id, machine in app.state_machines.items()
    }
    return AppCredentials(functions, machines, integrations, machine_keys)


def rule_caller(app: Any, rule_arn: str) -> str:
    """The credentials label EventBridge uses when it sends a rule's event to its dead-letter queue."""
    return f"events.amazonaws.com {rule_arn}"


def may_invoke(principal: Principal, function_arn: str) -> str | None:
    """None when the role may `lambda:InvokeFunction` the function, else AWS's message."""
    decision = evaluate(principal.statements, "lambda:InvokeFunction", function_arn)
    if decision.allowed:
        return None
    return denial_message(principal.arn, "lambda:InvokeFunction", function_arn, decision)
