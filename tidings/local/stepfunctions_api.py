"""The Step Functions API for the template's state machines, on the embedded AWS endpoint.

moto keeps the template's state machines (CreateStateMachine, ListStateMachines and the like
stay moto's), but its executions only pretend to run. This interceptor
(`AwsServices.add_interceptor`) answers the execution calls on the template's machines itself,
from `stepfunctions.py`'s interpreter: StartExecution runs the machine, DescribeExecution,
GetExecutionHistory (paginated, `reverseOrder`, `includeExecutionData`), ListExecutions and
StopExecution read and stop those runs. So a boto3 client (a handler, a script, a test) sees
what the stack's executions really did. Calls about other machines or executions go on to moto.

`parse_request`, `describe`, `history_page`, `executions_page` are pure; `StepFunctionsApi` is
the thin shell that reads and acts on the interpreter on the stack's loop (the endpoint serves
on moto's threads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from tidings.local.lambda_invoke import Answer, WsgiApp
from tidings.local.stepfunctions import Execution, StatesError, StepFunctions

TARGET_PREFIX = "AWSStepFunctions."
ACTIONS = frozenset(
    {"StartExecution", "DescribeExecution", "GetExecutionHistory", "ListExecutions", "StopExecution"}
)
DEFAULT_PAGE = 100  # GetExecutionHistory and ListExecutions, as AWS (at most 1000)
MAX_PAGE = 1000
CONTENT_TYPE = "application/x-amz-json-1.0"
ANSWER_WAIT_S = 30.0


@dataclass(frozen=True)
class ApiCall:
    action: str
    body: dict[str, Any]


class ApiError(Exception):
    """An error answer: boto3 raises `code` with `message`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_request(environ: dict[str, Any], body: bytes) -> ApiCall | None:
    """The execution call a WSGI request makes, or None when it is not one of ACTIONS."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if environ.get("REQUEST_METHOD") != "POST" or not target.startswith(TARGET_PREFIX):
        return None
    action = target[len(TARGET_PREFIX) :]
    if action not in ACTIONS:
        return None
    try:
        parsed = json.loads(body) if body.strip() else {}
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ApiError("SerializationException", "the request body is not a JSON object")
    return ApiCall(action, parsed)


def json_answer(status: int, document: dict[str, Any]) -> Answer:
    return Answer(status, {"Content-Type": CONTENT_TYPE}, json.dumps(document).encode())


def error_answer(error: ApiError, status: int = 400) -> Answer:
    return json_answer(status, {"__type": error.code, "message": error.message})


def epoch(stamp: str) -> float:
    """An ISO 8601 time as the API's timestamps (seconds since the epoch)."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def describe(execution: Execution) -> dict[str, Any]:
    """DescribeExecution's answer."""
    described: dict[str, Any] = {
        "executionArn": execution.arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": execution.status,
        "startDate": epoch(execution.start_date),
        "input": execution.input_json,
        "inputDetails": {"included": True},
    }
    if execution.stop_date:
        described["stopDate"] = epoch(execution.stop_date)
    if execution.status == "SUCCEEDED":
        described["output"] = execution.output_text
        described["outputDetails"] = {"included": True}
    if execution.error is not None:
        described["error"] = execution.error
        described["cause"] = execution.cause or ""
    return described


def sync_execution(execution: Execution) -> dict[str, Any]:
    """StartSyncExecution's answer: DescribeExecution's fields and what the run is billed (Express
    bills 64 MB at least, by the 100 ms)."""
    answer = describe(execution)
    stopped = epoch(execution.stop_date) if execution.stop_date else epoch(execution.start_date)
    duration_ms = max(0.0, (stopped - epoch(execution.start_date)) * 1000)
    answer["billingDetails"] = {
        "billedMemoryUsedInMB": 64,
        "billedDurationInMilliseconds": max(100, math.ceil(duration_ms / 100) * 100),
    }
    return answer


