"""The local stack's view of a SAM application, after transform and intrinsic resolution.

`template.py` builds a `LocalApp` from `template.yaml`; the gateway, the function runner, the
embedded AWS services and the bus each read the part they serve. Everything here is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tidings.local.request_models import RequestModels
from tidings.local.service_integrations import ServiceUri
from tidings.local.vtl import MappingTemplate, ResponseMapping

ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Authorizer:
    """A Lambda REQUEST authorizer on `$connect` (the only kind WebSocket APIs run)."""

    logical_id: str
    function_id: str
    # e.g. ("route.request.header.Auth", "route.request.querystring.token"); empty: always invoked
    identity_sources: tuple[str, ...] = ()
    authorizer_id: str = ""  # the id in its caller ARN (`API/authorizers/ID`)


@dataclass(frozen=True)
class NonProxyIntegration:
    """An `IntegrationType: AWS` integration: a Lambda function (the route's `function_id`) or an
    AWS service (`service`), or a `MOCK` one (`mock`), with request templates and integration
    responses (vtl.py)."""

    logical_id: str
    service: ServiceUri | None  # None: the route's Lambda function
    request_templates: dict[str, MappingTemplate]
    template_selection_expression: str | None = None
    passthrough_behavior: str = "WHEN_NO_MATCH"
    credentials_arn: str | None = None  # the role API Gateway calls the service (or Lambda) with
    responses: tuple[ResponseMapping, ...] = ()
    # `IntegrationType: MOCK`: no backend; the rendered request's statusCode selects the response
    mock: bool = False


@dataclass(frozen=True)
class Route:
    route_key: str
    function_id: str | None  # None: no integration (allowed on $connect, R5), or a service one
    authorization_type: str = "NONE"  # NONE | CUSTOM | AWS_IAM
    authorizer: Authorizer | None = None
    # True when the route returns the handler's result to the client (R6)
    has_route_response: bool = False
    # None: Lambda proxy integration (AWS_PROXY), or no integration
    non_proxy: NonProxyIntegration | None = None
    # `ModelSelectionExpression` + `RequestModels`: messages are validated before the integration
    request_models: RequestModels | None = None


@dataclass(frozen=True)
class WebSocketApi:
    logical_id: str
    api_id: str
    name: str
    stage: str
    route_selection_expression: str
    routes: dict[str, Route]
    region: str = DEFAULT_REGION
    account_id: str = ACCOUNT_ID


@dataclass(frozen=True)
class DomainMapping:
    """A custom domain name's mapping to an API stage (`AWS::ApiGatewayV2::ApiMapping` of an
    `AWS::ApiGatewayV2::DomainName`): `https://{domain_name}/{key}` is that stage's base URL."""

    domain_name: str  # lower case
    api_id: str
    stage: str
    key: str = ""  # the ApiMappingKey (base path), "" for none


@dataclass(frozen=True)
class HttpRoute:
    """One `AWS::Serverless::HttpApi` route (payload format 2.0)."""

    api_logical_id: str
    method: str  # GET, POST, ... or ANY
    path: str  # /jobs/{id}
    function_id: str
    authorizer_function_id: str | None = None
    identity_sources: tuple[str, ...] = ()
    authorizer_id: str = ""  # the id in the authorizer's caller ARN (`API/authorizers/ID`)


@dataclass(frozen=True)
class AsyncInvokeConfig:
    """What Lambda does with the function's asynchronous invocations (an EventBridge target's):
    its `AWS::Lambda::EventInvokeConfig` and `DeadLetterConfig`, with Lambda's defaults."""

    max_retry_attempts: int = 2
    max_event_age_s: int = 21600
    on_success_arn: str | None = None
    on_failure_arn: str | None = None
    dead_letter_arn: str | None = None


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str  # the FunctionName the function would get in AWS
    arn: str
    code_dir: Path
    handler: str  # module.function
    runtime: str
    timeout_s: float
    memory_mb: int
    environment: dict[str, str]
    layer_dirs: tuple[Path, ...] = ()
    architectures: tuple[str, ...] = ("x86_64",)
    async_config: AsyncInvokeConfig = AsyncInvokeConfig()
    role_arn: str = ""  # its execution role (`Role`), a key of LocalApp.roles
    # `ReservedConcurrentExecutions` (None: unreserved); only prewarming reads it (0: never)
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class Table:
    logical_id: str
    name: str
    arn: str
    # CloudFormation properties of AWS::DynamoDB::Table, resolved (KeySchema, AttributeDefinitions, ...)
    properties: dict[str, Any]


