"""Read a SAM template and transform it to CloudFormation offline, with no AWS account.

aws-sam-translator needs a region, a managed-policy loader and S3 URIs for code; locally the
code lives in folders, so local `CodeUri`/`ContentUri`/`DefinitionUri` values are swapped for
placeholder `s3://` URIs and remembered by logical id.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOCAL_URI_PROPERTIES = ("CodeUri", "ContentUri", "DefinitionUri")
PLACEHOLDER_BUCKET = "tidings-local-placeholder"


class _OfflinePolicyLoader:
    """Managed policies resolve to their ARN by name; no IAM call is made."""

    def load(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class TransformedTemplate:
    cloudformation: dict[str, Any]
    # logical id -> (property name, local path) for every local code or definition location
    local_paths: dict[str, tuple[str, Path]]


def load_template(path: Path) -> dict[str, Any]:
    """Parse YAML or JSON with CloudFormation short tags (!Ref, !Sub, ...)."""
    from cfnlint.decode import decode

    template, problems = decode(str(path))
    if problems or template is None:
        details = "; ".join(str(p) for p in problems) or "empty template"
        raise ValueError(f"{path}: cannot parse template: {details}")
    return dict(template)


def transform_offline(
    template: dict[str, Any], base_dir: Path, parameters: dict[str, str] | None = None
) -> TransformedTemplate:
    """SAM -> CloudFormation with local code locations replaced by placeholders."""
    from samtranslator.translator.transform import transform

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    working = copy.deepcopy(template)
    local_paths: dict[str, tuple[str, Path]] = {}
    for logical_id, resource in working.get("Resources", {}).items():
        properties = resource.get("Properties") or {}
        for prop in _LOCAL_URI_PROPERTIES:
            value = properties.get(prop)
            if isinstance(value, str) and not value.startswith("s3://"):
                local_paths[logical_id] = (prop, (base_dir / value).resolve())
                properties[prop] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}"
    output = transform(working, parameters or {}, _OfflinePolicyLoader())
    return TransformedTemplate(cloudformation=dict(output), local_paths=local_paths)
