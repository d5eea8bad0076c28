"""Non-proxy integrations (`IntegrationType: AWS`) at run time: a thin shell over vtl.py and
service_integrations.py.

`NonProxyRunner` is what the gateway calls for such a route: select and render the request
template (or pass through, or refuse), call the Lambda function with the rendered JSON as its
event or the AWS service with the rendered body, then select the integration response by the
Lambda error message or the service's status and render its template into the reply.

`EmbeddedServiceBackend` performs the service calls: Step Functions' StartExecution /
StartSyncExecution on the local state machine interpreter (which runs the template's functions),
everything else through a boto3 client of the embedded AWS services. The answer is the service's
JSON body and HTTP status, errors included, for the integration response templates to read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import boto3
from botocore import UNSIGNED, xform_name
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError

from tidings.local.aws import AwsServices
from tidings.local.aws_guard import Credentials
from tidings.local.iam import Principal, denial_message, evaluate
from tidings.local.model import Caller, FunctionInvoker, NonProxyIntegration, Route
from tidings.local.service_integrations import (
    ServiceBackend,
    ServiceCall,
    ServiceRequestError,
    ServiceResult,
    build_call,
    error_result,
    member_types,
    query_answer,
    query_error,
)
from tidings.local.stepfunctions import StatesError, StepFunctions
from tidings.local.stepfunctions_api import epoch, sync_execution
from tidings.local.stepfunctions_tasks import ApiRequest, ApiResponse
from tidings.local.vtl import (
    Passthrough,
    RenderInput,
    VtlError,
    mock_status,
    render_response,
    select_integration_response,
    select_request_template,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NonProxyOutcome:
    failed: bool  # the backend failed (a $connect handshake is refused with `status`)
    status: int
    reply: str | None = None  # what a route response sends
    gateway_error: str | None = None  # API Gateway's own error message instead of a reply


class NonProxyRunner:
    """Runs `IntegrationType: AWS` routes for one gateway."""

    def __init__(
        self,
        invoker: FunctionInvoker,
        services: ServiceBackend | None,
        aws_endpoint: str,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.invoker = invoker
        self.services = services
        self.aws_endpoint = aws_endpoint  # SQS path-form URIs name a queue on it
        self.emit = emit

    async def run(
        self,
        route: Route,
        integration: NonProxyIntegration,
        event: dict[str, Any],
        body: str,
        params: dict[str, dict[str, str]] | None = None,
        caller: Caller | None = None,
    ) -> NonProxyOutcome:
        """Map the request with the selected template, call the Lambda function or AWS service, and
        map its answer with the integration response's template (vtl.py decides each step)."""
        values = RenderInput(body, event["requestContext"], {}, params)
        selection = select_request_template(
            integration.request_templates,
            integration.template_selection_expression,
            body,
            integration.passthrough_behavior,
        )
        if selection.outcome is Passthrough.REJECT:
            return NonProxyOutcome(True, 415, gateway_error="Unsupported Media Type")
        try:
            request = body if selection.template is None else selection.template.render(values)
        except VtlError as exc:
            log.error("route %s: %s", route.route_key, exc)
            return NonProxyOutcome(True, 500, gateway_error="Internal server error")
        if integration.mock:
            return self._mock(
                route, integration, None if selection.template is None else request, body, values
            )
        if integration.service is not None:
            answered = await self._call_service(route, integration, request)
            if isinstance(answered, NonProxyOutcome):
                return answered
            status, answer, selector, failed = (
                answered.status,
                answered.body,
                str(answered.status),
                answered.status >= 400,
            )
        else:
            assert route.function_id is not None
            try:
                payload = json.loads(request) if request.strip() else {}
            except ValueError:
                # Lambda refuses a payload that is not JSON (InvalidRequestContentException)
                log.error("route %s: the mapped request is not JSON: %.200s", route.route_key, request)
                return NonProxyOutcome(True, 500, gateway_error="Internal server error")
            invocation = await self.invoker.invoke(
                route.function_id, payload, source=route.route_key, caller=caller
            )
            if invocation.refused:  # no invoke permission for API Gateway: as for a proxy route
                return NonProxyOutcome(True, 500, gateway_error="Internal server error")
            status, failed = 200, not invocation.ok
            if invocation.ok:
                answer, selector = json.dumps(invocation.result), None
            else:
                # Lambda's error object; its errorMessage selects the integration response
                error: dict[str, Any] = {
                    "errorMessage": invocation.error_message or "",
                    "errorType": invocation.error_type or "",
                    "stackTrace": (invocation.traceback or "").splitlines(),
                }
                answer, selector = json.dumps(error), error["errorMessage"]
        response = select_integration_response(integration.responses, selector)
        try:
            reply = render_response(response, answer, status, body, values)
        except VtlError as exc:
            log.error("route %s: %s", route.route_key, exc)
            return NonProxyOutcome(True, 500, gateway_error="Internal server error")
        return NonProxyOutcome(failed, 500 if failed else 200, reply=reply)

    def _mock(
        self,
        route: Route,
        integration: NonProxyIntegration,
        rendered: str | None,
        body: str,
        values: RenderInput,
    ) -> NonProxyOutcome:
        """A `MOCK` integration: the rendered request's `statusCode` selects the integration
        response (its `/regex/` key against the status), whose template shapes the reply."""
        status = mock_status(rendered)
        if status is None:
            log.error(
                "route %s: integration %s: the MOCK request template gives no statusCode: %.200s",
                route.route_key,
                integration.logical_id,
                rendered,
            )
            return NonProxyOutcome(True, 500, gateway_error="Internal server error")
        self.emit("integration", {"routeKey": route.route_key, "operation": "MOCK", "status": status})
        response = select_integration_response(integration.responses, str(status))
        try:
            reply = render_response(response, "", status, body, values) if response is not None else ""
        except VtlError as exc:
            log.error("route %s: %s", route.route_key, exc)
            return NonProxyOutcome(True, 500, gateway_error="Internal server error")
        return NonProxyOutcome(status >= 400, status, reply=reply or None)

    async def _call_service(
        self, route: Route, integration: NonProxyIntegration, request: str
    ) -> ServiceResult | NonProxyOutcome:
        assert integration.service is not None
        if self.services is None:
            raise RuntimeError(f"route {route.route_key}: no AWS services for a service integration")
        try:
            call = build_call(
                integration.service,
                request,
                member_types=member_types(integration.service.service),
                queue_url_base=self.aws_endpoint,
            )
        except ServiceRequestError as exc:
            log.error("route %s: integration %s: %s", route.route_key, integration.logical_id, exc)
            return NonProxyOutcome(True, 500, gateway_error="Internal server error")
        result = await self.services.call(call, integration.credentials_arn)
        self.emit(
            "integration",
            {
                "routeKey": route.route_key,
                "operation": f"{call.service}:{call.operation}",
                "status": result.status,
            },
        )
        if result.status >= 400:
            log.warning(
                "route %s: %s:%s answered %d: %.300s",
                route.route_key,
                call.service,
                call.operation,
                result.status,
                result.body,
            )
        return result


