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
    token = jwt.encode(
        {"sub": "alice", "aud": "tidings", "iss": "tidings", "iat": now - 120, "exp": now - 60}, SECRET
    )
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


@pytest.mark.parametrize("missing", ["sub", "exp", "iat", "aud", "iss"])
def test_a_missing_required_claim_is_403(missing: str) -> None:
    now = int(time.time())
    claims = {"sub": "alice", "aud": "tidings", "iss": "tidings", "iat": now, "exp": now + 60}
    del claims[missing]
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_token(SECRET, jwt.encode(claims, SECRET), "tidings")


def test_a_subject_that_cannot_name_a_topic_is_403() -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "bob smith/../", "aud": "tidings", "iss": "tidings", "iat": now, "exp": now + 60}, SECRET
    )
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


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "alice",
        "aud": "tidings",
        "iss": "tidings",
        "iat": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    return claims


def test_a_token_living_longer_than_the_maximum_is_403() -> None:
    """Issue 14: `exp` of 10^20 was accepted; the maximum lifetime is 24 h (or the stack's less)."""
    now = int(time.time())
    for claims in (
        _claims(exp=10**20),
        _claims(exp=now + 24 * 3600 + 120),
        _claims(iat=now - 10, exp=now + 24 * 3600 + 60),
        _claims(iat=now + 3600, exp=now + 3700),  # issued in the future
    ):
        with pytest.raises(tokens.InvalidToken):
            tokens.verify_token(SECRET, jwt.encode(claims, SECRET), "tidings")
    one_hour = jwt.encode(_claims(exp=now + 3600), SECRET)
    assert tokens.verify_token(SECRET, one_hour, "tidings").user_id == "alice"
    with pytest.raises(tokens.InvalidToken, match="lifetime"):
        tokens.verify_token(SECRET, one_hour, "tidings", max_lifetime=600)  # a stack's shorter limit


def test_issuing_refuses_a_ttl_beyond_the_maximum() -> None:
    with pytest.raises(ValueError, match="at most"):
        tokens.issue_token(SECRET, "alice", 10 * 365 * 24 * 3600)
    with pytest.raises(ValueError, match="at most"):
        tokens.issue_token(SECRET, "alice", 3600, max_lifetime=600)


def test_issuer_is_set_and_checked() -> None:
    token = tokens.issue_token(SECRET, "alice", 60)
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == "tidings"
    with pytest.raises(tokens.InvalidToken, match="Issuer"):
        tokens.verify_token(SECRET, jwt.encode(_claims(iss="someone-else"), SECRET), "tidings")
    other = tokens.issue_token(SECRET, "alice", 60, issuer="stack-b")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_token(SECRET, other, "tidings")
    assert tokens.verify_token(SECRET, other, "tidings", issuer="stack-b").user_id == "alice"


def test_kid_selects_the_current_or_previous_key() -> None:
    old, new = "old-key-" + "a" * 56, "new-key-" + "b" * 56
    by_old, by_new = tokens.issue_token(old, "alice", 60), tokens.issue_token(new, "alice", 60)
    assert jwt.get_unverified_header(by_old)["kid"] == tokens.key_id(old) != tokens.key_id(new)
    ring = tokens.KeyRing(current=new, previous=old)
    assert tokens.verify_token(ring, by_old, "tidings").user_id == "alice"
    assert tokens.verify_token(ring, by_new, "tidings").user_id == "alice"
    with pytest.raises(tokens.InvalidToken, match="unknown key"):  # after the next rotation
        tokens.verify_token(tokens.KeyRing(current="third-" + "c" * 59, previous=new), by_old, "tidings")
    forged = jwt.encode(_claims(), old, headers={"kid": tokens.key_id(new)})  # kid of one, key of another
    with pytest.raises(tokens.InvalidToken, match="bad signature"):
        tokens.verify_token(ring, forged, "tidings")


@pytest.mark.parametrize("user_id", [".", "..", "...", "a" * 129, "a/b", ""])
def test_ids_that_are_not_safe_key_segments_are_refused(user_id: str) -> None:
    assert not tokens.valid_user_id(user_id)
    with pytest.raises(ValueError):
        tokens.issue_token(SECRET, user_id, 60)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_token(SECRET, jwt.encode(_claims(sub=user_id), SECRET), "tidings")


def test_ids_with_dots_inside_stay_valid() -> None:
    assert tokens.valid_user_id("a.b") and tokens.valid_user_id(".a") and tokens.valid_user_id("alice@x.io")
