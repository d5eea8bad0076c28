"""Step Functions Task resources beyond Lambda, pure: which ones run locally, the request each
makes, and the error names Step Functions gives their failures.

- `arn:aws:states:::apigateway:invoke`: an HTTP call to one of the template's APIs (ApiEndpoint
  `{apiId}.execute-api.{region}.amazonaws.com`, Method, Stage, Path, QueryParameters, Headers,
  RequestBody, AuthType); the result is `{ResponseBody, Headers, StatusCode, StatusText}` and a
  status of 400 or more fails the task with `ApiGateway.{status}`.
- the optimized integrations `dynamodb:putItem|getItem|updateItem|deleteItem`, `sns:publish`,
  `sqs:sendMessage`, `events:putEvents`, `states:startExecution`: the API call with the Task's
  Parameters (JSON objects given for string members such as `MessageBody` or an entry's `Detail`
  are sent as JSON text, as Step Functions does); errors `DynamoDB.ConditionalCheckFailedException`,
  `SQS.AmazonSQSException`, ...
- `arn:aws:states:::aws-sdk:SERVICE:apiAction`: any operation of botocore's model for that service;
  errors `ServiceName.ErrorNameException` (ServiceName in the SDK's PascalCase, e.g. `DynamoDb`,
  `Sfn`; an error the service model does not declare is `ServiceName.ServiceNameException`).

Anything else (activities, `.sync` and `.waitForTaskToken` patterns, other optimized services) is
named by `unsupported_tasks` so the stack says so at start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol
from urllib.parse import quote

import botocore.session

from tidings.local.service_integrations import ServiceCall, ServiceResult

STATES_PREFIX = "arn:aws:states:::"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
API_INVOKE = "arn:aws:states:::apigateway:invoke"
AWS_SDK = "arn:aws:states:::aws-sdk:"

# optimized integration → (boto3 service, actions, error prefix, generic exception)
OPTIMIZED: dict[str, tuple[str, frozenset[str], str, str]] = {
    "dynamodb": (
        "dynamodb",
        frozenset({"putItem", "getItem", "updateItem", "deleteItem"}),
        "DynamoDB",
        "AmazonDynamoDBException",
    ),
    "sns": ("sns", frozenset({"publish"}), "SNS", "AmazonSNSException"),
    "sqs": ("sqs", frozenset({"sendMessage"}), "SQS", "AmazonSQSException"),
    "events": ("events", frozenset({"putEvents"}), "EventBridge", "AmazonEventBridgeException"),
    "states": ("stepfunctions", frozenset({"startExecution"}), "StepFunctions", "AWSStepFunctionsException"),
}
# aws-sdk service names that are not botocore's
SDK_SERVICES = {"sfn": "stepfunctions", "eventbridge": "events", "cloudwatchlogs": "logs"}
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
_API_ENDPOINT = re.compile(r"^([a-z0-9]+)\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


class TaskError(Exception):
    """A task's failure as Step Functions names it (stepfunctions.py turns it into StatesError)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


# ---------------------------------------------------------------------------- resources
@dataclass(frozen=True)
class TaskResource:
    kind: str  # lambda | lambda-invoke | apigateway | service | unsupported
    service: str = ""  # boto3 service name (kind "service")
    operation: str = ""  # PascalCase operation (kind "service")
    error_prefix: str = ""  # `DynamoDB`, `DynamoDb`, `SQS`, ...
    generic_error: str = ""  # the exception name of an error the model does not declare
    optimized: bool = False
    reason: str = ""  # why it is unsupported


def classify(resource: str) -> TaskResource:
    """What a Task's `Resource` is, and whether the local stack runs it."""
    if resource.startswith("arn:aws:lambda:"):
        return TaskResource("lambda")
    if re.match(r"^arn:aws:states:[^:]*:[^:]*:activity:", resource):
        return TaskResource("unsupported", reason="an activity")
    if not resource.startswith(STATES_PREFIX):
        return TaskResource("unsupported", reason="not a Lambda function or a Step Functions integration")
    for pattern in (".sync:2", ".sync", ".waitForTaskToken"):
        if resource.endswith(pattern):
            return TaskResource(
                "unsupported",
                reason=f"the {pattern.removesuffix(':2')} integration pattern",
            )
    if resource == LAMBDA_INVOKE:
        return TaskResource("lambda-invoke")
    if resource == API_INVOKE:
        return TaskResource("apigateway")
    if resource.startswith(AWS_SDK):
        service_name, _, action = resource.removeprefix(AWS_SDK).partition(":")
        service = sdk_service(service_name)
        if service is None or not action:
            return TaskResource("unsupported", reason=f"botocore knows no service {service_name!r}")
        operation = action[:1].upper() + action[1:]
        if operation not in operation_names(service):
            return TaskResource("unsupported", reason=f"{service_name} has no API action {action!r}")
        prefix = sdk_error_prefix(service)
        return TaskResource("service", service, operation, prefix, f"{prefix}Exception")
    integration, _, action = resource.removeprefix(STATES_PREFIX).partition(":")
    optimized = OPTIMIZED.get(integration)
    if optimized is None or action not in optimized[1]:
        return TaskResource("unsupported", reason="an optimized integration the local stack does not run")
    service, _, prefix, generic = optimized
    return TaskResource("service", service, action[:1].upper() + action[1:], prefix, generic, optimized=True)


