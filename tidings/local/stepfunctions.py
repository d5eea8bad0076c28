"""A Step Functions (ASL) interpreter for the local stack, running Tasks through the FunctionInvoker.

Covers what a Lambda pipeline uses: Task (direct function ARNs and `arn:aws:states:::lambda:invoke`;
`apigateway:invoke`, the DynamoDB, SNS, SQS, EventBridge and Step Functions optimized integrations and
`aws-sdk:*` through `stepfunctions_tasks.py`, signed with the machine's role),
Map (inline and Distributed, both run here; ItemsPath, ItemSelector/Parameters, MaxConcurrency,
tolerated failures), Parallel, Pass, Choice, Wait, Succeed and Fail; InputPath, Parameters,
ResultSelector, ResultPath and OutputPath with JSONPath and the context object (`$$`); intrinsic
functions (`States.Format`, `States.StringToJson`, ...); Retry (with backoff and jitter) and Catch,
where `States.ALL` takes neither `States.Runtime` nor `States.DataLimitExceeded` (the 256 KiB payload
quota). Each execution records GetExecutionHistory's events (`stepfunctions_api.py` serves them).
Not covered: activities, `.sync`/`.waitForTaskToken` integrations, other optimized integrations,
ItemReader/ResultWriter and JSONata; the start names each such Task in one line, and an execution
reaching it fails with `States.Runtime` naming it. Each failed execution gets one line on the
terminal (`execution_line`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonpath_ng.ext.parser import parse as parse_jsonpath

from tidings.local.model import ACCOUNT_ID, FunctionInvoker, LocalApp, StateMachine
from tidings.local.stepfunctions_tasks import (
    LAMBDA_INVOKE,
    TaskBackend,
    TaskError,
    api_outcome,
    api_request,
    classify,
    service_call,
    service_outcome,
    unsupported_tasks,
)

log = logging.getLogger(__name__)


class StatesError(Exception):
    """A state's failure as Step Functions names it (Error, Cause)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------- paths
_REFERENCE_STEP = re.compile(r"\.([^.\[\]]+)|\['([^']*)'\]|\[(\d+)\]")


def read_path(path: str, data: Any, context: dict[str, Any]) -> Any:
    """JSONPath against the input (`$...`) or the context object (`$$...`)."""
    if path.startswith("$$"):
        return read_path(path[1:], context, context)
    if path == "$":
        return data
    steps = _reference_steps(path)
    if steps is not None:
        node = data
        for step in steps:
            in_list = isinstance(step, int) and isinstance(node, list) and -len(node) <= step < len(node)
            if in_list or (isinstance(step, str) and isinstance(node, dict) and step in node):
                node = node[step]
            else:
                raise StatesError("States.Runtime", f"The JSONPath '{path}' could not be found in the input")
        return node
    matches = parse_jsonpath(path).find(data)
    if not matches:
        raise StatesError("States.Runtime", f"The JSONPath '{path}' could not be found in the input")
    if len(matches) == 1 and not _is_multi_path(path):
        return matches[0].value
    return [match.value for match in matches]


def _reference_steps(path: str) -> list[str | int] | None:
    """`$.a.b[0]['c d']` as steps; None for anything richer (wildcards, filters, slices)."""
    if not path.startswith("$"):
        return None
    steps: list[str | int] = []
    rest = path[1:]
    position = 0
    for match in _REFERENCE_STEP.finditer(rest):
        if match.start() != position:
            return None
        position = match.end()
        name, quoted, index = match.groups()
        if name is not None and name == "*":
            return None
        steps.append(int(index) if index is not None else (name if name is not None else quoted))
    return steps if position == len(rest) else None


def _is_multi_path(path: str) -> bool:
    return any(marker in path for marker in ("[*]", "..", "[?", ":", ","))


def write_path(path: str | None, target: Any, value: Any) -> Any:
    """ResultPath: place `value` in a copy of `target` at a reference path (`$` replaces it)."""
    if path is None:
        return target
    if path == "$":
        return value
    steps = _reference_steps(path)
    if not steps:
        raise StatesError("States.Runtime", f"Invalid ResultPath {path!r}")
    root: Any = json.loads(json.dumps(target)) if isinstance(target, (dict, list)) else {}
    if not isinstance(root, dict) and not (steps and isinstance(steps[0], int)):
        root = {}
    node = root
    for step, following in zip(steps, [*steps[1:], None], strict=True):
        if following is None:
            node[step] = value
            break
        child = node[step] if isinstance(node, dict) and step in node else None
        if not isinstance(child, (dict, list)):
            child = {}
            node[step] = child
        node = child
    return root


