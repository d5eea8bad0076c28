"""SSM parameters and secrets that already exist in the embedded services, read before the app loads.

The `DynamicValues` source `load_app` consults for SSM parameter types and dynamic references
that the template does not declare itself (a thin shell over boto3; no app knowledge).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tidings.local.aws import AwsServices

_MISSING = ("ParameterNotFound", "ParameterVersionNotFound", "ResourceNotFoundException")


class EmbeddedValues:
    def __init__(self, aws: AwsServices) -> None:
        self.aws = aws

    def ssm_parameter(self, name: str, version: str | None) -> str | None:
        qualified = f"{name}:{version}" if version else name
        answer = self._call("ssm", "get_parameter", Name=qualified, WithDecryption=True)
        return None if answer is None else str(answer["Parameter"]["Value"])

    def secret_string(self, secret_id: str, version_stage: str | None, version_id: str | None) -> str | None:
        request: dict[str, Any] = {"SecretId": secret_id}
        if version_stage:
            request["VersionStage"] = version_stage
        if version_id:
            request["VersionId"] = version_id
        answer = self._call("secretsmanager", "get_secret_value", **request)
        if answer is None or "SecretString" not in answer:
            return None
        return str(answer["SecretString"])

    def _call(self, service: str, operation: str, **request: Any) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = getattr(self.aws.client(service), operation)(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        return answer
