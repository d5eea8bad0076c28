"""Rotation of the token-signing key (issue 14): the rotation function's four steps, driven by
moto's RotateSecret, and tokens signed before the rotation still verifying after it."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto.awslambda.models import LambdaBackend
from testkit import load_handler

from tidings_core import tokens
from tidings_core.config import Settings

from .conftest import POWERTOOLS_ENV, SECRET, FakeContext
from .test_http_authorizer import http_authorizer_event

ROLE_POLICY = json.dumps({"Version": "2012-10-17", "Statement": []})


@pytest.fixture
def rotation(monkeypatch: pytest.MonkeyPatch, aws: Settings) -> Iterator[tuple[ModuleType, list[str]]]:
    """The rotation function, registered in moto's Lambda; moto's RotateSecret invokes it in process.

    moto would run a registered function in Docker; its `LambdaBackend.invoke` is replaced by a
    call of the handler. The signature is pinned so a moto change fails here loudly.
    """
    pinned = ["self", "function_name", "qualifier", "body", "headers", "response_headers"]
    assert list(inspect.signature(LambdaBackend.invoke).parameters) == pinned
    for name, value in POWERTOOLS_ENV.items():
        monkeypatch.setenv(name, value)
    module = load_handler("rotate_token_secret")
    module.client.cache_clear()
    steps: list[str] = []

    def invoke(self: LambdaBackend, function_name: str, qualifier: Any, body: Any, **_: Any) -> bytes:
        event = json.loads(body)
        steps.append(event["Step"])
        module.handler(event, FakeContext())
        return b"null"

    monkeypatch.setattr(LambdaBackend, "invoke", invoke)
    role = boto3.client("iam").create_role(RoleName="rotation", AssumeRolePolicyDocument=ROLE_POLICY)
    boto3.client("lambda").create_function(
        FunctionName="rotate-token-secret",
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="app.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )
    tokens.key_cache.clear()
    yield module, steps
    tokens.key_cache.clear()


def _rotate(secret_arn: str) -> None:
    function_arn = boto3.client("lambda").get_function(FunctionName="rotate-token-secret")["Configuration"][
        "FunctionArn"
    ]
    boto3.client("secretsmanager").rotate_secret(
        SecretId=secret_arn, RotationLambdaARN=function_arn, RotationRules={"AutomaticallyAfterDays": 30}
    )


def test_rotation_runs_four_steps_and_makes_a_new_current_key(
    aws: Settings, rotation: tuple[ModuleType, list[str]]
) -> None:
    _, steps = rotation
    sm = boto3.client("secretsmanager")
    _rotate(aws.token_secret_arn)
    assert steps == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    current = sm.get_secret_value(SecretId=aws.token_secret_arn, VersionStage="AWSCURRENT")["SecretString"]
    previous = sm.get_secret_value(SecretId=aws.token_secret_arn, VersionStage="AWSPREVIOUS")["SecretString"]
    assert previous == SECRET
    assert current != SECRET and len(current) == 64 and current.isalnum()
    # a retried finishSecret (Secrets Manager retries failed steps) changes nothing
    module, _ = rotation
    stages = sm.describe_secret(SecretId=aws.token_secret_arn)["VersionIdsToStages"]
    [version] = [v for v, labels in stages.items() if "AWSCURRENT" in labels]
    module.finish_secret(sm, aws.token_secret_arn, version)
    again = sm.get_secret_value(SecretId=aws.token_secret_arn, VersionStage="AWSCURRENT")["SecretString"]
    assert again == current


def test_a_token_signed_before_the_rotation_still_verifies_after_it(
    aws: Settings, rotation: tuple[ModuleType, list[str]], handlers: dict[str, ModuleType]
) -> None:
    old_token = tokens.issue_token(SECRET, "alice", 600)
    _rotate(aws.token_secret_arn)
    new_key = boto3.client("secretsmanager").get_secret_value(SecretId=aws.token_secret_arn)["SecretString"]
    new_token = tokens.issue_token(new_key, "alice", 600)
    tokens.key_cache.clear()  # a container started after the rotation
    for token in (old_token, new_token):
        answer = handlers["authorize"].http_handler(http_authorizer_event(f"Bearer {token}"), FakeContext())
        assert answer["isAuthorized"] is True
    _rotate(aws.token_secret_arn)  # a second rotation ends the first key's grace period
    tokens.key_cache.clear()
    answer = handlers["authorize"].http_handler(http_authorizer_event(f"Bearer {old_token}"), FakeContext())
    assert answer["isAuthorized"] is False
    assert tokens.verify_with_secret(
        aws.token_secret_arn, new_token, "tidings", issuer="tidings", max_lifetime=600
    )


def test_a_cached_key_ring_picks_up_a_new_key_by_its_kid(
    aws: Settings, rotation: tuple[ModuleType, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verifier whose cache predates the rotation re-reads the secret for an unknown kid."""
    clock = [1000.0]
    monkeypatch.setattr(tokens, "key_cache", tokens._KeyCache(clock=lambda: clock[0]))
    assert tokens.signing_keys(aws.token_secret_arn).current == SECRET  # cached
    _rotate(aws.token_secret_arn)
    new_key = boto3.client("secretsmanager").get_secret_value(SecretId=aws.token_secret_arn)["SecretString"]
    new_token = tokens.issue_token(new_key, "alice", 600)
    clock[0] += tokens.SECRET_REFRESH_MIN_SECONDS
    claims = tokens.verify_with_secret(
        aws.token_secret_arn, new_token, "tidings", issuer="tidings", max_lifetime=600
    )
    assert claims.user_id == "alice"


def test_rotation_refuses_a_version_that_is_not_pending(
    aws: Settings, rotation: tuple[ModuleType, list[str]]
) -> None:
    module, _ = rotation
    sm = boto3.client("secretsmanager")
    sm.rotate_secret(SecretId=aws.token_secret_arn, RotationRules={"AutomaticallyAfterDays": 30})
    with pytest.raises(module.RotationError, match="not a version"):
        module.handler(
            {"SecretId": aws.token_secret_arn, "ClientRequestToken": "f" * 36, "Step": "createSecret"},
            FakeContext(),
        )
