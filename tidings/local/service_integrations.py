"""AWS service integrations of API Gateway (`IntegrationType: AWS`), pure.

An integration URI `arn:aws:apigateway:REGION:SERVICE:action/ACTION` (or, for SQS,
`arn:aws:apigateway:REGION:sqs:path/ACCOUNT/QUEUE` with the action in the body) names a service
call; API Gateway sends the rendered request template as that call's body, signed with the
integration's `CredentialsArn` role. Here the URI is read and checked at start, and each rendered
body becomes one `ServiceCall(service, operation, params)` for a boto3 client: JSON bodies for
the JSON-protocol services, form bodies (`Action=SendMessage&MessageBody=...`) for the query
protocol, with each value converted to the type the operation's input member declares.

The answer is the service's as API Gateway receives it: API Gateway sends `Accept:
application/json`, so a JSON-protocol service (DynamoDB, Step Functions) answers its JSON body and
a Query-protocol one (SNS; SQS called with a form body) its Query answer in JSON form,
`{"PublishResponse": {"PublishResult": {...}, "ResponseMetadata": {"RequestId": ...}}}`, errors as
`{"Error": {"Code", "Message", "Type"}, "RequestId"}` (`query_answer`, `query_error`).

Supported: DynamoDB, SQS, SNS, Step Functions (by `arn:aws:apigateway:...:states:action/...`).
Anything else is refused at start, by name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol
from urllib.parse import parse_qsl

import botocore.session

# the URI's service part → boto3's service name
SERVICES = {"dynamodb": "dynamodb", "sqs": "sqs", "sns": "sns", "states": "stepfunctions"}


class IntegrationUriError(ValueError):
    """An integration URI the local stack does not run; the message names it."""


class ServiceRequestError(ValueError):
    """A rendered request that cannot become a call (API Gateway would send it and fail)."""


@dataclass(frozen=True)
class ServiceUri:
    region: str
    service: str  # boto3 name: dynamodb | sqs | sns | stepfunctions
    action: str | None  # PascalCase operation; None for the SQS path form (the body says)
    path: str | None = None  # "ACCOUNT/QUEUE" for the SQS path form


@dataclass(frozen=True)
class ServiceCall:
    service: str
    operation: str  # PascalCase, as in the service's API (PutItem)
    params: dict[str, Any]
    # API Gateway calls the service's Query protocol: it answers `query_answer`'s JSON form (a
    # Step Functions SDK Task, which leaves this False, gets the SDK's parsed answer instead)
    query_protocol: bool = False


@dataclass(frozen=True)
class ServiceResult:
    """What the service answered: the HTTP status and the JSON body a template reads."""

    status: int
    body: str


class ServiceBackend(Protocol):
    """Performs a call against the embedded AWS services with the integration's role."""

    async def call(self, call: ServiceCall, role_arn: str | None) -> ServiceResult: ...


def is_service_uri(uri: str) -> bool:
    parts = uri.split(":", 5)
    return len(parts) == 6 and parts[2] == "apigateway" and parts[4] != "lambda"


def parse_service_uri(uri: str, operations: Mapping[str, Collection[str]]) -> ServiceUri:
    """Read `arn:aws:apigateway:REGION:SERVICE:action/ACTION` (or `path/...` for SQS).

    `operations` maps each boto3 service name to its operation names (from botocore's model), so
    that an unknown action is refused at start.
    """
    parts = uri.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "apigateway":
        raise IntegrationUriError(f"{uri!r} is not an API Gateway integration URI")
    region, subdomain, resource = parts[3], parts[4], parts[5]
    service = SERVICES.get(subdomain)
    if service is None:
        supported = ", ".join(sorted(SERVICES))
        raise IntegrationUriError(
            f"AWS service integration with {subdomain!r} is not supported locally (only {supported})"
        )
    kind, _, rest = resource.partition("/")
    if kind == "action" and rest:
        if rest not in operations.get(service, ()):
            raise IntegrationUriError(f"{subdomain} has no action {rest!r}")
        return ServiceUri(region, service, rest)
    if kind == "path" and service == "sqs" and rest.count("/") == 1 and all(rest.split("/")):
        return ServiceUri(region, service, None, rest)
    raise IntegrationUriError(
        f"{uri!r}: only action/ACTION URIs (and path/ACCOUNT/QUEUE for sqs) are supported locally"
    )


def _query_value(value: str, kind: str) -> Any:
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("float", "double"):
        return float(value)
    if kind == "boolean":
        return value.lower() == "true"
    return value