def _page_bounds(body: dict[str, Any], count: int) -> tuple[int, int]:
    size = int(body.get("maxResults") or DEFAULT_PAGE)
    if not 0 < size <= MAX_PAGE:
        raise ApiError("ValidationException", f"maxResults must be between 1 and {MAX_PAGE}")
    token = body.get("nextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise ApiError("InvalidToken", "Invalid Token: nextToken is not one this endpoint gave") from None
    if not 0 <= start <= count:
        raise ApiError("InvalidToken", "Invalid Token: nextToken is out of range")
    return start, min(count, start + size)


def history_page(events: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    """GetExecutionHistory's answer for `events` (oldest first) and the request's paging."""
    ordered = list(reversed(events)) if body.get("reverseOrder") else list(events)
    start, end = _page_bounds(body, len(ordered))
    page = ordered[start:end]
    if body.get("includeExecutionData") is False:
        page = [_without_data(event) for event in page]
    answer: dict[str, Any] = {"events": page}
    if end < len(ordered):
        answer["nextToken"] = str(end)
    return answer


_DATA_FIELDS = frozenset({"input", "output", "parameters", "inputDetails", "outputDetails"})


def _without_data(event: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {k: v for k, v in value.items() if k not in _DATA_FIELDS}
        if key.endswith("EventDetails")
        else value
        for key, value in event.items()
    }


def executions_page(executions: list[Execution], body: dict[str, Any]) -> dict[str, Any]:
    """ListExecutions' answer: newest first, filtered by `statusFilter`."""
    status = body.get("statusFilter")
    chosen = [e for e in reversed(executions) if status is None or e.status == status]
    start, end = _page_bounds(body, len(chosen))
    items = []
    for execution in chosen[start:end]:
        item: dict[str, Any] = {
            "executionArn": execution.arn,
            "stateMachineArn": execution.state_machine_arn,
            "name": execution.name,
            "status": execution.status,
            "startDate": epoch(execution.start_date),
        }
        if execution.stop_date:
            item["stopDate"] = epoch(execution.stop_date)
        items.append(item)
    answer: dict[str, Any] = {"executions": items}
    if end < len(chosen):
        answer["nextToken"] = str(end)
    return answer


def _required(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError("ValidationException", f"{name} is required")
    return value


def _execution_input(body: dict[str, Any]) -> Any:
    text = body.get("input", "{}")
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        pass
    raise ApiError("InvalidExecutionInput", "Invalid State Machine Execution Input: the input is not JSON")


def _body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    return stream.read(length) if stream is not None and length > 0 else b""


class StepFunctionsApi:
    """The interceptor: execution calls on the template's machines, answered from the interpreter."""

    def __init__(self, machines: StepFunctions, loop: asyncio.AbstractEventLoop) -> None:
        self.machines = machines
        self.loop = loop

    def __call__(self, environ: dict[str, Any]) -> WsgiApp | None:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if not target.startswith(TARGET_PREFIX) or target[len(TARGET_PREFIX) :] not in ACTIONS:
            return None  # read no body that moto must read
        body = _body(environ)
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again when the call is not ours
        environ["CONTENT_LENGTH"] = str(len(body))
        try:
            call = parse_request(environ, body)
            if call is None or not self.ours(call):
                return None
            running = asyncio.run_coroutine_threadsafe(self.answer(call), self.loop)
            return json_answer(200, running.result(timeout=ANSWER_WAIT_S)).wsgi()
        except ApiError as error:
            return error_answer(error).wsgi()
        except (RuntimeError, concurrent.futures.TimeoutError) as error:  # the stack is stopping
            failure = ApiError("ServiceUnavailable", f"the local stack is not answering: {error}")
            return error_answer(failure, 503).wsgi()

    def ours(self, call: ApiCall) -> bool:
        """Whether the call is about a template machine or one of its executions."""
        if call.action in ("StartExecution", "ListExecutions"):
            return self.machines.machine_id_for(str(call.body.get("stateMachineArn", ""))) is not None
        return str(call.body.get("executionArn", "")) in self.machines.executions

    async def answer(self, call: ApiCall) -> dict[str, Any]:
        """The call's answer, on the stack's loop."""
        body = call.body
        if call.action == "StartExecution":
            try:
                text = body.get("input")
                arn = await self.machines.start_execution(
                    _required(body, "stateMachineArn"),
                    _execution_input(body),
                    name=body.get("name"),
                    input_text=text
                    if isinstance(text, str)
                    else None,  # DescribeExecution answers it as sent
                )
            except StatesError as error:
                raise ApiError(error.error, error.cause) from None
            execution = self.machines.describe_execution(arn)
            return {"executionArn": arn, "startDate": epoch(execution.start_date)}
        if call.action == "ListExecutions":
            machine_id = self.machines.machine_id_for(_required(body, "stateMachineArn"))
            runs = [e for e in self.machines.executions.values() if e.state_machine_id == machine_id]
            return executions_page(runs, body)
        execution = self.machines.describe_execution(_required(body, "executionArn"))
        if call.action == "DescribeExecution":
            return describe(execution)
        if call.action == "GetExecutionHistory":
            return history_page(execution.events, body)
        await self.machines.stop_execution(
            execution.arn, str(body.get("error", "")), str(body.get("cause", ""))
        )
        return {"stopDate": epoch(execution.stop_date or execution.start_date)}