# ---------------------------------------------------------------------------- intrinsic functions
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:\\.|[^'\\])*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<call>States\.[A-Za-z0-9]+)\("
    r"|(?P<path>\$\$?[^,)\s]*)|(?P<word>true|false|null)|(?P<close>\))|(?P<comma>,))"
)


def evaluate_intrinsic(expression: str, data: Any, context: dict[str, Any]) -> Any:
    value, end = _parse_call(expression.strip(), 0, data, context)
    if expression.strip()[end:].strip():
        raise StatesError("States.IntrinsicFailure", f"Unexpected text after {expression!r}")
    return value


def _parse_call(text: str, position: int, data: Any, context: dict[str, Any]) -> tuple[Any, int]:
    match = _TOKEN.match(text, position)
    if not match or not match.group("call"):
        raise StatesError("States.IntrinsicFailure", f"Expected an intrinsic function in {text!r}")
    name = match.group("call")
    position = match.end()
    arguments: list[Any] = []
    while True:
        token = _TOKEN.match(text, position)
        if token is None:
            raise StatesError("States.IntrinsicFailure", f"Cannot parse {text!r}")
        if token.group("close"):
            position = token.end()
            break
        if token.group("comma"):
            position = token.end()
            continue
        if token.group("call"):
            value, position = _parse_call(text, position, data, context)
        else:
            position = token.end()
            if token.group("string") is not None:
                value = re.sub(r"\\(.)", r"\1", token.group("string")[1:-1])
            elif token.group("number") is not None:
                number = token.group("number")
                value = float(number) if "." in number else int(number)
            elif token.group("path") is not None:
                value = read_path(token.group("path"), data, context)
            else:
                value = {"true": True, "false": False, "null": None}[token.group("word")]
        arguments.append(value)
    return _call_intrinsic(name, arguments), position


def _call_intrinsic(name: str, args: list[Any]) -> Any:
    try:
        if name == "States.Format":
            template, *values = args
            parts = re.split(r"(?<!\\)\{\}", template)
            if len(parts) - 1 != len(values):
                raise StatesError("States.IntrinsicFailure", "States.Format: argument count mismatch")
            text = parts[0]
            for value, part in zip(values, parts[1:], strict=True):
                text += (value if isinstance(value, str) else json.dumps(value)) + part
            return text
        if name == "States.StringToJson":
            return json.loads(args[0])
        if name == "States.JsonToString":
            return json.dumps(args[0], separators=(",", ":"))
        if name == "States.Array":
            return list(args)
        if name == "States.ArrayPartition":
            items, size = args
            return [items[index : index + int(size)] for index in range(0, len(items), int(size))]
        if name == "States.ArrayContains":
            return args[1] in args[0]
        if name == "States.ArrayRange":
            start, end, step = (int(arg) for arg in args)
            return list(range(start, end + (1 if step > 0 else -1), step))
        if name == "States.ArrayGetItem":
            return args[0][int(args[1])]
        if name == "States.ArrayLength":
            return len(args[0])
        if name == "States.ArrayUnique":
            unique: list[Any] = []
            for item in args[0]:
                if item not in unique:
                    unique.append(item)
            return unique
        if name == "States.Base64Encode":
            return base64.b64encode(str(args[0]).encode()).decode()
        if name == "States.Base64Decode":
            return base64.b64decode(str(args[0])).decode()
        if name == "States.Hash":
            algorithm = {
                "MD5": "md5",
                "SHA-1": "sha1",
                "SHA-256": "sha256",
                "SHA-384": "sha384",
                "SHA-512": "sha512",
            }
            return hashlib.new(algorithm[args[1]], str(args[0]).encode()).hexdigest()
        if name == "States.JsonMerge":
            merged = dict(args[0])
            merged.update(args[1])
            return merged
        if name == "States.MathRandom":
            return random.randrange(int(args[0]), int(args[1]))
        if name == "States.MathAdd":
            return args[0] + args[1]
        if name == "States.StringSplit":
            return [part for part in re.split("[" + re.escape(args[1]) + "]", args[0]) if part]
        if name == "States.UUID":
            return str(uuid.uuid4())
    except StatesError:
        raise
    except Exception as error:
        raise StatesError("States.IntrinsicFailure", f"{name}: {error}") from error
    raise StatesError("States.IntrinsicFailure", f"{name} is not supported")


def apply_template(template: Any, data: Any, context: dict[str, Any]) -> Any:
    """Parameters / ItemSelector / ResultSelector: keys ending in `.$` take a path or intrinsic."""
    if isinstance(template, dict):
        result: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                if value.startswith("$"):
                    result[key[:-2]] = read_path(value, data, context)
                else:
                    result[key[:-2]] = evaluate_intrinsic(value, data, context)
            else:
                result[key] = apply_template(value, data, context)
        return result
    if isinstance(template, list):
        return [apply_template(item, data, context) for item in template]
    return template