def build_call(
    uri: ServiceUri,
    body: str,
    *,
    member_types: Mapping[str, Mapping[str, str]],
    queue_url_base: str,
) -> ServiceCall:
    """The call a rendered body makes.

    `member_types` maps an operation name to its input members' scalar types (`string`,
    `integer`, `boolean`, ...; from botocore's model), used to type form values.
    `queue_url_base` is the embedded endpoint, for the SQS path form's QueueUrl.
    """
    text = body.strip()
    params: dict[str, Any]
    action = uri.action
    query = not text.startswith("{") or speaks_query(uri.service)
    if text.startswith("{"):
        try:
            decoded = json.loads(text)
        except ValueError as exc:
            raise ServiceRequestError(f"the request body is not valid JSON: {exc}") from exc
        params = dict(decoded)
    else:
        form = parse_qsl(text, keep_blank_values=True)
        fields = dict(form)
        form_action = fields.pop("Action", None)
        fields.pop("Version", None)
        action = action or form_action
        nested = sorted(name for name in fields if "." in name)
        if nested:
            raise ServiceRequestError(
                f"form parameters with members ({', '.join(nested)}) are not supported locally; send JSON"
            )
        if action is None:
            raise ServiceRequestError("the request names no Action")
        types = member_types.get(action, {})
        params = {name: _query_value(value, types.get(name, "string")) for name, value in fields.items()}
    if action is None:
        raise ServiceRequestError("the request names no Action")
    if uri.path is not None:
        if action not in member_types:
            raise ServiceRequestError(f"sqs has no action {action!r}")
        params.setdefault("QueueUrl", f"{queue_url_base.rstrip('/')}/{uri.path}")
    return ServiceCall(uri.service, action, params, query_protocol=query)


def error_result(status: int, code: str, message: str) -> ServiceResult:
    """An AWS JSON error body (`__type`, `message`), as a template sees it."""
    return ServiceResult(status, json.dumps({"__type": code, "message": message}))


def _compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def query_answer(call: ServiceCall, parsed: Mapping[str, Any], request_id: str) -> ServiceResult:
    """A Query-protocol service's answer in JSON form, from boto3's parsed answer: every member of
    the operation's output, null when absent (the apigw-websocket-api-sns sample answers
    `{"PublishResponse":{"PublishResult":{"MessageId":"...","SequenceNumber":null},
    "ResponseMetadata":{"RequestId":"..."}}}`)."""
    shape = _service_model(call.service).operation_model(call.operation).output_shape
    response: dict[str, Any] = {}
    if shape is not None:
        response[f"{call.operation}Result"] = _query_value_json(shape, dict(parsed))
    response["ResponseMetadata"] = {"RequestId": request_id}
    return ServiceResult(200, _compact({f"{call.operation}Response": response}))


def query_error(status: int, code: str, message: str, request_id: str) -> ServiceResult:
    """A Query-protocol service's error in JSON form (`Type`: Sender for 4xx, Receiver for 5xx)."""
    kind = "Receiver" if status >= 500 else "Sender"
    error = {"Error": {"Code": code, "Message": message, "Type": kind}, "RequestId": request_id}
    return ServiceResult(status, _compact(error))


def _query_value_json(shape: Any, value: Any) -> Any:
    """`value` (boto3's parsed form) as JSON, structures with all their members."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        given = value if isinstance(value, Mapping) else {}
        return {name: _query_value_json(member, given.get(name)) for name, member in shape.members.items()}
    if kind == "list":
        return [_query_value_json(shape.member, item) for item in value]
    if kind == "map":
        return {str(key): _query_value_json(shape.value, item) for key, item in value.items()}
    if kind == "timestamp" and hasattr(value, "timestamp"):
        return value.timestamp()
    if kind == "blob" and isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


# ---------------------------------------------------------------------------- botocore's models
# Read from the service models botocore ships (package data, loaded once), never from the network.
_SCALARS = frozenset({"string", "integer", "long", "boolean", "float", "double"})


@cache
def service_operations() -> Mapping[str, Collection[str]]:
    """Operation names of each supported service, from botocore's service models."""
    session = botocore.session.get_session()
    return {name: frozenset(session.get_service_model(name).operation_names) for name in SERVICES.values()}


@cache
def _service_model(service: str) -> Any:
    """botocore's model of a supported service, read once (25 ms a read for SNS)."""
    return botocore.session.get_session().get_service_model(service)


def speaks_query(service: str) -> bool:
    """Whether the service's API is the Query protocol only (SNS), from botocore's model."""
    return bool(_service_model(service).protocol == "query")


@cache
def member_types(service: str) -> Mapping[str, Mapping[str, str]]:
    """Each operation's scalar input members and their types (form bodies are typed with them)."""
    model = botocore.session.get_session().get_service_model(service)
    types: dict[str, dict[str, str]] = {}
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        members = shape.members if shape is not None else {}
        types[name] = {
            member: member_shape.type_name
            for member, member_shape in members.items()
            if member_shape.type_name in _SCALARS
        }
    return types
