"""HS256 connection tokens (PyJWT) and the authorizer's policies. Tokens are never logged or echoed."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from .protocol import SUBPROTOCOL, offered_subprotocols

ALGORITHM = "HS256"
SECRET_MAX_AGE_SECONDS = 300  # Secrets Manager reads are cached this long per container
MAX_TOKEN_CHARS = 4096
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


def issue_token(secret: str, user_id: str, ttl_seconds: int, audience: str = "tidings") -> str:
    if not _USER_ID.fullmatch(user_id):
        raise ValueError("user id must be 1-128 of A-Z a-z 0-9 _ . : @ -")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    now = int(time.time())
    claims = {"sub": user_id, "aud": audience, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str | None, audience: str) -> Claims:
    """Check signature, algorithm, audience and expiry; raise MissingToken or InvalidToken."""
    if not token:
        raise MissingToken("no token")
    if len(token) > MAX_TOKEN_CHARS or not _JWT_SHAPE.fullmatch(token):
        raise MissingToken("malformed token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # pinning the algorithm refuses "none" and every other alg
            audience=audience,
            options={"require": ["sub", "aud", "exp", "iat"]},
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature") from None
    except jwt.ExpiredSignatureError:
        raise InvalidToken("expired") from None
    except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError, jwt.InvalidAlgorithmError) as exc:
        raise InvalidToken(type(exc).__name__) from None
    except jwt.DecodeError:
        raise MissingToken("malformed token") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(type(exc).__name__) from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _USER_ID.fullmatch(subject):
        raise InvalidToken("bad subject")
    return Claims(subject, audience, int(claims["iat"]), int(claims["exp"]))


def token_from_request(headers: Mapping[str, str] | None, query: Mapping[str, str] | None) -> str | None:
    """The token from `Sec-WebSocket-Protocol: tidings.v1, <token>`, else from `?token=`."""
    offered = offered_subprotocols(headers)
    if SUBPROTOCOL in offered:
        others = [p for p in offered if p != SUBPROTOCOL]
        if others:
            return others[0]
    return (query or {}).get("token") or None


def signing_secret(secret_arn: str) -> str:
    """The HS256 key from Secrets Manager, cached by Powertools for SECRET_MAX_AGE_SECONDS."""
    from aws_lambda_powertools.utilities.parameters import get_secret  # lazy: authorizer only

    value = get_secret(secret_arn, max_age=SECRET_MAX_AGE_SECONDS)
    if not isinstance(value, str) or not value:
        raise RuntimeError("token secret is empty or binary")
    return value


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