@dataclass(frozen=True)
class UnsupportedTask:
    state: str  # the state's name (Map / Parallel states inside, by their own name)
    resource: str
    reason: str

    def line(self, machine: str) -> str:
        return (
            f"state machine {machine}, state {self.state!r}: Task resource {self.resource} "
            f"is not supported locally ({self.reason}); an execution that reaches it fails"
        )


def unsupported_tasks(definition: Mapping[str, Any]) -> list[UnsupportedTask]:
    """Every Task state of a definition (Map and Parallel branches included) the stack cannot run."""
    return [
        UnsupportedTask(name, resource, verdict.reason)
        for name, resource in _task_resources(definition)
        if (verdict := classify(resource)).kind == "unsupported"
    ]


def _task_resources(definition: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    states = definition.get("States")
    if not isinstance(states, dict):
        return
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        if state.get("Type") == "Task":
            yield str(name), str(state.get("Resource", ""))
        for branch in state.get("Branches", []) if isinstance(state.get("Branches"), list) else []:
            if isinstance(branch, dict):
                yield from _task_resources(branch)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if isinstance(processor, dict):
            yield from _task_resources(processor)


# ---------------------------------------------------------------------------- botocore's models
@cache
def _sdk_index() -> dict[str, str]:
    names = botocore.session.get_session().get_available_services()
    return {name.replace("-", ""): name for name in names}


def sdk_service(name: str) -> str | None:
    """boto3's name for an aws-sdk integration's service (`sfn` → `stepfunctions`)."""
    if name in SDK_SERVICES:
        return SDK_SERVICES[name]
    return _sdk_index().get(name.replace("-", ""))


@cache
def _model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def operation_names(service: str) -> frozenset[str]:
    return frozenset(_model(service).operation_names)


def modeled_errors(service: str) -> frozenset[str]:
    return frozenset(shape.name for shape in _model(service).error_shapes)


def sdk_error_prefix(service: str) -> str:
    """The SDK's PascalCase service name from its service id: `DynamoDB` → `DynamoDb`, `ACM PCA` →
    `AcmPca`, `SFN` → `Sfn`, `EventBridge` stays."""
    service_id = str(_model(service).metadata.get("serviceId", service))
    words = re.split(r"[\s-]+", service_id)
    return "".join(
        re.sub(r"(?<=[A-Z])([A-Z]+)", lambda match: match.group(1).lower(), word) for word in words
    )


def error_name(resource: TaskResource, code: str) -> str:
    """The Error of a failed service task: the service's error code if its model declares it
    (with the `Exception` suffix Step Functions always adds), else the generic exception."""
    declared = code in modeled_errors(resource.service) if code else False
    name = code if declared else resource.generic_error
    if not name.endswith("Exception"):
        name += "Exception"
    return f"{resource.error_prefix}.{name}"


# ---------------------------------------------------------------------------- service tasks
def service_call(resource: TaskResource, parameters: Any) -> ServiceCall:
    """The API call a service Task makes with its (already resolved) Parameters."""
    if not isinstance(parameters, dict):
        raise TaskError("States.Runtime", f"{resource.service}:{resource.operation} needs Parameters")
    params = dict(parameters)
    if resource.optimized:
        params = _texts_for_string_members(resource.service, resource.operation, params)
    return ServiceCall(resource.service, resource.operation, params)


def _texts_for_string_members(service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """Step Functions sends a JSON object given for a string member (MessageBody, Message, an
    entry's Detail) as its JSON text."""
    shape = _model(service).operation_model(operation).input_shape
    members = shape.members if shape is not None else {}
    out: dict[str, Any] = {}
    for name, value in params.items():
        member = members.get(name)
        if member is not None and member.type_name == "string" and isinstance(value, (dict, list)):
            value = json.dumps(value, separators=(",", ":"))
        elif name == "Entries" and isinstance(value, list):
            value = [
                {**entry, "Detail": json.dumps(entry["Detail"], separators=(",", ":"))}
                if isinstance(entry, dict) and isinstance(entry.get("Detail"), (dict, list))
                else entry
                for entry in value
            ]
        out[name] = value
    return out


def service_outcome(resource: TaskResource, result: ServiceResult) -> Any:
    """A service task's result, or TaskError with Step Functions' error name for a refusal."""
    try:
        body: Any = json.loads(result.body) if result.body else {}
    except ValueError:
        body = {"message": result.body}
    if result.status < 400:
        return body
    code = str(body.get("__type", "")).rsplit("#", 1)[-1] if isinstance(body, dict) else ""
    message = str(body.get("message", body.get("Message", ""))) if isinstance(body, dict) else ""
    service_label = resource.error_prefix if resource.optimized else resource.service
    cause = f"{message} (Service: {service_label}; Status Code: {result.status}; Error Code: {code})"
    raise TaskError(error_name(resource, code), cause)


class TaskBackend(Protocol):
    """Performs a state machine's service and API calls, signed with its role's session."""

    async def call(self, machine_id: str, call: ServiceCall) -> ServiceResult: ...

    async def invoke_api(self, machine_id: str, request: ApiRequest) -> ApiResponse: ...


# ---------------------------------------------------------------------------- apigateway:invoke
@dataclass(frozen=True)
class ApiRequest:
    api_id: str
    region: str
    method: str
    path: str  # /{stage}{Path}, URL-quoted, for the local HTTP port
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    signed: bool = True  # AuthType IAM_ROLE / RESOURCE_POLICY: SigV4 with the machine's role


@dataclass(frozen=True)
class ApiResponse:
    status: int
    reason: str
    headers: Mapping[str, list[str]] = field(default_factory=dict)
    body: bytes = b""


def api_request(parameters: Any, api_ids: Mapping[str, bool]) -> ApiRequest:
    """The HTTP call an `apigateway:invoke` Task makes. `api_ids`: the template's API ids, each
    with whether its routes sit under the stage name (WebSocket APIs' `@connections`)."""
    if not isinstance(parameters, dict):
        raise TaskError("States.Runtime", "apigateway:invoke needs Parameters")
    endpoint = str(parameters.get("ApiEndpoint", ""))
    found = _API_ENDPOINT.match(endpoint)
    if found is None:
        raise TaskError(
            "States.Runtime", f"ApiEndpoint {endpoint!r} is not {{apiId}}.execute-api.REGION.amazonaws.com"
        )
    api_id, region = found.groups()
    if api_id not in api_ids:
        raise TaskError(
            "States.Runtime",
            f"ApiEndpoint {endpoint} is not an API of this template (only its own APIs are called locally)",
        )
    method = str(parameters.get("Method", "")).upper()
    if method not in HTTP_METHODS:
        raise TaskError(
            "States.Runtime",
            f"apigateway:invoke: Method {parameters.get('Method')!r} is not one of {sorted(HTTP_METHODS)}",
        )
    path = str(parameters.get("Path", ""))
    if path and not path.startswith("/"):
        path = "/" + path
    stage = str(parameters.get("Stage", "") or "")
    prefix = f"/{quote(stage, safe='')}" if stage and api_ids[api_id] else ""
    body = parameters.get("RequestBody")
    if body is None:
        payload = b""
    elif isinstance(body, str):
        payload = body.encode()
    else:
        payload = json.dumps(body, separators=(",", ":")).encode()
    auth = str(parameters.get("AuthType", "NO_AUTH"))
    if auth not in ("NO_AUTH", "IAM_ROLE", "RESOURCE_POLICY"):
        raise TaskError("States.Runtime", f"apigateway:invoke: AuthType {auth!r} is not supported")
    return ApiRequest(
        api_id=api_id,
        region=region,
        method=method,
        path=prefix + quote(path, safe="/@%"),
        query=_multi(parameters.get("QueryParameters"), "QueryParameters"),
        headers=_multi(parameters.get("Headers"), "Headers"),
        body=payload,
        signed=auth != "NO_AUTH",
    )


def _multi(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    """`{"name": ["v1", "v2"]}` (Step Functions' form) as pairs."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise TaskError("States.Runtime", f"apigateway:invoke: {name} must be an object of lists")
    pairs: list[tuple[str, str]] = []
    for key, values in value.items():
        for item in values if isinstance(values, list) else [values]:
            pairs.append((str(key), str(item)))
    return tuple(pairs)


def api_outcome(response: ApiResponse) -> dict[str, Any]:
    """The task's result (`ResponseBody` parsed when it is JSON), or TaskError `ApiGateway.{status}`
    for a status of 400 or more."""
    text = response.body.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text) if text.strip() else {}
    except ValueError:
        parsed = text
    result = {
        "Headers": dict(response.headers),
        "ResponseBody": parsed,
        "StatusCode": response.status,
        "StatusText": response.reason,
    }
    if response.status >= 400:
        # the answer, its body first (what a terminal line shows of the cause)
        cause = {key: result[key] for key in ("ResponseBody", "StatusCode", "StatusText", "Headers")}
        raise TaskError(f"ApiGateway.{response.status}", json.dumps(cause, separators=(",", ":")))
    return result