@dataclass(frozen=True)
class RuleTarget:
    target_id: str
    arn: str
    kind: str  # "lambda" | "states" | "sqs" | ...
    resource_id: str  # logical id of the function / state machine / queue, when known
    retry_attempts: int = 185
    max_event_age_s: int = 86400
    dead_letter_arn: str | None = None
    input_path: str | None = None
    input: str | None = None


@dataclass(frozen=True)
class Rule:
    logical_id: str
    name: str
    bus_name: str
    pattern: dict[str, Any]
    targets: tuple[RuleTarget, ...]


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    name: str
    arn: str
    definition: dict[str, Any]  # ASL, with substitutions applied
    role_arn: str = ""  # `RoleArn`, a key of LocalApp.roles
    machine_type: str = "STANDARD"  # `StateMachineType`: STANDARD | EXPRESS


@dataclass(frozen=True)
class Role:
    """An IAM role of the template with its policies, resolved: what iam.py evaluates."""

    logical_id: str
    arn: str
    documents: tuple[tuple[str, dict[str, Any]], ...]  # (policy name, policy document)
    managed_policy_arns: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimpleResource:
    """Buckets, queues, buses, SSM parameters, secrets: what aws.py creates at start."""

    logical_id: str
    kind: str  # "bucket" | "queue" | "bus" | "ssm" | "secret"
    name: str
    arn: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InvokePermission:
    """One statement of a function's resource-based policy (`AWS::Lambda::Permission`)."""

    logical_id: str
    function_id: str
    action: str  # lambda:InvokeFunction
    principal: str  # apigateway.amazonaws.com, events.amazonaws.com, an account, ...
    source_arn: str | None = None  # ArnLike pattern the caller's ARN must match
    source_account: str | None = None


@dataclass(frozen=True)
class Caller:
    """A service invoking a function on behalf of one of its resources (a route, a rule)."""

    principal: str
    source_arn: str
    source_account: str = ACCOUNT_ID


@dataclass
class LocalApp:
    template_path: Path
    region: str
    parameters: dict[str, str]
    websocket_apis: list[WebSocketApi] = field(default_factory=list)
    http_routes: list[HttpRoute] = field(default_factory=list)
    functions: dict[str, Function] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    state_machines: dict[str, StateMachine] = field(default_factory=dict)
    resources: list[SimpleResource] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    static_sites: list[Path] = field(default_factory=list)
    # functions the template declares that cannot run locally (a remote layer, ...): id → why
    skipped: dict[str, str] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)  # by role ARN
    # resource-based policies (AWS::SQS::QueuePolicy, AWS::SNS::TopicPolicy) by resource ARN
    resource_policies: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    permissions: list[InvokePermission] = field(default_factory=list)
    domain_mappings: list[DomainMapping] = field(default_factory=list)  # custom domain names

    def function_id_by_arn(self, arn: str) -> str | None:
        """The function an ARN names, qualified (`:alias`, `:3`) or not."""
        for logical_id, function in self.functions.items():
            if arn == function.arn or arn.startswith(function.arn + ":"):
                return logical_id
        return None


def arn_service(arn: str) -> str:
    """The service part of an ARN (`lambda`, `sqs`, ...); empty when it is not an ARN."""
    return arn.split(":")[2] if arn.count(":") >= 5 else ""


@dataclass(frozen=True)
class Invocation:
    """What one function invocation produced."""

    request_id: str
    function_id: str
    ok: bool
    result: Any = None  # the handler's return value (JSON-compatible) when ok
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    logs: str = ""  # what the handler printed during this invocation
    duration_ms: float = 0.0
    cold: bool = False
    refused: bool = False  # the caller had no permission: the function did not run


class FunctionInvoker(Protocol):
    """Runs a function of the app with an event, the way Lambda's synchronous Invoke does."""

    async def invoke(
        self,
        function_id: str,
        event: dict[str, Any],
        *,
        source: str = "",
        request_id: str | None = None,
        caller: Caller | None = None,
    ) -> Invocation:
        """`source` names the trigger (route key, event source) for the invocation log; `request_id`
        is given only when the invocation is a retry that keeps its first attempt's id; `caller`,
        when a service invokes, is checked against the function's resource-based policy."""
        ...