class _SignedClients:
    """One boto3 client of the embedded endpoint per service, signer and key (clients are
    thread-safe, and slow to make): signed with the signer's credentials, or unsigned when it has
    none. The access key is part of the cache key, so a signer whose keys were reissued (a template
    reload) never gets a client that still signs with the old ones."""

    def __init__(self, aws: AwsServices) -> None:
        self.aws = aws
        self._clients: dict[tuple[str, str | None, str | None], Any] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every client (their keys were replaced)."""
        with self._lock:
            self._clients.clear()

    def get(self, service: str, signer: str | None, credentials: Credentials | None) -> Any:
        key = (service, signer, credentials.access_key_id if credentials is not None else None)
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        factory: Any = boto3.client  # its overloads want a literal service name
        client = factory(
            service,
            endpoint_url=self.aws.endpoint,
            region_name=self.aws.app.region,
            config=Config(signature_version=UNSIGNED) if credentials is None else None,
            **(credentials.boto() if credentials is not None else {}),
        )
        with self._lock:
            return self._clients.setdefault(key, client)


class EmbeddedServiceBackend:
    """`ServiceBackend` for the local stack.

    `role_arn` is the integration's `CredentialsArn`: each call is signed with the session the
    stack issued for that role (`roles`, from aws_guard.issue_app_credentials), so the AWS
    endpoint's guard evaluates the role's policies and a refused call gets the service's own
    AccessDenied answer, which the integration response then maps, as on AWS. Without a
    `CredentialsArn`, API Gateway has nothing to sign with: the call goes unsigned and the service
    refuses it (with IAM off, the run's admin key signs it). Step Functions executions run
    in-process, so their action is evaluated here against the same role.
    """

    def __init__(
        self, aws: AwsServices, machines: StepFunctions, roles: Mapping[str, Credentials] | None = None
    ) -> None:
        self.aws = aws
        self.machines = machines
        self.roles = dict(roles or {})
        self._clients = _SignedClients(aws)

    def use_roles(self, roles: Mapping[str, Credentials]) -> None:
        """Sign with these role sessions from now on (a template reload issued new ones and revokes
        the old): the clients made with the old keys are dropped."""
        self.roles = dict(roles)
        self._clients.clear()

    async def call(self, call: ServiceCall, role_arn: str | None) -> ServiceResult:
        if call.service == "stepfunctions" and call.operation in ("StartExecution", "StartSyncExecution"):
            refused = self._refused_in_process(call, role_arn)
            return refused if refused is not None else await self._start_execution(call)
        return await asyncio.to_thread(self._call_client, call, role_arn)

    def _principal(self, role_arn: str | None) -> Principal | None:
        credentials = self.roles.get(role_arn or "")
        found = self.aws.credentials.lookup(credentials.access_key_id) if credentials else None
        return found[1].principal if found is not None else None

    def _refused_in_process(self, call: ServiceCall, role_arn: str | None) -> ServiceResult | None:
        """What Step Functions answers when the role may not start the machine (None: it may)."""
        if not self.aws.enforce_iam:
            return None
        principal = self._principal(role_arn)
        if principal is None:
            return error_result(
                400, "MissingAuthenticationTokenException", "Request is missing Authentication Token"
            )
        action, resource = f"states:{call.operation}", str(call.params.get("stateMachineArn", ""))
        decision = evaluate(principal.statements, action, resource)
        if decision.allowed:
            return None
        return error_result(
            400, "AccessDeniedException", denial_message(principal.arn, action, resource, decision)
        )

    def _client(self, service: str, role_arn: str | None) -> Any:
        credentials = self.roles.get(role_arn or "")
        if credentials is None and not self.aws.enforce_iam:
            credentials = self.aws.credentials.admin
        return self._clients.get(service, role_arn, credentials)

    def _call_client(self, call: ServiceCall, role_arn: str | None) -> ServiceResult:
        return call_boto(self._client(call.service, role_arn), call)

    async def _start_execution(self, call: ServiceCall) -> ServiceResult:
        params = call.params
        arn = str(params.get("stateMachineArn", ""))
        try:
            document = json.loads(params["input"]) if "input" in params else {}
        except (TypeError, ValueError):
            return error_result(400, "InvalidExecutionInput", "input is not valid JSON")
        machine_id = self.machines.machine_id_for(arn)
        machine = self.machines.app.state_machines.get(machine_id or "")
        if (
            call.operation == "StartSyncExecution"
            and machine is not None
            and machine.machine_type != "EXPRESS"
        ):
            return error_result(
                400,
                "StateMachineTypeNotSupported",
                "This operation is not supported by this type of state machine",
            )
        text = params.get("input")
        try:
            execution_arn = await self.machines.start_execution(
                arn, document, name=params.get("name"), input_text=text if isinstance(text, str) else None
            )
        except StatesError as exc:
            return error_result(400, exc.error, exc.cause)
        execution = self.machines.describe_execution(execution_arn)
        if call.operation == "StartExecution":
            return ServiceResult(
                200, json.dumps({"executionArn": execution_arn, "startDate": epoch(execution.start_date)})
            )
        stopped = await self.machines.wait_for(execution_arn)
        return ServiceResult(200, json.dumps(sync_execution(stopped)))


def call_boto(client: Any, call: ServiceCall) -> ServiceResult:
    """One call on a boto3 client, its answer (or the service's error) as a ServiceResult: the
    JSON protocol's body, or for a Query-protocol call its JSON form, as API Gateway gets them."""
    try:
        response = getattr(client, xform_name(call.operation))(**call.params)
    except ParamValidationError as exc:
        message = str(exc).replace("\n", " ")
        if call.query_protocol:  # the Query services' code for a bad or missing parameter
            return query_error(400, "ValidationError", message, str(uuid.uuid4()))
        return error_result(400, "ValidationException", message)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        metadata = exc.response.get("ResponseMetadata", {})
        status = int(metadata.get("HTTPStatusCode", 400))
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        if call.query_protocol:
            return query_error(status, code, message, str(metadata.get("RequestId") or uuid.uuid4()))
        return error_result(status, code, message)
    metadata = response.pop("ResponseMetadata", {})
    if call.query_protocol:
        return query_answer(call, response, str(metadata.get("RequestId") or uuid.uuid4()))
    return ServiceResult(200, json.dumps(response, default=_json_default))


class MachineTasks:
    """`TaskBackend` for the local stack: a state machine's service Tasks through the embedded AWS
    endpoint, its `apigateway:invoke` Tasks to the local HTTP port (`@connections`), each signed
    with the session issued for the machine's role (`keys`, by machine logical id), so the
    endpoint's guard and the management API's apply that role's IAM policies as AWS does. With
    IAM off, a machine without keys signs with the run's admin key."""

    def __init__(self, aws: AwsServices, keys: Mapping[str, Credentials], http_url_base: str) -> None:
        self.aws = aws
        self.keys = dict(keys)
        self.http_url_base = http_url_base.rstrip("/")
        self._clients = _SignedClients(aws)

    def _credentials(self, machine_id: str) -> Credentials | None:
        found = self.keys.get(machine_id)
        if found is None and not self.aws.enforce_iam:
            return self.aws.credentials.admin
        return found

    def _client(self, service: str, machine_id: str) -> Any:
        return self._clients.get(service, machine_id, self._credentials(machine_id))

    async def call(self, machine_id: str, call: ServiceCall) -> ServiceResult:
        return await asyncio.to_thread(lambda: call_boto(self._client(call.service, machine_id), call))

    async def invoke_api(self, machine_id: str, request: ApiRequest) -> ApiResponse:
        import aiohttp
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials as BotoCredentials
        from yarl import URL

        query = urlencode(request.query)
        url = f"{self.http_url_base}{request.path}" + (f"?{query}" if query else "")
        headers = dict(request.headers)
        credentials = self._credentials(machine_id) if request.signed else None
        if credentials is not None:
            signing = AWSRequest(method=request.method, url=url, data=request.body, headers=headers)
            boto = BotoCredentials(
                credentials.access_key_id, credentials.secret_access_key, credentials.session_token
            )
            SigV4Auth(boto, "execute-api", request.region).add_auth(signing)
            headers = {name: str(value) for name, value in signing.headers.items()}
        timeout = aiohttp.ClientTimeout(total=60)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                request.method, URL(url, encoded=True), data=request.body or None, headers=headers
            ) as response,
        ):
            body = await response.read()
            answered: dict[str, list[str]] = {}
            for name, value in response.headers.items():
                answered.setdefault(name, []).append(value)
            return ApiResponse(response.status, response.reason or "", answered, body)


def _json_default(value: Any) -> Any:
    if hasattr(value, "timestamp"):
        return value.timestamp()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
