"""HS256 connection tokens (PyJWT) and the authorizer's policies. Tokens are never logged or echoed."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from .protocol import SUBPROTOCOL, offered_subprotocols

ALGORITHM = "HS256"
SECRET_MAX_AGE_SECONDS = 300  # Secrets Manager reads are cached this long per container
# an unknown `kid` (a rotation newer than the cache) re-reads the secret, at most this often
SECRET_REFRESH_MIN_SECONDS = 30
MAX_TOKEN_CHARS = 4096
MAX_LIFETIME_SECONDS = 24 * 60 * 60  # no token lives longer, whatever the stack's parameter says
DEFAULT_ISSUER = "tidings"
CLOCK_SKEW_SECONDS = 60  # `iat` may be this far in the future (clocks differ)
_USER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
# a JWT is three base64url parts; anything else is malformed (401), not forged (403)
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


class TokenError(Exception):
    """Base of token failures; `status` is the HTTP status the handshake should end with."""

    status = 403


class MissingToken(TokenError):
    """No token, or not a JWT at all: 401 (the authorizer raises "Unauthorized")."""

    status = 401


class InvalidToken(TokenError):
    """Bad signature, expired, wrong audience, wrong algorithm or bad claims: 403 (Deny policy)."""

    status = 403


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    audience: str
    issued_at: int
    expires_at: int


def valid_user_id(user_id: str) -> bool:
    """1-128 of `A-Z a-z 0-9 _ . : @ -`, and not `.`/`..` or only dots: ids become S3 key segments."""
    return bool(_USER_ID.fullmatch(user_id)) and user_id.strip(".") != ""


def key_id(secret: str) -> str:
    """The `kid` of a signing key: a truncated SHA-256 of it (the key is 64 random characters,
    so the digest reveals nothing), so issuers need only the key and verifiers can tell keys apart."""
    digest = hashlib.sha256(b"tidings-kid\x00" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys a verifier accepts: Secrets Manager's AWSCURRENT and, during a rotation's grace
    period, AWSPREVIOUS. A token names its key with `kid`; one without `kid` is tried with the current key."""

    current: str
    previous: str | None = None

    def key_for(self, kid: str | None) -> str | None:
        if kid is None:
            return self.current
        for secret in (self.current, self.previous):
            if secret and key_id(secret) == kid:
                return secret
        return None


