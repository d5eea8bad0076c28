"""Read a SAM template as-is and resolve it into a `LocalApp`.

The template goes through aws-sam-translator offline (the same transform CloudFormation runs),
so SAM resources and hand-written CloudFormation are read the same way afterwards. Intrinsic
functions are then resolved to local values: names, ids and ARNs a deployment would produce, and
this API's execute-api URLs rewritten to the local gateway, so handlers run unchanged.

Placeholders (documented): `Ref` to a resource type this module does not know gives
`<stack>-<LogicalId>`; `Fn::GetAZs` gives the region's a/b/c zones. Anything else that cannot be
resolved raises `TemplateError` naming the resource and the property.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from tidings.local.cfn_types import coerce_properties
from tidings.local.dynamic_refs import DynamicReferenceError, DynamicValues
from tidings.local.dynamic_refs import substitute as substitute_references
from tidings.local.model import (
    ACCOUNT_ID,
    DEFAULT_REGION,
    AsyncInvokeConfig,
    Authorizer,
    DomainMapping,
    Function,
    HttpRoute,
    InvokePermission,
    LocalApp,
    NonProxyIntegration,
    Role,
    Route,
    Rule,
    RuleTarget,
    SimpleResource,
    StateMachine,
    Table,
    WebSocketApi,
    arn_service,
)
from tidings.local.parameters import ParameterError, parameter_value
from tidings.local.request_models import Model, ModelError, RequestModels, read_model
from tidings.local.service_integrations import (
    IntegrationUriError,
    ServiceUri,
    is_service_uri,
    parse_service_uri,
    service_operations,
)
from tidings.local.vtl import (
    PASSTHROUGH_BEHAVIORS,
    ResponseMapping,
    VtlError,
    check_selection_expression,
    parse_templates,
)

log = logging.getLogger(__name__)
PLACEHOLDER_BUCKET = "local"
DEFAULT_STACK_NAME = "tidings-local"


class TemplateError(ValueError):
    """The template cannot be run locally; the message names the resource and property."""


class LocalLimit(TemplateError):
    """A form AWS runs but the local stack does not (a remote layer, ...): its function is left out."""


@dataclass(frozen=True)
class LocalEndpoints:
    """Where the local stack listens; known before any function starts."""

    ws_url_base: str  # ws://127.0.0.1:3001
    http_url_base: str  # http://127.0.0.1:3000
    aws_endpoint: str  # http://127.0.0.1:4566


class _PolicyArns(dict[str, str]):
    """SAM's managed-policy map, built from names instead of asking IAM (no AWS account)."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __missing__(self, name: str) -> str:
        return f"arn:aws:iam::aws:policy/{name}"

    def get(self, name: str, default: Any = None) -> str:  # type: ignore[override]
        return self[name]


class _OfflinePolicyLoader:
    def load(self) -> dict[str, str]:
        return _PolicyArns()


def parse_template(path: Path) -> dict[str, Any]:
    """YAML or JSON with CloudFormation short tags, through cfn-lint's decoder."""
    from cfnlint.decode import decode

    template, problems = decode(str(path))
    if template is None:
        detail = "; ".join(str(problem) for problem in problems or [])
        raise TemplateError(f"{path}: cannot parse template: {detail}")
    # plain dicts/lists/strings: the decoder's node classes carry line marks we do not need;
    # CloudFormation reads an unquoted date (`AWSTemplateFormatVersion: 2010-09-09`) as text
    plain: Any = json.loads(json.dumps(template, default=_yaml_scalar_text))
    check_shape(plain, path)
    checked: dict[str, Any] = plain
    return checked


def check_shape(template: Any, path: Path) -> None:
    """The outline CloudFormation requires before anything reads it; TemplateError names the part.

    A mapping with a non-empty `Resources` mapping of typed resources, and parameters whose
    `Default` is a plain value (CloudFormation allows no intrinsic function there).
    """
    if not isinstance(template, dict):
        kind = "empty" if template is None else f"a {type(template).__name__}"
        raise TemplateError(f"{path}: a template is a mapping with Resources, not {kind}")
    resources = template.get("Resources")
    if not isinstance(resources, dict) or not resources:
        raise TemplateError(f"{path}: the template has no Resources")
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            raise TemplateError(f"{path}: resource {logical_id} must be a mapping with a Type")
        if not isinstance(resource.get("Properties", {}), dict):
            raise TemplateError(f"{path}: {logical_id}.Properties must be a mapping")
    for key in ("Parameters", "Conditions", "Mappings", "Outputs", "Globals"):
        if not isinstance(template.get(key, {}), dict):
            raise TemplateError(f"{path}: {key} must be a mapping")
    for name, spec in template.get("Parameters", {}).items():
        if not isinstance(spec, dict):
            raise TemplateError(f"{path}: parameter {name} must be a mapping with a Type")
        default = spec.get("Default")
        values = default if isinstance(default, list) else [default]
        if not all(value is None or isinstance(value, (str, int, float, bool)) for value in values):
            raise TemplateError(
                f"{path}: parameter {name}: Default must be a plain value, not {json.dumps(default)[:80]}"
            )


def _yaml_scalar_text(value: Any) -> str:
    """YAML's timestamps (`2010-09-09`) as the text they were written as; anything else refused."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a template value")


def _local_path(value: Any) -> bool:
    return isinstance(value, str) and not value.startswith(("s3://", "http://", "https://"))


def _load_definition_file(path: Path) -> Any:
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def transform_template(
    template: dict[str, Any], base_dir: Path, parameters: Mapping[str, str], region: str
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Run the SAM transform offline; returns raw CloudFormation and logical id → local code path."""
    from samtranslator.translator.transform import transform

    template = copy.deepcopy(template)
    code_paths: dict[str, Path] = {}
    global_code = template.get("Globals", {}).get("Function", {}).get("CodeUri")
    if _local_path(global_code):
        template["Globals"]["Function"].pop("CodeUri")
    for logical_id, resource in template.get("Resources", {}).items():
        kind = resource.get("Type")
        props = resource.setdefault("Properties", {}) if isinstance(resource, dict) else {}
        if kind == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image":
                raise TemplateError(f"{logical_id}: PackageType Image is not supported locally (zip only)")
            if "CodeUri" not in props and "InlineCode" not in props and _local_path(global_code):
                props["CodeUri"] = global_code
            key = "CodeUri"
        elif kind == "AWS::Serverless::LayerVersion":
            key = "ContentUri"
        elif kind == "AWS::Lambda::Function":
            if _local_path(props.get("Code")):
                code_paths[logical_id] = (base_dir / props["Code"]).resolve()
                props["Code"] = {"S3Bucket": PLACEHOLDER_BUCKET, "S3Key": logical_id}
            continue
        elif kind == "AWS::Lambda::LayerVersion":
            if _local_path(props.get("Content")):
                code_paths[logical_id] = (base_dir / props["Content"]).resolve()
                props["Content"] = {"S3Bucket": PLACEHOLDER_BUCKET, "S3Key": logical_id}
            continue
        elif kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            uri_key = "DefinitionUri" if kind == "AWS::Serverless::StateMachine" else "DefinitionS3Location"
            if _local_path(props.get(uri_key)):
                props["Definition"] = _load_definition_file(base_dir / props.pop(uri_key))
            continue
        else:
            continue
        if _local_path(props.get(key)):
            code_paths[logical_id] = (base_dir / props[key]).resolve()
            props[key] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}"
    previous_region = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # SAM's pseudo-parameter values come from boto's region
    try:
        if "Transform" in template:
            template = transform(template, dict(parameters), _OfflinePolicyLoader())  # type: ignore[arg-type]
    except Exception as error:  # samtranslator raises its own InvalidDocumentException family
        raise TemplateError(f"SAM transform failed: {error}") from error
    finally:
        if previous_region is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous_region
    return template, code_paths


