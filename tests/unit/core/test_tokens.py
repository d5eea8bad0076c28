"""Tokens: what is allowed, what is 401 (missing/malformed) and what is 403 (forged/expired/other)."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from tidings_core import protocol, tokens

SECRET = "s3cret-key-for-tests-only-0123456789"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_issued_token_verifies_to_its_claims() -> None:
    token = tokens.issue_token(SECRET, "alice", 600)
    claims = tokens.verify_token(SECRET, token, "tidings")
    assert claims.user_id == "alice"
    assert claims.audience == "tidings"
    assert claims.expires_at - claims.issued_at == 600


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "a.b", "x" * 5000, "a.b.c.d", "@@.##.$$"])
def test_missing_or_malformed_token_is_401(token: str | None) -> None:
    with pytest.raises(tokens.MissingToken) as caught:
        tokens.verify_token(SECRET, token, "tidings")
    assert caught.value.status == 401


def test_bad_signature_is_403() -> None:
    token = tokens.issue_token("another-secret-of-enough-length-000", "alice", 600)
    with pytest.raises(tokens.InvalidToken) as caught:
        tokens.verify_token(SECRET, token, "tidings")
    assert caught.value.status == 403


def test_expired_token_is_403() -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "alice", "aud": "tidings", "iat": now - 120, "exp": now - 60}, SECRET)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify_token(SECRET, token, "tidings")


def test_wrong_audience_is_403() -> None:
    token = tokens.issue_token(SECRET, "alice", 600, audience="someone-else")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_token(SECRET, token, "tidings")


def test_alg_none_is_403() -> None:
    now = int(time.time())
    claims = {"sub": "alice", "aud": "tidings", "iat": now, "exp": now + 60}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_token(SECRET, unsigned, "tidings")


def test_other_algorithm_is_403() -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "alice", "aud": "tidings", "iat": now, "exp": now + 60}, SECRET, algorithm="HS512"
    )
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_token(SECRET, token, "tidings")


@pytest.mark.parametrize("missing", ["sub", "exp", "iat", "aud"])
def test_a_missing_required_claim_is_403(missing: str) -> None:
    now = int(time.time())
    claims = {"sub": "alice", "aud": "tidings", "iat": now, "exp": now + 60}
    del claims[missing]
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_token(SECRET, jwt.encode(claims, SECRET), "tidings")


def test_a_subject_that_cannot_name_a_topic_is_403() -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "bob smith/../", "aud": "tidings", "iat": now, "exp": now + 60}, SECRET)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_token(SECRET, token, "tidings")


def test_errors_never_echo_the_token() -> None:
    token = tokens.issue_token("another-secret-of-enough-length-000", "alice", 600)
    with pytest.raises(tokens.TokenError) as caught:
        tokens.verify_token(SECRET, token, "tidings")
    assert token not in str(caught.value)
    assert token.split(".")[2] not in repr(caught.value)


def test_token_comes_from_the_subprotocol_header_first() -> None:
    headers = {"sec-websocket-protocol": "tidings.v1, abc.def.ghi"}
    assert tokens.token_from_request(headers, {"token": "q.q.q"}) == "abc.def.ghi"
    assert protocol.offers_subprotocol(headers)


def test_token_falls_back_to_the_query_string() -> None:
    assert tokens.token_from_request({}, {"token": "q.q.q"}) == "q.q.q"
    assert tokens.token_from_request({"Sec-WebSocket-Protocol": "tidings.v1"}, {"token": "q.q.q"}) == "q.q.q"
    assert not protocol.offers_subprotocol({"Sec-WebSocket-Protocol": "chat"})
    assert tokens.token_from_request(None, None) is None


def test_allow_policy_names_exactly_the_method_arn_and_string_context() -> None:
    arn = "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/$connect"
    claims = tokens.verify_token(SECRET, tokens.issue_token(SECRET, "alice", 60), "tidings")
    policy = tokens.allow_policy(claims, arn, subprotocol=True)
    assert policy["principalId"] == "alice"
    [statement] = policy["policyDocument"]["Statement"]
    assert statement == {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn}
    assert policy["context"] == {"userId": "alice", "subprotocol": "tidings.v1"}
    assert len(json.dumps(policy)) < 8192
    deny = tokens.deny_policy(arn)
    assert deny["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert deny["policyDocument"]["Statement"][0]["Resource"] == arn