def issue_token(
    secret: str,
    user_id: str,
    ttl_seconds: int,
    audience: str = "tidings",
    *,
    issuer: str = DEFAULT_ISSUER,
    max_lifetime: int = MAX_LIFETIME_SECONDS,
) -> str:
    if not valid_user_id(user_id):
        raise ValueError("user id must be 1-128 of A-Z a-z 0-9 _ . : @ - (and not only dots)")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    if ttl_seconds > max_lifetime:
        raise ValueError(f"ttl_seconds must be at most {max_lifetime} (the token lifetime limit)")
    now = int(time.time())
    claims = {"sub": user_id, "aud": audience, "iss": issuer, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": key_id(secret)})


def verify_token(
    keys: str | KeyRing,
    token: str | None,
    audience: str,
    *,
    issuer: str = DEFAULT_ISSUER,
    max_lifetime: int = MAX_LIFETIME_SECONDS,
) -> Claims:
    """Check signature (by `kid`), algorithm, audience, issuer, expiry and lifetime; raise
    MissingToken or InvalidToken."""
    if not token:
        raise MissingToken("no token")
    if len(token) > MAX_TOKEN_CHARS or not _JWT_SHAPE.fullmatch(token):
        raise MissingToken("malformed token")
    ring = KeyRing(keys) if isinstance(keys, str) else keys
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.DecodeError:
        raise MissingToken("malformed token") from None
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("bad kid")
    secret = ring.key_for(kid)
    if secret is None:
        raise InvalidToken("unknown key")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # pinning the algorithm refuses "none" and every other alg
            audience=audience,
            issuer=issuer,
            options={"require": ["sub", "aud", "iss", "exp", "iat"]},
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature") from None
    except jwt.ExpiredSignatureError:
        raise InvalidToken("expired") from None
    except (
        jwt.InvalidAudienceError,
        jwt.InvalidIssuerError,
        jwt.MissingRequiredClaimError,
        jwt.InvalidAlgorithmError,
    ) as exc:
        raise InvalidToken(type(exc).__name__) from None
    except jwt.DecodeError:
        raise MissingToken("malformed token") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(type(exc).__name__) from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not valid_user_id(subject):
        raise InvalidToken("bad subject")
    issued_at, expires_at = claims["iat"], claims["exp"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (issued_at, expires_at)):
        raise InvalidToken("non-integer iat or exp")
    now = int(time.time())
    if issued_at > now + CLOCK_SKEW_SECONDS:
        raise InvalidToken("issued in the future")
    if expires_at - issued_at > max_lifetime or expires_at - now > max_lifetime:
        raise InvalidToken("lifetime too long")
    return Claims(subject, audience, issued_at, expires_at)


def token_from_request(headers: Mapping[str, str] | None, query: Mapping[str, str] | None) -> str | None:
    """The token from `Sec-WebSocket-Protocol: tidings.v1, <token>`, else from `?token=`."""
    offered = offered_subprotocols(headers)
    if SUBPROTOCOL in offered:
        others = [p for p in offered if p != SUBPROTOCOL]
        if others:
            return others[0]
    return (query or {}).get("token") or None


def signing_secret(secret_arn: str) -> str:
    """The current HS256 key from Secrets Manager (cached with the key ring)."""
    return signing_keys(secret_arn).current


class _KeyCache:
    """The key ring per secret for SECRET_MAX_AGE_SECONDS; `refresh` re-reads at most every
    SECRET_REFRESH_MIN_SECONDS, so random `kid`s cannot turn requests into Secrets Manager calls."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rings: dict[str, tuple[float, KeyRing]] = {}

    def get(self, secret_arn: str, *, refresh: bool = False) -> KeyRing:
        now = self._clock()
        with self._lock:
            cached = self._rings.get(secret_arn)
            if cached is not None:
                age = now - cached[0]
                if age < SECRET_MAX_AGE_SECONDS and not (refresh and age >= SECRET_REFRESH_MIN_SECONDS):
                    return cached[1]
        ring = read_key_ring(secret_arn)
        with self._lock:
            self._rings[secret_arn] = (now, ring)
        return ring

    def clear(self) -> None:
        with self._lock:
            self._rings.clear()


def read_key_ring(secret_arn: str, client: Any = None) -> KeyRing:
    """AWSCURRENT and (when a rotation happened) AWSPREVIOUS of the signing secret."""
    import boto3  # lazy: authorizer only

    secrets = client or boto3.client("secretsmanager")
    current = secrets.get_secret_value(SecretId=secret_arn, VersionStage="AWSCURRENT").get("SecretString")
    if not isinstance(current, str) or not current:
        raise RuntimeError("token secret is empty or binary")
    try:
        older = secrets.get_secret_value(SecretId=secret_arn, VersionStage="AWSPREVIOUS")
        previous = older.get("SecretString")
    except secrets.exceptions.ResourceNotFoundException:  # never rotated
        previous = None
    return KeyRing(current, previous if isinstance(previous, str) and previous else None)


key_cache = _KeyCache()


def signing_keys(secret_arn: str, *, refresh: bool = False) -> KeyRing:
    return key_cache.get(secret_arn, refresh=refresh)


def verify_with_secret(
    secret_arn: str, token: str | None, audience: str, *, issuer: str, max_lifetime: int
) -> Claims:
    """`verify_token` against the secret's key ring; a `kid` the cached ring does not know (a
    rotation newer than the cache) re-reads the secret once (rate-limited) before refusing."""
    try:
        return verify_token(
            signing_keys(secret_arn), token, audience, issuer=issuer, max_lifetime=max_lifetime
        )
    except InvalidToken as exc:
        if str(exc) != "unknown key":
            raise
    return verify_token(
        signing_keys(secret_arn, refresh=True), token, audience, issuer=issuer, max_lifetime=max_lifetime
    )


def _policy(principal_id: str, effect: str, method_arn: str, context: dict[str, Any]) -> dict[str, Any]:
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn}],
        },
        "context": context,
    }


def allow_policy(claims: Claims, method_arn: str, *, subprotocol: bool) -> dict[str, Any]:
    """Allow exactly this `$connect` ARN; context values are strings only."""
    context = {"userId": claims.user_id, "subprotocol": SUBPROTOCOL if subprotocol else ""}
    return _policy(claims.user_id, "Allow", method_arn, context)


def deny_policy(method_arn: str) -> dict[str, Any]:
    return _policy("anonymous", "Deny", method_arn, {})


def bearer_token(authorization: str | None) -> str:
    """The JWT from an `Authorization: Bearer <jwt>` header; MissingToken when absent or another scheme."""
    if not authorization:
        raise MissingToken("no Authorization header")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise MissingToken("Authorization is not a Bearer token")
    return credentials.strip()


def http_authorizer_response(claims: Claims | None) -> dict[str, Any]:
    """An HTTP API simple response (payload 2.0): allowed with the user id in context, or refused."""
    from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (  # lazy
        APIGatewayAuthorizerResponseV2,
    )

    if claims is None:
        return APIGatewayAuthorizerResponseV2(authorize=False).asdict()
    return APIGatewayAuthorizerResponseV2(authorize=True, context={"userId": claims.user_id}).asdict()