# CloudFormation property that names each resource type, when the template sets it.
_NAME_PROPERTY = {
    "AWS::Lambda::Function": "FunctionName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::SSM::Parameter": "Name",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::ApiGatewayV2::Api": "Name",
}

_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def local_id(logical_id: str, length: int = 10) -> str:
    """A stable lowercase id (API ids, secret suffixes) derived from the logical id."""
    return hashlib.sha256(logical_id.encode()).hexdigest()[:length]


class Resolver:
    """Resolves intrinsic functions of a transformed template to local values."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: Mapping[str, str],
        endpoints: LocalEndpoints,
        region: str,
        stack_name: str,
        embedded: DynamicValues | None = None,
    ) -> None:
        self.template = template
        self.resources: dict[str, dict[str, Any]] = template.get("Resources", {})
        self.endpoints = endpoints
        self.region = region
        self.stack_name = stack_name
        # values already in the embedded services, for SSM parameter types and dynamic references
        self.embedded = embedded
        self.parameters = self._parameter_values(parameters)
        self._names: dict[str, str] = {}
        self._naming: set[str] = set()
        self._conditions: dict[str, bool] = {}
        self._api_stages = self._stages_by_api()
        self._where = ""

    # ---------------------------------------------------------------- parameters and conditions
    def _parameter_values(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in self.template.get("Parameters", {}).items():
            if name in overrides:
                raw: Any = overrides[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default and no override was given")
            try:
                values[name] = parameter_value(name, spec, raw, self._embedded_ssm)
            except ParameterError as error:
                raise TemplateError(str(error)) from None
        for name in overrides:
            if name not in values:
                raise TemplateError(f"parameter override {name} is not a template parameter")
        return values

    def _embedded_ssm(self, name: str) -> str | None:
        """An SSM parameter that exists before the stack (CloudFormation's SSM parameter types)."""
        return self.embedded.ssm_parameter(name, None) if self.embedded is not None else None

    # dynamic references: the template's own parameters and secrets, then the embedded services
    def ssm_parameter(self, name: str, version: str | None) -> str | None:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::SSM::Parameter" or not self.included(logical_id):
                continue
            if name in (self.name_of(logical_id), self.arn_of(logical_id)) and version in (None, "1"):
                value = self.resolve_at(resource.get("Properties", {}).get("Value"), f"{logical_id}.Value")
                return ",".join(value) if isinstance(value, list) else str(value)
        return self.embedded.ssm_parameter(name, version) if self.embedded is not None else None

    def secret_string(self, secret_id: str, version_stage: str | None, version_id: str | None) -> str | None:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") != "AWS::SecretsManager::Secret" or not self.included(logical_id):
                continue
            if secret_id not in (self.name_of(logical_id), self.arn_of(logical_id)):
                continue
            props = resource.get("Properties", {})
            if "SecretString" not in props or version_stage not in (None, "AWSCURRENT") or version_id:
                return None  # generated at start, or a version the template cannot hold
            return str(self.resolve_at(props["SecretString"], f"{logical_id}.SecretString"))
        if self.embedded is None:
            return None
        return self.embedded.secret_string(secret_id, version_stage, version_id)

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = self.template.get("Conditions", {}).get(name)
            if spec is None:
                raise TemplateError(f"{self._where}: unknown condition {name}")
            self._conditions[name] = bool(self._evaluate_condition(spec))
        return self._conditions[name]

    def _evaluate_condition(self, spec: Any) -> bool:
        if isinstance(spec, dict) and len(spec) == 1:
            ((function, args),) = spec.items()
            if function == "Condition":
                return self.condition(args)
            if function == "Fn::Equals":
                left, right = (self.resolve(arg) for arg in args)
                return str(left) == str(right)
            if function == "Fn::Not":
                return not self._evaluate_condition(args[0])
            if function == "Fn::And":
                return all(self._evaluate_condition(arg) for arg in args)
            if function == "Fn::Or":
                return any(self._evaluate_condition(arg) for arg in args)
        raise TemplateError(f"{self._where}: unsupported condition {spec!r}")

    def chosen(self, items: Any) -> list[Any]:
        """A list's items with each `Fn::If` replaced by its chosen branch and `AWS::NoValue` dropped,
        references left unresolved (a function's `Layers`: the layers named, not their ARNs)."""
        out: list[Any] = []
        for item in items if isinstance(items, list) else [items]:
            while isinstance(item, dict) and set(item) == {"Fn::If"}:
                condition, when_true, when_false = item["Fn::If"]
                item = when_true if self.condition(condition) else when_false
            if item != {"Ref": "AWS::NoValue"}:
                out.append(item)
        return out

    def included(self, logical_id: str) -> bool:
        condition = self.resources[logical_id].get("Condition")
        return condition is None or self.condition(condition)

    # ---------------------------------------------------------------- names, refs, attributes
    def type_of(self, logical_id: str) -> str:
        return str(self.resources[logical_id].get("Type", ""))

    def name_of(self, logical_id: str) -> str:
        """The physical name CloudFormation would give (the template's, or stack-LogicalId)."""
        if logical_id in self._names:
            return self._names[logical_id]
        if logical_id in self._naming:
            raise TemplateError(f"{logical_id}: its name refers to itself")
        self._naming.add(logical_id)
        kind = self.type_of(logical_id)
        props = self.resources[logical_id].get("Properties", {})
        name_property = _NAME_PROPERTY.get(kind)
        given = props.get(name_property) if name_property else None
        where = self._where
        self._where = f"{logical_id}.{name_property}"
        name = self.resolve(given) if given is not None else None
        self._where = where
        if not name or name is _NO_VALUE:
            name = f"{self.stack_name}-{logical_id}"
            if kind == "AWS::S3::Bucket":
                name = name.lower()[:63]
            elif kind == "AWS::SQS::Queue" and props.get("FifoQueue"):
                name = f"{name[:75]}.fifo"
            elif kind in ("AWS::Lambda::Function", "AWS::IAM::Role"):
                name = name[:64]
        self._names[logical_id] = str(name)
        self._naming.discard(logical_id)
        return str(name)

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{ACCOUNT_ID if account else ''}:{resource}"

    def arn_of(self, logical_id: str) -> str:
        kind = self.type_of(logical_id)
        name = self.name_of(logical_id)
        if kind == "AWS::Lambda::Function":
            return self.arn("lambda", f"function:{name}")
        if kind == "AWS::DynamoDB::Table":
            return self.arn("dynamodb", f"table/{name}")
        if kind == "AWS::SQS::Queue":
            return self.arn("sqs", name)
        if kind == "AWS::S3::Bucket":
            return self.arn("s3", name, region=False, account=False)
        if kind == "AWS::Events::EventBus":
            return self.arn("events", f"event-bus/{name}")
        if kind == "AWS::Events::Rule":
            bus = self.resources[logical_id].get("Properties", {}).get("EventBusName")
            bus_name = self.bus_name(self.resolve(bus)) if bus else "default"
            return self.arn("events", f"rule/{name}" if bus_name == "default" else f"rule/{bus_name}/{name}")
        if kind == "AWS::SSM::Parameter":
            return self.arn("ssm", f"parameter/{name.lstrip('/')}")
        if kind == "AWS::SecretsManager::Secret":
            return self.arn("secretsmanager", f"secret:{name}-{local_id(logical_id, 6)}")
        if kind == "AWS::StepFunctions::StateMachine":
            return self.arn("states", f"stateMachine:{name}")
        if kind == "AWS::Logs::LogGroup":
            return self.arn("logs", f"log-group:{name}:*")
        if kind == "AWS::IAM::Role":
            return self.arn("iam", f"role/{name}", region=False)
        if kind == "AWS::SNS::Topic":
            return self.arn("sns", name)
        if kind == "AWS::Lambda::LayerVersion":
            return self.arn("lambda", f"layer:{name}:1")
        return self.arn("local", f"{logical_id}")

    def queue_url(self, name: str) -> str:
        return f"{self.endpoints.aws_endpoint}/{ACCOUNT_ID}/{name}"

    def bus_name(self, value: Any) -> str:
        text = str(value)
        return text.rsplit("/", 1)[-1] if text.startswith("arn:") else text

    def ref(self, logical_id: str) -> Any:
        if logical_id in self.parameters:
            return self.parameters[logical_id]
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.arn(
                "cloudformation", f"stack/{self.stack_name}/{local_id(self.stack_name)}"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        if logical_id not in self.resources:
            raise TemplateError(f"{self._where}: Ref to unknown name {logical_id}")
        kind = self.type_of(logical_id)
        if kind in ("AWS::SQS::Queue",):
            return self.queue_url(self.name_of(logical_id))
        if kind in (
            "AWS::SecretsManager::Secret",
            "AWS::StepFunctions::StateMachine",
            "AWS::SNS::Topic",
            "AWS::Lambda::LayerVersion",
        ):
            return self.arn_of(logical_id)
        if kind.startswith("AWS::ApiGatewayV2::"):
            if kind == "AWS::ApiGatewayV2::Stage":
                return self.resolve(self.resources[logical_id]["Properties"].get("StageName", "$default"))
            if kind == "AWS::ApiGatewayV2::DomainName":  # Ref of a custom domain: its name
                return self.resolve(self.resources[logical_id]["Properties"].get("DomainName", ""))
            return local_id(logical_id)
        if kind in _NAME_PROPERTY:
            return self.name_of(logical_id)
        return f"{self.stack_name}-{logical_id}"  # documented placeholder for unknown types

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id not in self.resources:
            raise TemplateError(f"{self._where}: Fn::GetAtt on unknown resource {logical_id}")
        kind = self.type_of(logical_id)
        name = self.name_of(logical_id) if kind in _NAME_PROPERTY else logical_id
        if attribute == "Arn":
            return self.arn_of(logical_id)
        common = {"Name": name, "QueueName": name, "TopicName": name}
        if kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            return f"{self.arn_of(logical_id)}/stream/1970-01-01T00:00:00.000"
        if kind == "AWS::SQS::Queue" and attribute == "QueueUrl":
            return self.queue_url(name)
        if kind == "AWS::S3::Bucket":
            bucket = {
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
                "WebsiteURL": f"http://{name}.s3-website-{self.region}.amazonaws.com",
            }
            if attribute in bucket:
                return bucket[attribute]
        if kind == "AWS::ApiGatewayV2::Api":
            api_id = local_id(logical_id)
            protocol = self.resources[logical_id].get("Properties", {}).get("ProtocolType", "HTTP")
            scheme = "wss" if protocol == "WEBSOCKET" else "https"
            if attribute == "ApiId":
                return api_id
            if attribute == "ApiEndpoint":
                return self.localise(f"{scheme}://{api_id}.execute-api.{self.region}.amazonaws.com")
        if kind == "AWS::StepFunctions::StateMachine" and attribute == "Name":
            return name
        if kind == "AWS::Lambda::LayerVersion" and attribute == "LayerVersionArn":
            return self.arn_of(logical_id)
        if kind == "AWS::SecretsManager::Secret" and attribute == "Id":
            return self.arn_of(logical_id)
        if attribute in common and kind in _NAME_PROPERTY:
            return common[attribute]
        raise TemplateError(
            f"{self._where}: Fn::GetAtt {logical_id}.{attribute} ({kind}) is not supported locally"
        )

    # ---------------------------------------------------------------- execute-api URLs → local
    def _stages_by_api(self) -> dict[str, str]:
        stages: dict[str, str] = {}
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == "AWS::ApiGatewayV2::Stage":
                api = resource.get("Properties", {}).get("ApiId")
                if isinstance(api, dict) and "Ref" in api:
                    stages[str(api["Ref"])] = logical_id
        return stages

    def localise(self, text: str) -> str:
        """Rewrite this app's execute-api URLs to the local gateway (callback and WebSocket)."""
        if "execute-api" not in text:
            return text
        api_ids = [
            local_id(logical_id)
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == "AWS::ApiGatewayV2::Api"
        ]
        if not api_ids:
            return text
        pattern = re.compile(
            r"(https|wss)://(" + "|".join(api_ids) + r")\.execute-api\.[a-z0-9-]+\.amazonaws\.com"
        )

        def replace(match: re.Match[str]) -> str:
            base = self.endpoints.ws_url_base if match.group(1) == "wss" else self.endpoints.http_url_base
            return base.rstrip("/")

        return pattern.sub(replace, text)

    # ---------------------------------------------------------------- intrinsic functions
    def resolve_at(self, value: Any, where: str) -> Any:
        previous = self._where
        self._where = where
        try:
            return self.resolve(value)
        finally:
            self._where = previous

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.localise(self._dynamic(value))
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, args),) = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._intrinsic(key, args)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _intrinsic(self, function: str, args: Any) -> Any:
        if function == "Ref":
            if args == "AWS::NoValue":
                return _NO_VALUE
            return self.ref(str(self.resolve(args)))
        if function == "Fn::GetAtt":
            logical_id, attribute = args.split(".", 1) if isinstance(args, str) else self.resolve(args)
            return self.get_att(str(logical_id), str(attribute))
        if function == "Fn::Sub":
            return self.localise(self._dynamic(self._sub(args)))
        if function == "Fn::Join":
            separator, items = args
            return self._dynamic(str(separator).join(self._text(item) for item in self.resolve(items)))
        if function == "Fn::Cidr":
            block, count, bits = self.resolve(args)
            network = ipaddress.ip_network(str(block), strict=False)
            subnets = network.subnets(new_prefix=network.max_prefixlen - int(bits))
            return [str(subnet) for _, subnet in zip(range(int(count)), subnets, strict=False)]
        if function == "Fn::Length":
            items = self.resolve(args)
            if not isinstance(items, list):
                raise TemplateError(f"{self._where}: Fn::Length needs a list, got {items!r}")
            return len(items)
        if function == "Fn::If":
            condition, when_true, when_false = args
            return self.resolve(when_true if self.condition(condition) else when_false)
        if function in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
            return self._evaluate_condition({function: args})
        if function == "Condition":
            return self.condition(args)
        if function == "Fn::Select":
            index, items = self.resolve(args)
            return items[int(index)]
        if function == "Fn::Split":
            separator, text = self.resolve(args)
            return str(text).split(str(separator))
        if function == "Fn::FindInMap":
            mapping, first, second, *default = args
            table = self.template.get("Mappings", {}).get(self.resolve(mapping), {})
            try:
                return self.resolve(table[self.resolve(first)][self.resolve(second)])
            except KeyError:
                if default and isinstance(default[0], dict) and "DefaultValue" in default[0]:
                    return self.resolve(default[0]["DefaultValue"])
                raise TemplateError(f"{self._where}: Fn::FindInMap {args!r} has no value") from None
        if function == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if function == "Fn::Base64":
            return self.resolve(args)
        if function == "Fn::ToJsonString":
            return json.dumps(self.resolve(args), separators=(",", ":"))
        if function == "Fn::ImportValue":
            raise TemplateError(
                f"{self._where}: Fn::ImportValue needs another stack, which does not run locally"
            )
        raise TemplateError(f"{self._where}: {function} is not supported locally")

    def _dynamic(self, text: str) -> str:
        try:
            return substitute_references(text, self)
        except DynamicReferenceError as error:
            raise TemplateError(f"{self._where}: {error}") from None

    def _text(self, value: Any) -> str:
        if isinstance(value, (dict, list)):
            raise TemplateError(f"{self._where}: expected text, got {value!r}")
        return str(value)

    def _sub(self, args: Any) -> str:
        if isinstance(args, str):
            text, variables = args, {}
        else:
            text, raw_variables = args
            variables = {name: self.resolve(item) for name, item in raw_variables.items()}

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                return self._text(variables[expression])
            if "." in expression and not expression.startswith("AWS::"):
                logical_id, attribute = expression.split(".", 1)
                return self._text(self.get_att(logical_id, attribute))
            return self._text(self.ref(expression))

        return _SUB_VARIABLE.sub(replace, str(text))


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE: Any = _NoValue()