# ---------------------------------------------------------------------------- choice rules
def _compare(rule: dict[str, Any], data: Any, context: dict[str, Any]) -> bool:
    if "And" in rule:
        return all(_compare(item, data, context) for item in rule["And"])
    if "Or" in rule:
        return any(_compare(item, data, context) for item in rule["Or"])
    if "Not" in rule:
        return not _compare(rule["Not"], data, context)
    variable = rule.get("Variable")
    if variable is None:
        raise StatesError("States.Runtime", f"Choice rule without Variable: {rule!r}")
    try:
        value = read_path(variable, data, context)
        present = True
    except StatesError:
        value, present = None, False
    for operator, expected in rule.items():
        if operator in ("Variable", "Next"):
            continue
        if operator == "IsPresent":
            return bool(present == expected)
        if not present:
            return False
        if operator == "IsNull":
            return bool((value is None) == expected)
        if operator == "IsNumeric":
            return bool((isinstance(value, (int, float)) and not isinstance(value, bool)) == expected)
        if operator == "IsString":
            return bool(isinstance(value, str) == expected)
        if operator == "IsBoolean":
            return bool(isinstance(value, bool) == expected)
        if operator == "IsTimestamp":
            return bool((_timestamp(value) is not None) == expected)
        if operator.endswith("Path"):
            expected = read_path(expected, data, context)
            operator = operator[: -len("Path")]
        return _apply_operator(operator, value, expected)
    raise StatesError("States.Runtime", f"Choice rule without comparison: {rule!r}")


