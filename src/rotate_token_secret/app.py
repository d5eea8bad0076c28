"""Secrets Manager rotation of the token-signing key: the four steps of the rotation protocol.

The key is only ever read by Tidings itself (no database holds a copy), so `setSecret` has
nothing to change. Verifiers accept AWSCURRENT and AWSPREVIOUS (`tokens.KeyRing`): a token signed
before a rotation keeps working until the next one, which is far longer than a token may live.
"""

from __future__ import annotations

import functools
import secrets
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import tokens

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = Logger()
KEY_CHARS = 64  # as the template's GenerateSecretString: 64 letters and digits
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class RotationError(RuntimeError):
    """The rotation cannot go on (Secrets Manager retries it and reports the failure)."""


@functools.cache
def client() -> SecretsManagerClient:
    import boto3

    return boto3.client("secretsmanager")


def new_key() -> str:
    """64 letters and digits from the OS's CSPRNG (no secretsmanager:GetRandomPassword, which
    cannot be limited to one resource)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(KEY_CHARS))


def create_secret(sm: SecretsManagerClient, arn: str, token: str) -> None:
    sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")  # fails early if there is no key
    try:
        sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
        return  # a retried step: the pending key already exists
    except sm.exceptions.ResourceNotFoundException:
        pass
    sm.put_secret_value(
        SecretId=arn, ClientRequestToken=token, SecretString=new_key(), VersionStages=["AWSPENDING"]
    )


def set_secret(sm: SecretsManagerClient, arn: str, token: str) -> None:
    """Nothing outside the secret holds the key."""


def check_secret(sm: SecretsManagerClient, arn: str, token: str) -> None:
    pending = sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
    key = pending.get("SecretString")
    if not isinstance(key, str) or len(key) < 32:
        raise RotationError("the pending key is missing or shorter than 32 characters")
    probe = tokens.issue_token(key, "rotation-check", 60)
    ring = tokens.KeyRing(current=key)
    if tokens.verify_token(ring, probe, "tidings").user_id != "rotation-check":
        raise RotationError("a token signed with the pending key does not verify")


def finish_secret(sm: SecretsManagerClient, arn: str, token: str) -> None:
    """Make the pending version AWSCURRENT; Secrets Manager labels the old one AWSPREVIOUS."""
    versions = sm.describe_secret(SecretId=arn).get("VersionIdsToStages", {})
    current = next((v for v, stages in versions.items() if "AWSCURRENT" in stages), None)
    if current == token:
        return  # a retried step: already done
    if current is None:
        raise RotationError("the secret has no AWSCURRENT version")
    sm.update_secret_version_stage(
        SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=current
    )
    # Secrets Manager drops AWSPENDING once the rotation ends; doing it here leaves no pending
    # label behind whoever drives the steps (and makes the next rotation's checks pass)
    sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPENDING", RemoveFromVersionId=token)


STEPS = {
    "createSecret": create_secret,
    "setSecret": set_secret,
    "testSecret": check_secret,
    "finishSecret": finish_secret,
}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    if step not in STEPS:
        raise RotationError(f"unknown rotation step {step!r}")
    sm = client()
    metadata = sm.describe_secret(SecretId=arn)
    if not metadata.get("RotationEnabled"):
        raise RotationError("rotation is not enabled on this secret")
    stages = metadata.get("VersionIdsToStages", {})
    if token not in stages:
        raise RotationError("the rotation's version is not a version of this secret")
    if "AWSCURRENT" in stages[token] and step != "finishSecret":
        logger.info("version already current", extra={"step": step})
        return
    if "AWSPENDING" not in stages[token] and "AWSCURRENT" not in stages[token]:
        raise RotationError("the rotation's version is not pending")
    logger.info("rotation step", extra={"step": step})  # never the key
    STEPS[step](sm, arn, token)