# ---------------------------------------------------------------------------- reading the app
_FUNCTION_ARN = re.compile(
    r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+(:[A-Za-z0-9$_-]+)?"
)
# the file Lambda writes `Code.ZipFile` (`InlineCode`) to, by runtime family
_INLINE_FILE = {"python": "index.py", "nodejs": "index.js"}


def _ref_target(value: Any) -> str | None:
    """The logical id a `Ref` / `GetAtt` / integration-URI `Sub` points at, without resolving it."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            args = value["Fn::GetAtt"]
            return str(args.split(".")[0] if isinstance(args, str) else args[0])
        if "Fn::Sub" in value:
            args = value["Fn::Sub"]
            if isinstance(args, list):
                for variable in args[1].values():
                    target = _ref_target(variable)
                    if target:
                        return target
                text = args[0]
            else:
                text = args
            match = re.search(r"\$\{([A-Za-z0-9]+)\.Arn\}", str(text))
            return match.group(1) if match else None
        if "Fn::Join" in value:
            for item in value["Fn::Join"][1]:
                target = _ref_target(item)
                if target:
                    return target
    return None


def _http_integration_refusal(integration: dict[str, Any]) -> str | None:
    """What an HTTP API integration uses that the local stack does not run: HTTP_PROXY and
    first-class service integrations (IntegrationSubtype); None for a Lambda proxy integration."""
    if "IntegrationSubtype" in integration:
        return f"IntegrationSubtype: {integration['IntegrationSubtype']}"
    kind = integration.get("IntegrationType", "AWS_PROXY")
    return None if kind == "AWS_PROXY" else f"IntegrationType: {kind}"


class _AppReader:
    def __init__(
        self,
        template_path: Path,
        template: dict[str, Any],
        code_paths: dict[str, Path],
        resolver: Resolver,
    ) -> None:
        self.template_path = template_path
        self.template = template
        self.code_paths = code_paths
        self.resolver = resolver
        self.resources = resolver.resources
        self.function_by_arn: dict[str, str] = {}
        self.skipped: dict[str, str] = {}  # functions that cannot run locally, with the reason

    def of_type(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (logical_id, resource.get("Properties", {}))
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == kind and self.resolver.included(logical_id)
        ]

    def function_id_of(self, value: Any, where: str) -> str:
        """The function a Lambda ARN / integration URI refers to, by logical id."""
        target = _ref_target(value)
        if target in self.resources and self.resolver.type_of(str(target)) == "AWS::Lambda::Function":
            return self._runnable(str(target), where)
        resolved = self.resolver.resolve_at(value, where)
        for match in _FUNCTION_ARN.finditer(str(resolved)):
            for arn, logical_id in self.function_by_arn.items():
                if match.group(0) == arn or match.group(0).startswith(arn + ":"):
                    return self._runnable(logical_id, where)
        raise TemplateError(f"{where}: does not refer to a function of this template ({resolved!r})")

    def _runnable(self, function_id: str, where: str) -> str:
        if function_id in self.skipped:
            reason = self.skipped[function_id]
            raise TemplateError(f"{where}: needs function {function_id}, which cannot run locally: {reason}")
        return function_id

    def integration_of(self, target: Any, integrations: Mapping[str, Any], where: str) -> str | None:
        """The integration a route's `Target` names, in any intrinsic form that resolves."""
        if target is None:
            return None
        found = _ref_target(target)
        if found in integrations:
            return found
        resolved = str(self.resolver.resolve_at(target, where))
        integration_id = resolved.rsplit("/", 1)[-1]
        for logical_id in integrations:
            if integration_id in (local_id(logical_id), logical_id):
                return logical_id
        return found or resolved

    def layer_dir(self, value: Any, where: str) -> Path:
        target = _ref_target(value)
        if not target or target not in self.resources:
            raise LocalLimit(f"{where}: only layers of this template can be used locally ({value!r})")
        content = self.resources[target].get("Properties", {}).get("Content", {})
        key = content.get("S3Key") if isinstance(content, dict) else None
        path = self.code_paths.get(str(key)) or self.code_paths.get(target)
        if path is None:
            raise LocalLimit(f"{where}: layer {target} has no local ContentUri")
        return path / "python" if (path / "python").is_dir() else path

    def functions(self) -> dict[str, Function]:
        functions: dict[str, Function] = {}
        for logical_id, _ in self.of_type("AWS::Lambda::Function"):
            self.function_by_arn[self.resolver.arn_of(logical_id)] = logical_id
        async_configs = self.async_invoke_configs()
        for logical_id, props in self.of_type("AWS::Lambda::Function"):
            try:
                functions[logical_id] = self.function(logical_id, props, async_configs)
            except LocalLimit as error:  # the stack starts without it; what needs it stops the start
                self.skipped[logical_id] = str(error)
        return functions

    def inline_code_dir(self, logical_id: str, runtime: str, source: str) -> Path:
        """`InlineCode` / `Code.ZipFile` written where Lambda puts it (`index.py`), in a run folder."""
        family = next((name for name in _INLINE_FILE if runtime.startswith(name)), None)
        if family is None:
            raise LocalLimit(
                f"{logical_id}.Properties.Code.ZipFile: inline code for {runtime!r} is not supported"
            )
        run = local_id(f"{self.template_path}:{self.resolver.stack_name}", 12)
        folder = Path(tempfile.gettempdir()) / "tidings-inline" / run / logical_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / _INLINE_FILE[family]
        if not path.exists() or path.read_text() != source:  # unchanged code keeps its workers warm
            path.write_text(source)
        return folder

    def function(
        self, logical_id: str, props: dict[str, Any], async_configs: dict[str, AsyncInvokeConfig]
    ) -> Function:
        where = f"{logical_id}.Properties"
        code = props.get("Code", {})
        key = code.get("S3Key") if isinstance(code, dict) else None
        code_dir = self.code_paths.get(str(key)) or self.code_paths.get(logical_id)
        runtime = str(self.resolver.resolve_at(props.get("Runtime", ""), f"{where}.Runtime"))
        if code_dir is None and isinstance(code, dict) and "ZipFile" in code:
            source = self.resolver.resolve_at(code["ZipFile"], f"{where}.Code.ZipFile")
            code_dir = self.inline_code_dir(logical_id, runtime, str(source))
        if code_dir is None:
            raise LocalLimit(f"{where}.Code: only local code (CodeUri: a folder, or InlineCode) runs locally")
        if not re.fullmatch(r"python\d+\.\d+|nodejs\d+\.x", runtime):
            raise LocalLimit(f"{where}.Runtime: {runtime!r} is not a Python or Node.js runtime")
        variables = props.get("Environment", {}).get("Variables", {})
        environment = {
            name: _env_text(self.resolver.resolve_at(value, f"{where}.Environment.Variables.{name}"))
            for name, value in variables.items()
        }
        environment = {name: value for name, value in environment.items() if value is not None}
        layers = tuple(
            self.layer_dir(layer, f"{where}.Layers[{index}]")
            for index, layer in enumerate(self.resolver.chosen(props.get("Layers", [])))
        )
        return Function(
            logical_id=logical_id,
            name=self.resolver.name_of(logical_id),
            arn=self.resolver.arn_of(logical_id),
            code_dir=code_dir,
            handler=str(self.resolver.resolve_at(props.get("Handler", ""), f"{where}.Handler")),
            runtime=runtime,
            timeout_s=float(self.resolver.resolve_at(props.get("Timeout", 3), f"{where}.Timeout")),
            memory_mb=int(self.resolver.resolve_at(props.get("MemorySize", 128), f"{where}.MemorySize")),
            environment=environment,  # type: ignore[arg-type]
            layer_dirs=layers,
            architectures=tuple(props.get("Architectures", ["x86_64"])),
            async_config=replace(
                async_configs.get(logical_id, AsyncInvokeConfig()),
                dead_letter_arn=self._optional_text(
                    props.get("DeadLetterConfig", {}).get("TargetArn"), f"{where}.DeadLetterConfig"
                ),
            ),
            role_arn=self._optional_text(props.get("Role"), f"{where}.Role") or "",
            reserved_concurrency=None
            if props.get("ReservedConcurrentExecutions") is None
            else int(
                self.resolver.resolve_at(
                    props["ReservedConcurrentExecutions"], f"{where}.ReservedConcurrentExecutions"
                )
            ),
        )

    def async_invoke_configs(self) -> dict[str, AsyncInvokeConfig]:
        """`AWS::Lambda::EventInvokeConfig` by function (SAM's `EventInvokeConfig` becomes one)."""
        configs: dict[str, AsyncInvokeConfig] = {}
        for logical_id, props in self.of_type("AWS::Lambda::EventInvokeConfig"):
            where = f"{logical_id}.Properties"
            function_id = self.function_id_of(props.get("FunctionName"), f"{where}.FunctionName")
            destinations = props.get("DestinationConfig", {})
            configs[function_id] = AsyncInvokeConfig(
                max_retry_attempts=int(
                    self.resolver.resolve_at(
                        props.get("MaximumRetryAttempts", 2), f"{where}.MaximumRetryAttempts"
                    )
                ),
                max_event_age_s=int(
                    self.resolver.resolve_at(
                        props.get("MaximumEventAgeInSeconds", 21600), f"{where}.MaximumEventAgeInSeconds"
                    )
                ),
                on_success_arn=self._optional_text(
                    destinations.get("OnSuccess", {}).get("Destination"),
                    f"{where}.DestinationConfig.OnSuccess",
                ),
                on_failure_arn=self._optional_text(
                    destinations.get("OnFailure", {}).get("Destination"),
                    f"{where}.DestinationConfig.OnFailure",
                ),
            )
        return configs

    def _optional_text(self, value: Any, where: str) -> str | None:
        return None if value is None else str(self.resolver.resolve_at(value, where))

    def websocket_apis(self) -> list[WebSocketApi]:
        apis: list[WebSocketApi] = []
        for api_logical_id, props in self.of_type("AWS::ApiGatewayV2::Api"):
            if props.get("ProtocolType") != "WEBSOCKET":
                continue
            where = f"{api_logical_id}.Properties"
            stage = "$default"
            stage_id = self.resolver._api_stages.get(api_logical_id)
            if stage_id:
                stage = str(
                    self.resolver.resolve_at(
                        self.resources[stage_id]["Properties"].get("StageName", "$default"),
                        f"{stage_id}.StageName",
                    )
                )
            authorizers: dict[str, Authorizer] = {}
            for authorizer_id, auth in self.of_type("AWS::ApiGatewayV2::Authorizer"):
                if _ref_target(auth.get("ApiId")) != api_logical_id:
                    continue
                sources = self.resolver.resolve_at(
                    auth.get("IdentitySource", []), f"{authorizer_id}.IdentitySource"
                )
                authorizers[authorizer_id] = Authorizer(
                    logical_id=authorizer_id,
                    function_id=self.function_id_of(
                        auth.get("AuthorizerUri"), f"{authorizer_id}.AuthorizerUri"
                    ),
                    identity_sources=tuple(str(source) for source in sources or []),
                    authorizer_id=local_id(authorizer_id),
                )
            integrations = {
                integration_id: integration
                for integration_id, integration in self.of_type("AWS::ApiGatewayV2::Integration")
                if _ref_target(integration.get("ApiId")) == api_logical_id
            }
            route_responses = {
                _ref_target(response.get("RouteId"))
                for _, response in self.of_type("AWS::ApiGatewayV2::RouteResponse")
                if _ref_target(response.get("ApiId")) == api_logical_id
            }
            models = self.api_models(api_logical_id)
            routes: dict[str, Route] = {}
            for route_id, route in self.of_type("AWS::ApiGatewayV2::Route"):
                if _ref_target(route.get("ApiId")) != api_logical_id:
                    continue
                route_where = f"{route_id}.Properties"
                route_key = str(self.resolver.resolve_at(route.get("RouteKey"), f"{route_where}.RouteKey"))
                function_id: str | None = None
                non_proxy: NonProxyIntegration | None = None
                if route.get("Target") is not None:
                    integration_id = self.integration_of(
                        route["Target"], integrations, f"{route_where}.Target"
                    )
                    if integration_id not in integrations:
                        raise TemplateError(
                            f"{route_where}.Target: no integration {integration_id} on this API"
                        )
                    integration = integrations[str(integration_id)]
                    function_id, non_proxy = self.websocket_integration(str(integration_id), integration)
                route_authorizer = _ref_target(route.get("AuthorizerId"))
                authorization = str(route.get("AuthorizationType", "NONE"))
                routes[route_key] = Route(
                    route_key=route_key,
                    function_id=function_id,
                    authorization_type=authorization,
                    authorizer=authorizers.get(str(route_authorizer)) if route_authorizer else None,
                    has_route_response=route_id in route_responses,
                    non_proxy=non_proxy,
                    request_models=self.route_models(route_id, route, models),
                )
            apis.append(
                WebSocketApi(
                    logical_id=api_logical_id,
                    api_id=local_id(api_logical_id),
                    name=self.resolver.name_of(api_logical_id),
                    stage=stage,
                    route_selection_expression=str(
                        self.resolver.resolve_at(
                            props.get("RouteSelectionExpression", "$request.body.action"),
                            f"{where}.RouteSelectionExpression",
                        )
                    ),
                    routes=routes,
                    region=self.resolver.region,
                )
            )
        return apis

    def api_models(self, api_logical_id: str) -> dict[str, Model]:
        """The API's `AWS::ApiGatewayV2::Model`s by name, their schemas checked as draft 4."""
        models: dict[str, Model] = {}
        for model_id, props in self.of_type("AWS::ApiGatewayV2::Model"):
            if _ref_target(props.get("ApiId")) != api_logical_id:
                continue
            where = f"{model_id}.Properties"
            name = str(self.resolver.resolve_at(props.get("Name", model_id), f"{where}.Name"))
            schema = self.resolver.resolve_at(props.get("Schema"), f"{where}.Schema")
            try:
                models[name] = read_model(name, schema, where)
            except ModelError as exc:
                raise TemplateError(str(exc)) from exc
        return models

    def route_models(
        self, route_id: str, route: dict[str, Any], models: Mapping[str, Model]
    ) -> RequestModels | None:
        """A route's request validation: none without a `ModelSelectionExpression` (as on AWS)."""
        where = f"{route_id}.Properties"
        expression = route.get("ModelSelectionExpression")
        if expression is None:
            return None
        expression = str(self.resolver.resolve_at(expression, f"{where}.ModelSelectionExpression"))
        try:
            check_selection_expression(expression, f"{where}.ModelSelectionExpression")
        except VtlError as exc:
            raise TemplateError(str(exc)) from exc
        chosen: dict[str, Model] = {}
        named = self.resolver.resolve_at(route.get("RequestModels", {}), f"{where}.RequestModels")
        for key, name in (named or {}).items():
            if str(name) not in models:
                raise TemplateError(f"{where}.RequestModels.{key}: no model named {name!r} on this API")
            chosen[str(key)] = models[str(name)]
        return RequestModels(expression, chosen)

    def websocket_integration(
        self, integration_id: str, integration: dict[str, Any]
    ) -> tuple[str | None, NonProxyIntegration | None]:
        """The function a WebSocket integration runs and, unless it is a Lambda proxy integration,
        how it maps requests and responses. Forms the local stack does not run are refused by name."""
        where = f"{integration_id}.Properties"
        kind = str(
            self.resolver.resolve_at(integration.get("IntegrationType", ""), f"{where}.IntegrationType")
        )
        uri_where = f"{where}.IntegrationUri"
        if kind == "AWS_PROXY":
            return self.function_id_of(integration.get("IntegrationUri"), uri_where), None
        if kind not in ("AWS", "MOCK"):
            raise TemplateError(
                f"{where}.IntegrationType: {kind or 'none'} is not supported locally"
                " (AWS_PROXY, AWS and MOCK only)"
            )
        for name, refused in (
            ("ConnectionType", "VPC_LINK"),
            ("ContentHandlingStrategy", "CONVERT_TO_BINARY"),
        ):
            if str(integration.get(name, "")) == refused:
                raise TemplateError(f"{where}.{name}: {refused} is not supported locally")
        for name in self.resolver.resolve_at(
            integration.get("RequestParameters", {}), f"{where}.RequestParameters"
        ):
            if name.lower() != "integration.request.header.content-type":
                raise TemplateError(f"{where}.RequestParameters: {name} is not supported locally")
        uri = str(self.resolver.resolve_at(integration.get("IntegrationUri", ""), uri_where))
        function_id: str | None = None
        service: ServiceUri | None = None
        try:
            if kind == "MOCK":
                pass  # API Gateway answers itself: the request template's statusCode decides
            elif is_service_uri(uri):
                service = parse_service_uri(uri, service_operations())
            else:
                function_id = self.function_id_of(integration.get("IntegrationUri"), uri_where)
            passthrough = str(integration.get("PassthroughBehavior", "WHEN_NO_MATCH"))
            if passthrough not in PASSTHROUGH_BEHAVIORS:
                raise VtlError(
                    f"{where}.PassthroughBehavior: {passthrough!r} is not one of {PASSTHROUGH_BEHAVIORS}"
                )
            selection = integration.get("TemplateSelectionExpression")
            if selection is not None:
                check_selection_expression(str(selection), f"{where}.TemplateSelectionExpression")
            responses = []
            for response_id, response in self.of_type("AWS::ApiGatewayV2::IntegrationResponse"):
                if _ref_target(response.get("IntegrationId")) != integration_id:
                    continue
                response_where = f"{response_id}.Properties"
                response_selection = response.get("TemplateSelectionExpression")
                if response_selection is not None:
                    check_selection_expression(
                        str(response_selection),
                        f"{response_where}.TemplateSelectionExpression",
                        response=True,
                    )
                responses.append(
                    ResponseMapping(
                        key=str(response.get("IntegrationResponseKey", "$default")),
                        template_selection_expression=None
                        if response_selection is None
                        else str(response_selection),
                        templates=parse_templates(
                            self.resolver.resolve_at(response.get("ResponseTemplates", {}), response_where),
                            f"{response_where}.ResponseTemplates",
                        ),
                    )
                )
            return function_id, NonProxyIntegration(
                logical_id=integration_id,
                service=service,
                mock=kind == "MOCK",
                request_templates=parse_templates(
                    self.resolver.resolve_at(integration.get("RequestTemplates", {}), where),
                    f"{where}.RequestTemplates",
                ),
                template_selection_expression=None if selection is None else str(selection),
                passthrough_behavior=passthrough,
                credentials_arn=self._optional_text(
                    integration.get("CredentialsArn"), f"{where}.CredentialsArn"
                ),
                responses=tuple(responses),
            )
        except IntegrationUriError as exc:
            raise TemplateError(f"{uri_where}: {exc}") from exc
        except VtlError as exc:
            raise TemplateError(str(exc)) from exc

    def http_routes(self) -> list[HttpRoute]:
        routes: list[HttpRoute] = []
        authorizers: dict[str, tuple[str, tuple[str, ...]]] = {}
        for authorizer_id, auth in self.of_type("AWS::ApiGatewayV2::Authorizer"):
            api = _ref_target(auth.get("ApiId"))
            is_http = (
                bool(api)
                and self.resources.get(str(api), {}).get("Properties", {}).get("ProtocolType") == "HTTP"
            )
            if is_http and auth.get("AuthorizerType") == "REQUEST":
                sources = self.resolver.resolve_at(auth.get("IdentitySource", []), authorizer_id)
                authorizers[authorizer_id] = (
                    self.function_id_of(auth.get("AuthorizerUri"), f"{authorizer_id}.AuthorizerUri"),
                    tuple(str(source) for source in sources or []),
                )
        integrations = dict(self.of_type("AWS::ApiGatewayV2::Integration"))
        for route_id, route in self.of_type("AWS::ApiGatewayV2::Route"):
            api = _ref_target(route.get("ApiId"))
            if not api or self.resources.get(api, {}).get("Properties", {}).get("ProtocolType") != "HTTP":
                continue
            route_key = str(self.resolver.resolve_at(route.get("RouteKey"), f"{route_id}.RouteKey"))
            integration_id = self.integration_of(route.get("Target"), integrations, f"{route_id}.Target")
            if integration_id not in integrations:
                continue
            refused = _http_integration_refusal(integrations[str(integration_id)])
            if refused:
                raise TemplateError(
                    f"{integration_id}.Properties.{refused} is not supported locally (AWS_PROXY only)"
                )
            method, _, path = route_key.partition(" ")
            authorizer = authorizers.get(str(_ref_target(route.get("AuthorizerId"))))
            routes.append(
                HttpRoute(
                    api_logical_id=api,
                    method=method,
                    path=path or "/",
                    function_id=self.function_id_of(
                        integrations[str(integration_id)].get("IntegrationUri"),
                        f"{integration_id}.IntegrationUri",
                    ),
                    authorizer_function_id=authorizer[0] if authorizer else None,
                    identity_sources=authorizer[1] if authorizer else (),
                    authorizer_id=local_id(str(_ref_target(route.get("AuthorizerId")))) if authorizer else "",
                )
            )
        routes.extend(self._sam_http_api_routes(routes))
        return routes

    def _sam_http_api_routes(self, found: list[HttpRoute]) -> list[HttpRoute]:
        """SAM puts HttpApi events into an OpenAPI body; read routes from the x-amazon integration."""
        routes: list[HttpRoute] = []
        for api_logical_id, props in self.of_type("AWS::ApiGatewayV2::Api"):
            body = props.get("Body")
            if not isinstance(body, dict):
                continue
            for path, methods in body.get("paths", {}).items():
                for method, operation in methods.items():
                    integration = operation.get("x-amazon-apigateway-integration", {})
                    uri = integration.get("uri")
                    if uri is None:
                        continue
                    method_name = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                    security = operation.get("security") or []
                    authorizer_function: str | None = None
                    authorizer_id = ""
                    sources: tuple[str, ...] = ()
                    for requirement in security:
                        for name in requirement:
                            scheme = body.get("components", {}).get("securitySchemes", {}).get(name, {})
                            sam_auth = scheme.get("x-amazon-apigateway-authorizer", {})
                            if sam_auth.get("type") == "request":
                                authorizer_function = self.function_id_of(
                                    sam_auth.get("authorizerUri"), f"{api_logical_id}.Body.{name}"
                                )
                                authorizer_id = local_id(f"{api_logical_id}.{name}")
                                raw = sam_auth.get("identitySource", "")
                                parts = raw if isinstance(raw, list) else str(raw).split(",")
                                sources = tuple(str(part).strip() for part in parts if str(part).strip())
                    route = HttpRoute(
                        api_logical_id=api_logical_id,
                        method=method_name,
                        path=path,
                        function_id=self.function_id_of(uri, f"{api_logical_id}.Body.paths.{path}.{method}"),
                        authorizer_function_id=authorizer_function,
                        identity_sources=sources,
                        authorizer_id=authorizer_id,
                    )
                    if route not in found:
                        routes.append(route)
        return routes

    def permissions(self) -> list[InvokePermission]:
        """Every `AWS::Lambda::Permission` on a function of this template (SAM's included)."""
        found: list[InvokePermission] = []
        for logical_id, props in self.of_type("AWS::Lambda::Permission"):
            where = f"{logical_id}.Properties"
            function_id = self._permission_function(props.get("FunctionName"), f"{where}.FunctionName")
            if function_id is None:
                continue  # a function of another stack: not served locally
            principal = self.resolver.resolve_at(props.get("Principal", ""), f"{where}.Principal")
            found.append(
                InvokePermission(
                    logical_id=logical_id,
                    function_id=function_id,
                    action=str(self.resolver.resolve_at(props.get("Action", ""), f"{where}.Action")),
                    principal=str(principal),
                    source_arn=self._optional_text(props.get("SourceArn"), f"{where}.SourceArn"),
                    source_account=self._optional_text(props.get("SourceAccount"), f"{where}.SourceAccount"),
                )
            )
        return found

    def _permission_function(self, value: Any, where: str) -> str | None:
        """FunctionName may be a Ref, a GetAtt, a name, an ARN or a qualified ARN."""
        target = _ref_target(value)
        if target in self.resources and self.resolver.type_of(str(target)) == "AWS::Lambda::Function":
            return str(target)
        text = str(self.resolver.resolve_at(value, where))
        for logical_id in self.function_by_arn.values():
            arn = self.resolver.arn_of(logical_id)
            if text in (arn, self.resolver.name_of(logical_id)) or text.startswith(arn + ":"):
                return logical_id
        return None

    def tables(self) -> list[Table]:
        return [
            Table(
                logical_id=logical_id,
                name=self.resolver.name_of(logical_id),
                arn=self.resolver.arn_of(logical_id),
                properties=coerce_properties(
                    "AWS::DynamoDB::Table", self.resolver.resolve_at(props, f"{logical_id}.Properties")
                ),
            )
            for logical_id, props in self.of_type("AWS::DynamoDB::Table")
        ]

    def state_machines(self) -> dict[str, StateMachine]:
        machines: dict[str, StateMachine] = {}
        for logical_id, props in self.of_type("AWS::StepFunctions::StateMachine"):
            where = f"{logical_id}.Properties"
            definition: Any = props.get("Definition")
            if definition is None and "DefinitionString" in props:
                definition = json.loads(str(self.resolver.resolve_at(props["DefinitionString"], where)))
            definition = self.resolver.resolve_at(definition, f"{where}.Definition")
            substitutions = self.resolver.resolve_at(
                props.get("DefinitionSubstitutions", {}), f"{where}.DefinitionSubstitutions"
            )
            if substitutions:
                definition = _substitute(
                    definition, {key: str(value) for key, value in substitutions.items()}
                )
            if not isinstance(definition, dict):
                raise TemplateError(f"{where}.Definition: expected an ASL object")
            machines[logical_id] = StateMachine(
                logical_id=logical_id,
                name=self.resolver.name_of(logical_id),
                arn=self.resolver.arn_of(logical_id),
                definition=definition,
                role_arn=self._optional_text(props.get("RoleArn"), f"{where}.RoleArn") or "",
                machine_type=self._optional_text(props.get("StateMachineType"), f"{where}.StateMachineType")
                or "STANDARD",
            )
        return machines

    def target_kind(self, arn: str) -> tuple[str, str]:
        service = arn_service(arn)
        resource_id = ""
        for logical_id in self.resources:
            known = self.resolver.included(logical_id) and self.resolver.type_of(logical_id) in _NAME_PROPERTY
            if known and self.resolver.arn_of(logical_id) == arn:
                resource_id = logical_id
                break
        kind = {"lambda": "lambda", "states": "states", "sqs": "sqs", "events": "events", "sns": "sns"}.get(
            service, service or "unknown"
        )
        return kind, resource_id

    def rules(self) -> list[Rule]:
        rules: list[Rule] = []
        for logical_id, props in self.of_type("AWS::Events::Rule"):
            where = f"{logical_id}.Properties"
            if "EventPattern" not in props:
                continue  # schedules run on time, not on events; the local stack does not fire them
            if str(props.get("State", "ENABLED")) == "DISABLED":
                continue
            bus = props.get("EventBusName")
            bus_name = (
                self.resolver.bus_name(self.resolver.resolve_at(bus, f"{where}.EventBusName"))
                if bus
                else "default"
            )
            pattern = self.resolver.resolve_at(props["EventPattern"], f"{where}.EventPattern")
            if isinstance(pattern, str):
                pattern = json.loads(pattern)
            targets: list[RuleTarget] = []
            for index, target in enumerate(
                self.resolver.resolve_at(props.get("Targets", []), f"{where}.Targets")
            ):
                arn = str(target["Arn"])
                kind, resource_id = self.target_kind(arn)
                retry = target.get("RetryPolicy", {})
                targets.append(
                    RuleTarget(
                        target_id=str(target.get("Id", f"Target{index}")),
                        arn=arn,
                        kind=kind,
                        resource_id=resource_id,
                        retry_attempts=int(retry.get("MaximumRetryAttempts", 185)),
                        max_event_age_s=int(retry.get("MaximumEventAgeInSeconds", 86400)),
                        dead_letter_arn=target.get("DeadLetterConfig", {}).get("Arn"),
                        input_path=target.get("InputPath"),
                        input=target.get("Input"),
                    )
                )
            rules.append(
                Rule(
                    logical_id=logical_id,
                    name=self.resolver.name_of(logical_id),
                    bus_name=bus_name,
                    pattern=pattern,
                    targets=tuple(targets),
                )
            )
        return rules

    def domain_mappings(self) -> list[DomainMapping]:
        """Each `AWS::ApiGatewayV2::ApiMapping`: a custom domain name's path to an API stage."""
        mappings: list[DomainMapping] = []
        for logical_id, props in self.of_type("AWS::ApiGatewayV2::ApiMapping"):
            where = f"{logical_id}.Properties"
            domain = str(self.resolver.resolve_at(props.get("DomainName", ""), f"{where}.DomainName"))
            api_id = str(self.resolver.resolve_at(props.get("ApiId", ""), f"{where}.ApiId"))
            stage = str(self.resolver.resolve_at(props.get("Stage", ""), f"{where}.Stage"))
            key = str(self.resolver.resolve_at(props.get("ApiMappingKey", ""), f"{where}.ApiMappingKey"))
            if not domain or not api_id or not stage:
                raise TemplateError(f"{where}: an API mapping needs DomainName, ApiId and Stage")
            mappings.append(DomainMapping(domain.lower().rstrip("."), api_id, stage, key.strip("/")))
        return mappings

    def simple_resources(self) -> list[SimpleResource]:
        kinds = {
            "AWS::S3::Bucket": "bucket",
            "AWS::SQS::Queue": "queue",
            "AWS::Events::EventBus": "bus",
            "AWS::SSM::Parameter": "ssm",
            "AWS::SecretsManager::Secret": "secret",
            "AWS::SNS::Topic": "topic",
        }
        found: list[SimpleResource] = []
        for logical_id, resource in self.resources.items():
            kind = kinds.get(str(resource.get("Type")))
            if kind is None or not self.resolver.included(logical_id):
                continue
            found.append(
                SimpleResource(
                    logical_id=logical_id,
                    kind=kind,
                    name=self.resolver.name_of(logical_id),
                    arn=self.resolver.arn_of(logical_id),
                    properties=coerce_properties(
                        str(resource.get("Type")),
                        self.resolver.resolve_at(resource.get("Properties", {}), f"{logical_id}.Properties"),
                    ),
                )
            )
        return found

    def roles(self) -> dict[str, Role]:
        """Each AWS::IAM::Role with its inline policies, managed policy ARNs and the
        AWS::IAM::Policy / AWS::IAM::ManagedPolicy resources attached to it."""
        attached: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        attached_arns: dict[str, list[str]] = {}
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for logical_id, props in self.of_type(kind):
                where = f"{logical_id}.Properties"
                document = self.resolver.resolve_at(props.get("PolicyDocument", {}), where)
                for role in props.get("Roles", []):
                    target = _ref_target(role)
                    if target is None:
                        continue
                    attached.setdefault(target, []).append((logical_id, document))
        for logical_id, props in self.of_type("AWS::IAM::Role"):
            for arn in props.get("ManagedPolicyArns", []):
                target = _ref_target(arn)
                if target is not None and self.resolver.type_of(target) == "AWS::IAM::ManagedPolicy":
                    managed = self.resources[target].get("Properties", {}).get("PolicyDocument", {})
                    document = self.resolver.resolve_at(managed, f"{target}.Properties.PolicyDocument")
                    attached.setdefault(logical_id, []).append((target, document))
                else:
                    attached_arns.setdefault(logical_id, []).append(
                        str(self.resolver.resolve_at(arn, f"{logical_id}.Properties.ManagedPolicyArns"))
                    )
        roles: dict[str, Role] = {}
        for logical_id, props in self.of_type("AWS::IAM::Role"):
            where = f"{logical_id}.Properties"
            documents = [
                (
                    str(self.resolver.resolve_at(policy.get("PolicyName", ""), f"{where}.Policies")),
                    self.resolver.resolve_at(policy.get("PolicyDocument", {}), f"{where}.Policies"),
                )
                for policy in props.get("Policies", [])
            ]
            arn = self.resolver.arn_of(logical_id)
            roles[arn] = Role(
                logical_id=logical_id,
                arn=arn,
                documents=tuple(documents + attached.get(logical_id, [])),
                managed_policy_arns=tuple(attached_arns.get(logical_id, [])),
            )
        return roles

    def resource_policies(self) -> dict[str, tuple[dict[str, Any], ...]]:
        """Queue and topic policies by the ARN of each queue / topic they apply to."""
        found: dict[str, list[dict[str, Any]]] = {}
        for kind, list_key in (("AWS::SQS::QueuePolicy", "Queues"), ("AWS::SNS::TopicPolicy", "Topics")):
            for logical_id, props in self.of_type(kind):
                where = f"{logical_id}.Properties"
                document = self.resolver.resolve_at(props.get("PolicyDocument", {}), where)
                for entry in props.get(list_key, []):
                    target = _ref_target(entry)
                    if target is None or target not in self.resources:
                        continue
                    found.setdefault(self.resolver.arn_of(target), []).append(document)
        return {arn: tuple(documents) for arn, documents in found.items()}

    def outputs(self) -> dict[str, str]:
        outputs: dict[str, str] = {}
        for name, output in self.template.get("Outputs", {}).items():
            condition = output.get("Condition")
            if condition and not self.resolver.condition(condition):
                continue
            try:
                value = self.resolver.resolve_at(output.get("Value"), f"Outputs.{name}.Value")
            except TemplateError as exc:
                # an output naming an AWS-only resource (a CDN, say) must not stop the stack
                log.info("output %s has no local value: %s", name, exc)
                continue
            outputs[name] = value if isinstance(value, str) else json.dumps(value)
        return outputs