def _timestamp(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _apply_operator(operator: str, value: Any, expected: Any) -> bool:
    kinds: dict[str, type | tuple[type, ...]] = {"String": str, "Numeric": (int, float), "Boolean": bool}
    for prefix, kind in kinds.items():
        if operator.startswith(prefix):
            if not isinstance(value, kind) or (prefix == "Numeric" and isinstance(value, bool)):
                return False
            comparison = operator[len(prefix) :]
            if comparison == "Matches":
                pattern = re.escape(str(expected)).replace(r"\*", ".*")
                return re.fullmatch(pattern, str(value)) is not None
            return _ordered(comparison, value, expected)
    if operator.startswith("Timestamp"):
        left, right = _timestamp(value), _timestamp(expected)
        if left is None or right is None:
            return False
        return _ordered(operator[len("Timestamp") :], left, right)
    raise StatesError("States.Runtime", f"Unknown Choice operator {operator}")


def _ordered(comparison: str, left: Any, right: Any) -> bool:
    if comparison == "Equals":
        return bool(left == right)
    if comparison == "LessThan":
        return bool(left < right)
    if comparison == "GreaterThan":
        return bool(left > right)
    if comparison == "LessThanEquals":
        return bool(left <= right)
    if comparison == "GreaterThanEquals":
        return bool(left >= right)
    raise StatesError("States.Runtime", f"Unknown comparison {comparison}")


# ---------------------------------------------------------------------------- errors
# Step Functions' payload quota: a state's input (after Parameters), a task's result and a
# state's output are at most 256 KiB as UTF-8 JSON, else States.DataLimitExceeded.
MAX_PAYLOAD_BYTES = 262_144
# Errors no wildcard takes: AWS's "States.ALL ... can't catch the States.DataLimitExceeded
# terminal error or Runtime error types" (Error handling in Step Functions); nor does
# States.TaskFailed, which stands for a task's own failures.
UNCATCHABLE_BY_WILDCARD = frozenset({"States.Runtime", "States.DataLimitExceeded"})


def error_matches(names: list[str], error: str) -> bool:
    """Whether a Retrier's or Catcher's ErrorEquals takes `error`."""
    if error in names:
        return True
    if error in UNCATCHABLE_BY_WILDCARD:
        return False
    if "States.ALL" in names:
        return True
    return "States.TaskFailed" in names and error != "States.Timeout"


def check_payload_size(value: Any, what: str) -> None:
    """States.DataLimitExceeded when `value` is over the payload quota."""
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise StatesError(
            "States.DataLimitExceeded",
            f"The {what} has a size of {size} bytes, over the quota of {MAX_PAYLOAD_BYTES} bytes",
        )


# ---------------------------------------------------------------------------- history
def event_details_key(event_type: str) -> str | None:
    """The HistoryEvent member holding an event type's details (None: that type has none)."""
    if event_type.endswith("StateEntered"):
        return "stateEnteredEventDetails"
    if event_type.endswith("StateExited"):
        return "stateExitedEventDetails"
    if event_type in _NO_DETAILS:
        return None
    return event_type[0].lower() + event_type[1:] + "EventDetails"


_NO_DETAILS = frozenset(
    {
        "LambdaFunctionStarted",
        "MapRunSucceeded",
        "MapRunAborted",
        "MapStateAborted",
        "MapStateFailed",
        "MapStateSucceeded",
        "ParallelStateAborted",
        "ParallelStateFailed",
        "ParallelStateStarted",
        "ParallelStateSucceeded",
        "TaskStateAborted",
        "WaitStateAborted",
    }
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------- executions
@dataclass
class Execution:
    arn: str
    name: str
    state_machine_id: str
    state_machine_arn: str
    input: Any
    status: str = "RUNNING"  # RUNNING | SUCCEEDED | FAILED | ABORTED
    input_text: str | None = None  # the input as the caller sent it (the API answers it unchanged)
    output: Any = None
    output_text: str | None = None  # the output's JSON text, once SUCCEEDED (see `input_json`)
    error: str | None = None
    cause: str | None = None
    start_date: str = field(default_factory=_now)
    stop_date: str | None = None
    # GetExecutionHistory's events, in order (a Map's iterations included, Distributed or not)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def input_json(self) -> str:
        """The input as the API and the history show it: the caller's text, else compact JSON."""
        return self.input_text if self.input_text is not None else _json(self.input)

    def finish(self, output: Any) -> None:
        """SUCCEEDED with `output`. Its text is Step Functions' compact JSON; when no state made a
        new value (the input passed through Wait or Pass states unchanged), the input's text as
        the caller sent it, as AWS carries it (spacing included)."""
        self.output = output
        passed_through = isinstance(output, (dict, list)) and output is self.input
        self.output_text = self.input_json if passed_through else _json(output)
        self.status = "SUCCEEDED"

    def record(self, event_type: str, details: dict[str, Any] | None = None) -> None:
        """Append a HistoryEvent; its previousEventId is the event recorded before it."""
        event_id = len(self.events) + 1
        event: dict[str, Any] = {
            "timestamp": time.time(),
            "type": event_type,
            "id": event_id,
            "previousEventId": event_id - 1,
        }
        key = event_details_key(event_type)
        if key is not None:
            event[key] = details or {}
        self.events.append(event)


class StepFunctions:
    """Runs the app's state machines; `start_execution` returns at once, like the API."""

    def __init__(
        self,
        app: LocalApp,
        invoker: FunctionInvoker,
        *,
        retry_delay_scale: float = 0.1,
        wait_scale: float = 1.0,
        may_invoke: Callable[[str, str], str | None] | None = None,
        tasks: TaskBackend | None = None,
        api_ids: dict[str, bool] | None = None,
    ) -> None:
        self.app = app
        self.invoker = invoker
        # service and API calls of Task states, signed with each machine's role (None: refused)
        self.tasks = tasks
        # the template's API ids (apigateway:invoke targets), each: whether paths sit under a stage
        self.api_ids = dict(api_ids) if api_ids is not None else app_api_ids(app)
        for machine in app.state_machines.values():
            for unsupported in unsupported_tasks(machine.definition):
                log.warning("tidings dev: %s", unsupported.line(machine.logical_id))
        # (state machine logical id, function ARN) -> AWS's AccessDenied message when its role
        # may not lambda:InvokeFunction it; None: allowed
        self.may_invoke = may_invoke
        # local runs shorten Retry intervals and Wait states by these factors
        self.retry_delay_scale = retry_delay_scale
        self.wait_scale = wait_scale
        self.executions: dict[str, Execution] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def machine_id_for(self, name_or_arn: str) -> str | None:
        for logical_id, machine in self.app.state_machines.items():
            if name_or_arn in (logical_id, machine.name, machine.arn):
                return logical_id
        return None

    async def start_execution(
        self, state_machine_id: str, input: Any, *, name: str | None = None, input_text: str | None = None
    ) -> str:
        machine_id = self.machine_id_for(state_machine_id)
        if machine_id is None:
            raise StatesError("StateMachineDoesNotExist", f"State machine does not exist: {state_machine_id}")
        machine = self.app.state_machines[machine_id]
        execution_name = name or str(uuid.uuid4())
        arn = execution_arn(self.app.region, machine, execution_name)
        if arn in self.executions:
            raise StatesError("ExecutionAlreadyExists", f"Execution already exists: {arn}")
        execution = Execution(arn, execution_name, machine_id, machine.arn, input, input_text=input_text)
        self.executions[arn] = execution
        self._tasks[arn] = asyncio.create_task(
            self._run(machine, execution), name=f"execution {execution_name}"
        )
        return arn

    def describe_execution(self, execution_arn: str) -> Execution:
        execution = self.executions.get(execution_arn)
        if execution is None:
            raise StatesError("ExecutionDoesNotExist", f"Execution does not exist: {execution_arn}")
        return execution

    async def wait_for(self, execution_arn: str) -> Execution:
        """The execution once it has stopped."""
        task = self._tasks.get(execution_arn)
        if task is not None:
            await asyncio.shield(task)
        return self.describe_execution(execution_arn)

    async def stop_execution(self, execution_arn: str, error: str = "", cause: str = "") -> None:
        execution = self.describe_execution(execution_arn)
        if execution.status != "RUNNING":
            return
        execution.error, execution.cause = error or None, cause or None
        task = self._tasks.get(execution_arn)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if execution.status == "RUNNING":
            execution.status, execution.stop_date = "ABORTED", _now()

    async def stop(self) -> None:
        for arn in list(self._tasks):
            await self.stop_execution(arn)

    async def _run(self, machine: StateMachine, execution: Execution) -> None:
        context = {
            "Execution": {
                "Id": execution.arn,
                "Name": execution.name,
                "Input": execution.input,
                "StartTime": execution.start_date,
                "RoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/{machine.name}-role",
            },
            "StateMachine": {"Id": machine.arn, "Name": machine.name},
        }
        execution.record(
            "ExecutionStarted",
            {
                "input": execution.input_json,
                "inputDetails": {"truncated": False},
                "roleArn": context["Execution"]["RoleArn"],
            },
        )
        try:
            execution.finish(await _Run(self, execution, context).states(machine.definition, execution.input))
            succeeded = {"output": execution.output_text, "outputDetails": {"truncated": False}}
            execution.record("ExecutionSucceeded", succeeded)
        except StatesError as error:
            execution.status, execution.error, execution.cause = "FAILED", error.error, error.cause
        except asyncio.CancelledError:
            execution.status = "ABORTED"
            aborted = {"error": execution.error, "cause": execution.cause}
            execution.record("ExecutionAborted", {key: value for key, value in aborted.items() if value})
            raise
        except Exception as error:  # an interpreter bug fails this execution, not the stack
            log.exception("execution %s failed", execution.arn)
            execution.status, execution.error, execution.cause = "FAILED", "States.Runtime", str(error)
        finally:
            execution.stop_date = _now()
        if execution.status == "FAILED":
            execution.record("ExecutionFailed", {"error": execution.error, "cause": execution.cause or ""})
            log.warning("%s", execution_line(execution, machine))


class _Run:
    """One execution's walk through its states (and its Map/Parallel branches)."""

    def __init__(self, service: StepFunctions, execution: Execution, context: dict[str, Any]) -> None:
        self.service = service
        self.execution = execution
        self.context = context

    def record(self, event_type: str, details: dict[str, Any] | None = None) -> None:
        self.execution.record(event_type, details)

    async def states(
        self, definition: dict[str, Any], data: Any, context: dict[str, Any] | None = None
    ) -> Any:
        context = context or self.context
        states = definition.get("States", {})
        name = str(definition.get("StartAt"))
        while True:
            if name not in states:
                raise StatesError("States.Runtime", f"No state named {name!r}")
            state = states[name]
            state_context = {**context, "State": {"Name": name, "EnteredTime": _now(), "RetryCount": 0}}
            kind = str(state.get("Type"))
            self.record(f"{kind}StateEntered", {"name": name, "input": _json(data)})
            data, next_name = await self.state(name, state, data, state_context)
            check_payload_size(data, f"output of state {name}")
            self.record(f"{kind}StateExited", {"name": name, "output": _json(data)})
            if next_name is None:
                return data
            name = next_name

    async def state(
        self, name: str, state: dict[str, Any], raw_input: Any, context: dict[str, Any]
    ) -> tuple[Any, str | None]:
        kind = state.get("Type")
        following = None if state.get("End") else state.get("Next")
        if kind == "Succeed":
            return self._output(state, self._input(state, raw_input, context), context), None
        if kind == "Fail":
            error = state.get("Error") or (
                read_path(state["ErrorPath"], raw_input, context) if "ErrorPath" in state else "States.Fail"
            )
            cause = state.get("Cause") or (
                read_path(state["CausePath"], raw_input, context) if "CausePath" in state else ""
            )
            raise StatesError(str(error), str(cause))
        if kind == "Choice":
            data = self._input(state, raw_input, context)
            for rule in state.get("Choices", []):
                if _compare(rule, data, context):
                    return self._output(state, data, context), rule["Next"]
            if "Default" in state:
                return self._output(state, data, context), state["Default"]
            raise StatesError("States.NoChoiceMatched", f"No Choice rule matched in state {name}")
        if kind == "Wait":
            data = self._input(state, raw_input, context)
            await asyncio.sleep(self._wait_seconds(state, data, context) * self.service.wait_scale)
            return self._output(state, data, context), following
        if kind == "Pass":
            data = self._input(state, raw_input, context)
            if "Parameters" in state:
                data = apply_template(state["Parameters"], data, context)
            result = state.get("Result", data)
            return self._output(
                state, write_path(state.get("ResultPath", "$"), raw_input, result), context
            ), following
        if kind in ("Task", "Map", "Parallel"):
            return await self._with_retry_and_catch(name, state, raw_input, context, following)
        raise StatesError("States.Runtime", f"State {name}: type {kind!r} is not supported locally")

    def _input(self, state: dict[str, Any], raw_input: Any, context: dict[str, Any]) -> Any:
        path = state.get("InputPath", "$")
        return {} if path is None else read_path(path, raw_input, context)

    def _output(self, state: dict[str, Any], data: Any, context: dict[str, Any]) -> Any:
        path = state.get("OutputPath", "$")
        return {} if path is None else read_path(path, data, context)

    def _wait_seconds(self, state: dict[str, Any], data: Any, context: dict[str, Any]) -> float:
        if "Seconds" in state:
            return float(state["Seconds"])
        if "SecondsPath" in state:
            return float(read_path(state["SecondsPath"], data, context))
        stamp = state.get("Timestamp") or read_path(state.get("TimestampPath", "$"), data, context)
        moment = _timestamp(stamp)
        if moment is None:
            raise StatesError("States.Runtime", f"Invalid timestamp {stamp!r}")
        return max(0.0, (moment - datetime.datetime.now(datetime.UTC)).total_seconds())

    async def _with_retry_and_catch(
        self, name: str, state: dict[str, Any], raw_input: Any, context: dict[str, Any], following: str | None
    ) -> tuple[Any, str | None]:
        attempts: dict[int, int] = {}
        while True:
            try:
                data = self._input(state, raw_input, context)
                result = await self._run_work(state, data, context)
                if "ResultSelector" in state:
                    result = apply_template(state["ResultSelector"], result, context)
                combined = write_path(state.get("ResultPath", "$"), raw_input, result)
                return self._output(state, combined, context), following
            except asyncio.CancelledError:
                raise
            except StatesError as error:
                failure = error
            delay = self._retry_delay(state, failure, attempts)
            if delay is not None:
                context = {**context, "State": {**context["State"], "RetryCount": sum(attempts.values())}}
                await asyncio.sleep(delay * self.service.retry_delay_scale)
                continue
            for catcher in state.get("Catch", []):
                if error_matches(catcher.get("ErrorEquals", []), failure.error):
                    error_output = {"Error": failure.error, "Cause": failure.cause}
                    return write_path(catcher.get("ResultPath", "$"), raw_input, error_output), catcher[
                        "Next"
                    ]
            raise failure

    def _retry_delay(
        self, state: dict[str, Any], failure: StatesError, attempts: dict[int, int]
    ) -> float | None:
        for index, retrier in enumerate(state.get("Retry", [])):
            if not error_matches(retrier.get("ErrorEquals", []), failure.error):
                continue
            made = attempts.get(index, 0)
            if made >= int(retrier.get("MaxAttempts", 3)):
                return None
            attempts[index] = made + 1
            delay = float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** made
            if "MaxDelaySeconds" in retrier:
                delay = min(delay, float(retrier["MaxDelaySeconds"]))
            if retrier.get("JitterStrategy") == "FULL":
                delay = random.uniform(0, delay)
            return delay
        return None

    async def _run_work(self, state: dict[str, Any], data: Any, context: dict[str, Any]) -> Any:
        kind = state["Type"]
        if kind in ("Parallel", "Map"):
            try:
                if kind == "Parallel":
                    self.record("ParallelStateStarted")
                    if "Parameters" in state:
                        data = apply_template(state["Parameters"], data, context)
                    result = await self._all(
                        [self.states(branch, data, context) for branch in state.get("Branches", [])],
                        tolerated=None,
                    )
                else:
                    result = await self._map(state, data, context)
            except StatesError:
                self.record(f"{kind}StateFailed")
                raise
            except asyncio.CancelledError:
                self.record(f"{kind}StateAborted")
                raise
            self.record(f"{kind}StateSucceeded")
            return result
        parameters = apply_template(state["Parameters"], data, context) if "Parameters" in state else data
        check_payload_size(parameters, "state's input after Parameters")
        timeout = state.get("TimeoutSeconds")
        if "TimeoutSecondsPath" in state:
            timeout = read_path(state["TimeoutSecondsPath"], data, context)
        resource = str(state.get("Resource", ""))
        events = _TaskEvents(self, resource, parameters, self.service.app.region, timeout)
        work = self._task(resource, parameters, context)
        try:
            result = await (work if timeout is None else asyncio.wait_for(work, timeout=float(timeout)))
        except TimeoutError:
            failure = StatesError("States.Timeout", f"Task did not finish within {timeout} seconds")
            events.ended("TimedOut", {"error": failure.error, "cause": failure.cause})
            raise failure from None
        except StatesError as error:
            events.ended("Failed", {"error": error.error, "cause": error.cause})
            raise
        events.ended("Succeeded", {"output": _json(result), "outputDetails": {"truncated": False}})
        check_payload_size(result, "task's result")
        return result

    async def _task(self, resource: str, parameters: Any, context: dict[str, Any]) -> Any:
        """Run a Task's resource (task invocation: the template's functions, through the runner)."""
        if resource == LAMBDA_INVOKE:
            if not isinstance(parameters, dict) or "FunctionName" not in parameters:
                raise StatesError("States.Runtime", "lambda:invoke needs Parameters.FunctionName")
            payload = parameters.get("Payload", {})
            result = await self._invoke(str(parameters["FunctionName"]), payload, context)
            return {"ExecutedVersion": "$LATEST", "Payload": result, "StatusCode": 200}
        if resource.startswith("arn:aws:lambda:"):
            return await self._invoke(resource, parameters, context)
        kind = classify(resource)
        if kind.kind == "unsupported":
            raise StatesError(
                "States.Runtime", f"Task resource {resource!r} is not supported locally ({kind.reason})"
            )
        tasks = self.service.tasks
        if tasks is None:
            raise StatesError("States.Runtime", f"Task resource {resource!r}: no AWS services to call here")
        machine_id = self.execution.state_machine_id
        try:
            if kind.kind == "apigateway":
                request = api_request(parameters, self.service.api_ids)
                return api_outcome(await tasks.invoke_api(machine_id, request))
            return service_outcome(kind, await tasks.call(machine_id, service_call(kind, parameters)))
        except TaskError as error:
            raise StatesError(error.error, error.cause) from None

    async def _invoke(self, function: str, payload: Any, context: dict[str, Any]) -> Any:
        function_id = None
        for logical_id, candidate in self.service.app.functions.items():
            if function in (logical_id, candidate.name, candidate.arn) or function.startswith(
                candidate.arn + ":"
            ):
                function_id = logical_id
                break
        if function_id is None:
            raise StatesError("Lambda.ResourceNotFoundException", f"Function not found: {function}")
        if self.service.may_invoke is not None:
            target = self.service.app.functions[function_id].arn
            qualified = function if function.startswith(target + ":") else target
            refused = self.service.may_invoke(self.execution.state_machine_id, qualified)
            if refused:
                # what Step Functions reports when its role may not invoke the function
                raise StatesError(
                    "Lambda.AWSLambdaException",
                    f"{refused} (Service: AWSLambda; Status Code: 403; Error Code: AccessDeniedException)",
                )
        source = f"Step Functions {self.execution.name} {context.get('State', {}).get('Name', '')}".strip()
        invocation = await self.service.invoker.invoke(function_id, payload, source=source)
        if invocation.ok:
            return invocation.result
        cause = {
            "errorMessage": invocation.error_message,
            "errorType": invocation.error_type,
            "stackTrace": (invocation.traceback or "").splitlines(),
        }
        raise StatesError(str(invocation.error_type or "Lambda.Unknown"), json.dumps(cause))

    async def _map(self, state: dict[str, Any], data: Any, context: dict[str, Any]) -> Any:
        if "ItemReader" in state:
            raise StatesError("States.Runtime", "Map ItemReader (items from S3) is not supported locally")
        items = read_path(state.get("ItemsPath", "$"), data, context)
        if not isinstance(items, list):
            raise StatesError("States.Runtime", f"Map items must be an array, got {type(items).__name__}")
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if not processor:
            raise StatesError("States.Runtime", "Map state has no ItemProcessor")
        concurrency = state.get("MaxConcurrency", 0)
        if "MaxConcurrencyPath" in state:
            concurrency = read_path(state["MaxConcurrencyPath"], data, context)
        limit = asyncio.Semaphore(
            int(concurrency) if concurrency and int(concurrency) > 0 else max(1, len(items))
        )
        selector = state.get("ItemSelector", state.get("Parameters"))
        name = str(context.get("State", {}).get("Name", ""))
        self.record("MapStateStarted", {"length": len(items)})
        distributed = (processor.get("ProcessorConfig") or {}).get("Mode") == "DISTRIBUTED"
        if distributed:
            map_run = f"{self.execution.arn.replace(':execution:', ':mapRun:', 1)}/{name}:{uuid.uuid4()}"
            self.record("MapRunStarted", {"mapRunArn": map_run})

        async def iteration(index: int, item: Any) -> Any:
            item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
            item_input = apply_template(selector, data, item_context) if selector is not None else item
            async with limit:
                self.record("MapIterationStarted", {"name": name, "index": index})
                try:
                    output = await self.states(processor, item_input, item_context)
                except StatesError:
                    self.record("MapIterationFailed", {"name": name, "index": index})
                    raise
                except asyncio.CancelledError:
                    self.record("MapIterationAborted", {"name": name, "index": index})
                    raise
                self.record("MapIterationSucceeded", {"name": name, "index": index})
                return output

        tolerated = None
        if "ToleratedFailurePercentage" in state or "ToleratedFailureCount" in state:
            count = float(state.get("ToleratedFailureCount", math.inf))
            percentage = float(
                state.get("ToleratedFailurePercentage", 100 if "ToleratedFailureCount" in state else 0)
            )
            tolerated = min(count, math.floor(len(items) * percentage / 100))
        try:
            results = await self._all([iteration(index, item) for index, item in enumerate(items)], tolerated)
        except StatesError as error:
            if distributed:
                self.record("MapRunFailed", {"error": error.error, "cause": error.cause})
            raise
        except asyncio.CancelledError:
            if distributed:
                self.record("MapRunAborted")
            raise
        if distributed:
            self.record("MapRunSucceeded")
        return results

    async def _all(self, works: list[Any], tolerated: float | None) -> list[Any]:
        """Run concurrently; the first failure cancels the rest (unless failures are tolerated)."""
        tasks = [asyncio.ensure_future(work) for work in works]
        failures = 0
        try:
            for finished in asyncio.as_completed(tasks):
                try:
                    await finished
                except StatesError as error:
                    if tolerated is None:
                        raise
                    failures += 1
                    if failures > tolerated:
                        raise StatesError(
                            "States.ExceedToleratedFailureThreshold",
                            f"{failures} of {len(tasks)} items failed; last: {error.error}",
                        ) from error
            return [task.result() if not task.exception() else None for task in tasks]
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class _TaskEvents:
    """A Task's Scheduled and Started events, then how it ended, in the names AWS uses: a
    function ARN as Resource gives LambdaFunction* events, an integration (`lambda:invoke`) Task*."""

    def __init__(self, run: _Run, resource: str, parameters: Any, region: str, timeout: Any) -> None:
        self.run = run
        self.lambda_function = resource.startswith("arn:aws:lambda:")
        if self.lambda_function:
            self.prefix, self.names = "LambdaFunction", {}
            scheduled: dict[str, Any] = {"resource": resource, "input": _json(parameters)}
            scheduled["inputDetails"] = {"truncated": False}
        else:
            service, _, action = resource.removeprefix("arn:aws:states:::").partition(":")
            if service == "aws-sdk":  # resourceType `aws-sdk:dynamodb`, resource `putItem`
                sdk_service, _, action = action.partition(":")
                service = f"aws-sdk:{sdk_service}"
            self.prefix, self.names = "Task", {"resourceType": service, "resource": action}
            scheduled = {**self.names, "region": region, "parameters": _json(parameters)}
        if timeout is not None:
            scheduled["timeoutInSeconds"] = int(float(timeout))
        run.record(f"{self.prefix}Scheduled", scheduled)
        run.record(f"{self.prefix}Started", None if self.lambda_function else dict(self.names))

    def ended(self, how: str, details: dict[str, Any]) -> None:
        self.run.record(f"{self.prefix}{how}", {**self.names, **details})


def execution_arn(region: str, machine: StateMachine, name: str) -> str:
    """An execution's ARN: `...:execution:MACHINE:NAME`, and for an EXPRESS machine
    `...:express:MACHINE:NAME:UUID` (each express run is told apart by its own id)."""
    if machine.machine_type == "EXPRESS":
        return f"arn:aws:states:{region}:{ACCOUNT_ID}:express:{machine.name}:{name}:{uuid.uuid4()}"
    return f"arn:aws:states:{region}:{ACCOUNT_ID}:execution:{machine.name}:{name}"


def app_api_ids(app: LocalApp) -> dict[str, bool]:
    """The template's API ids an `apigateway:invoke` may target: WebSocket APIs (`@connections`
    under the stage) and HTTP APIs (routes at the root of the HTTP port)."""
    from tidings.local.template import local_id

    ids = {local_id(route.api_logical_id): False for route in app.http_routes}
    ids.update({api.api_id: True for api in app.websocket_apis})
    return ids


def execution_line(execution: Execution, machine: StateMachine) -> str:
    """The terminal's line for an execution that failed: time, machine, execution, error, cause."""
    started = time.strftime("%H:%M:%S", time.localtime())
    cause = " ".join((execution.cause or "").split())
    if len(cause) > 400:
        cause = cause[:399] + "…"
    return (
        f"{started}  {machine.logical_id:<28} {'Step Functions ' + execution.name:<24} "
        f"execution FAILED {execution.error}: {cause}"
    )