def _env_text(value: Any) -> str | None:
    """Lambda environment values are strings; CloudFormation turns numbers and booleans into text."""
    if value is _NO_VALUE:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise TemplateError(f"environment value must be text, got {value!r}")
    return str(value)


def _substitute(value: Any, substitutions: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _SUB_VARIABLE.sub(lambda match: substitutions.get(match.group(1), match.group(0)), value)
    if isinstance(value, list):
        return [_substitute(item, substitutions) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, substitutions) for key, item in value.items()}
    return value


def load_app(
    template_path: Path | str,
    endpoints: LocalEndpoints,
    *,
    parameter_overrides: Mapping[str, str] | None = None,
    region: str = DEFAULT_REGION,
    stack_name: str = DEFAULT_STACK_NAME,
    embedded: DynamicValues | None = None,
) -> LocalApp:
    """Read `template_path` and resolve everything the local stack serves.

    `embedded` answers for SSM parameters and secrets that exist before the stack (SSM parameter
    types, dynamic references to what the template does not declare itself)."""
    path = Path(template_path).resolve()
    raw = parse_template(path)
    overrides = dict(parameter_overrides or {})
    # SAM needs parameter values for the few intrinsics it resolves itself (e.g. AutoPublishAlias)
    sam_parameters = {
        name: overrides.get(name, spec.get("Default"))
        for name, spec in raw.get("Parameters", {}).items()
        if name in overrides or "Default" in spec
    }
    transformed, code_paths = transform_template(raw, path.parent, sam_parameters, region)
    resolver = Resolver(transformed, overrides, endpoints, region, stack_name, embedded)
    reader = _AppReader(path, transformed, code_paths, resolver)
    functions = reader.functions()
    app = LocalApp(
        template_path=path,
        region=region,
        parameters={
            name: ",".join(value) if isinstance(value, list) else _env_text(value) or ""
            for name, value in resolver.parameters.items()
        },
        websocket_apis=reader.websocket_apis(),
        http_routes=reader.http_routes(),
        functions=functions,
        tables=reader.tables(),
        rules=reader.rules(),
        state_machines=reader.state_machines(),
        resources=reader.simple_resources(),
        outputs=reader.outputs(),
        skipped=dict(reader.skipped),
        roles=reader.roles(),
        resource_policies=reader.resource_policies(),
        permissions=reader.permissions(),
        domain_mappings=reader.domain_mappings(),
    )
    return app
