"""EventBridge delivery to Lambda and Step Functions targets in the embedded AWS services.

moto stores buses, rules and targets and matches events with its own EventPattern (prefix,
suffix, anything-but, numeric, exists, wildcard, $or, equals-ignore-case, cidr), but does not
deliver to Lambda or Step Functions. `route_rule_deliveries(deliver)` wraps moto's
`Rule.send_to_targets` in the process that runs moto (aws_process.py) so that a matched rule's
Lambda and Step Functions targets go to `deliver`; the stack hands them to its `EventDelivery`
(`AwsServices.route_events`), where a Lambda target becomes an asynchronous invocation
(EventBridge's event shape; `lambda_async.py` runs Lambda's own retries and destinations), and a
`states` target starts an execution. Failed deliveries (no such
function or state machine, bad input) are retried with exponential backoff and jitter under
the target's RetryPolicy, then sent to its DeadLetterConfig queue. A function's own errors are
not failed deliveries: as in AWS, Lambda has accepted the event.

`schedule` is called on another thread (the link to the AWS process); deliveries run on the
asyncio loop given to `install()` (handed over with `run_coroutine_threadsafe`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import datetime
import json
import logging
import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from tidings.local.invoke_permissions import rule_caller
from tidings.local.lambda_async import LambdaAsync
from tidings.local.model import FunctionInvoker, LocalApp

log = logging.getLogger(__name__)

StartExecution = Callable[[str, dict[str, Any]], Awaitable[Any]]

# EventBridge's defaults when a target has no RetryPolicy
DEFAULT_RETRY_ATTEMPTS = 185
DEFAULT_MAX_EVENT_AGE_S = 86400
FIRST_RETRY_DELAY_S = 1.0
MAX_RETRY_DELAY_S = 300.0
# Lambda's own retries (1 and 2 minutes) shrink less than EventBridge's: at 24 s and 48 s the first
# retry of a notify that crashed mid-fan-out still comes after its 20 s lease has run out, as on AWS.
LAMBDA_RETRY_DELAY_SCALE = 0.4
EVENT_KEYS = ("version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail")

# (rule ARN, rule name, its Lambda and Step Functions targets, the event as moto matched it)
RuleDeliveries = Callable[[str, str, list[dict[str, Any]], dict[str, Any]], None]

_lock = threading.Lock()
_active: RuleDeliveries | None = None
_original_send_to_targets: Any = None


def _target_service(target: dict[str, Any]) -> str:
    parts = str(target.get("Arn", "")).split(":")
    return parts[2] if len(parts) > 2 else ""


def _send_to_targets(rule: Any, event: dict[str, Any], transform_input: bool = True) -> None:
    """Replacement for moto's `Rule.send_to_targets` once `route_rule_deliveries` was called."""
    deliver = _active
    if deliver is None:
        _original_send_to_targets(rule, event, transform_input)
        return
    if getattr(rule, "state", "ENABLED") != "ENABLED":
        return  # EventBridge does not deliver through disabled rules
    if event.get("source") == "aws.s3" and rule.event_bus_name != "default":
        return  # S3 notifies the default bus only (moto offers its events to every bus)
    ours = [target for target in rule.targets if _target_service(target) in ("lambda", "states")]
    theirs = [target for target in rule.targets if target not in ours]
    if theirs:
        moto_rule = copy.copy(rule)  # moto delivers to SQS, logs, buses... itself
        moto_rule.targets = theirs
        _original_send_to_targets(moto_rule, event, transform_input)
    if ours and rule.event_pattern.matches_event(event):
        deliver(rule.arn, rule.name, ours, event)


def route_rule_deliveries(deliver: RuleDeliveries) -> None:
    """In the process that runs moto: matched Lambda and Step Functions targets go to `deliver`
    (on moto's threads), the others stay moto's (SQS, logs, buses)."""
    global _active, _original_send_to_targets
    from moto.events.models import Rule

    with _lock:
        if _original_send_to_targets is None:
            _original_send_to_targets = Rule.send_to_targets
            # the moto seam tests read the original's signature through this
            _send_to_targets.__wrapped__ = _original_send_to_targets  # type: ignore[attr-defined]
            Rule.send_to_targets = _send_to_targets  # type: ignore[method-assign,assignment]
        _active = deliver


def eventbridge_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as EventBridge hands it to targets (moto keeps `time` as epoch seconds)."""
    shaped = {key: copy.deepcopy(event[key]) for key in EVENT_KEYS if key in event}
    moment = shaped.get("time")
    if isinstance(moment, (int, float)):
        shaped["time"] = datetime.datetime.fromtimestamp(moment, tz=datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    elif isinstance(moment, datetime.datetime):
        shaped["time"] = moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return shaped


def target_input(target: dict[str, Any], event: dict[str, Any]) -> Any:
    """Input, InputPath or InputTransformer applied the way EventBridge does; else the event."""
    if target.get("Input") is not None:
        return json.loads(target["Input"])
    if target.get("InputPath"):
        from jsonpath_ng.ext.parser import parse

        matches = parse(target["InputPath"]).find(event)
        return matches[0].value if matches else None
    if target.get("InputTransformer"):
        from moto.events.utils import EventTemplateParser

        transformer = target["InputTransformer"]
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,  # type: ignore[arg-type]
        )
    return event


class EventDelivery:
    """Delivers matched events to the app's functions and state machines, with retries and DLQ."""

    def __init__(
        self,
        app: LocalApp,
        invoker: FunctionInvoker,
        aws_endpoint: str,
        *,
        start_execution: StartExecution | None = None,
        retry_delay_scale: float = 0.01,
        lambda_retry_delay_scale: float = LAMBDA_RETRY_DELAY_SCALE,
        credentials: Callable[[str | None], dict[str, str]] | None = None,
        may_invoke: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.app = app
        self.invoker = invoker
        self.aws_endpoint = aws_endpoint
        self.start_execution = start_execution
        # local runs shrink EventBridge's backoff (seconds to minutes) by this factor
        self.retry_delay_scale = retry_delay_scale
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._pending_lock = threading.Lock()
        self.lambda_async = LambdaAsync(
            app,
            invoker,
            aws_endpoint,
            delay_scale=lambda_retry_delay_scale,
            credentials=credentials,
            may_invoke=may_invoke,
        )
        self.delivered = 0
        self.dead_lettered = 0

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Deliver on `loop` (default: the running one) what `schedule` is given from now on
        (`AwsServices.route_events` installs it and hands it the rules' matches)."""
        self._loop = loop or asyncio.get_running_loop()

    def uninstall(self) -> None:
        """Deliver nothing more: later matches are dropped with a warning (the stack is stopping,
        or a reloaded template's delivery took over)."""
        self._loop = None

    async def drain(self) -> None:
        """Wait until every scheduled delivery (with its retries) has finished."""
        while True:
            with self._pending_lock:
                pending = list(self._pending)
            if not pending:
                return
            await asyncio.gather(*(asyncio.wrap_future(future) for future in pending), return_exceptions=True)

    # ---------------------------------------------------------------- delivery
    def schedule(
        self, rule_arn: str, rule_name: str, targets: list[dict[str, Any]], event: dict[str, Any]
    ) -> None:
        """Called on another thread: hand each target's delivery to the loop and return at once."""
        loop = self._loop
        if loop is None or loop.is_closed():
            log.warning("event %s for rule %s dropped: delivery is not running", event.get("id"), rule_name)
            return
        shaped = eventbridge_event(event)
        for target in targets:
            future = asyncio.run_coroutine_threadsafe(
                self._deliver(rule_arn, rule_name, dict(target), shaped), loop
            )
            with self._pending_lock:
                self._pending.add(future)
            future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[None]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    async def _deliver(
        self, rule_arn: str, rule_name: str, target: dict[str, Any], event: dict[str, Any]
    ) -> None:
        try:
            payload = target_input(target, event)
        except Exception as error:
            await self._dead_letter(rule_arn, target, event, ("InvalidInput", str(error)))
            return
        policy = target.get("RetryPolicy") or {}
        max_retries = int(policy.get("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS))
        max_age_s = float(policy.get("MaximumEventAgeInSeconds", DEFAULT_MAX_EVENT_AGE_S))
        retries = 0
        age_s = 0.0  # in EventBridge's time: the scaled-down waits count at full length
        while True:
            failure = await self._attempt(rule_arn, rule_name, target, payload)
            if failure is None:
                self.delivered += 1
                return
            delay_s = min(FIRST_RETRY_DELAY_S * 2**retries, MAX_RETRY_DELAY_S) * random.uniform(0.5, 1.0)
            if retries >= max_retries or age_s + delay_s > max_age_s:
                break
            log.info("retrying %s for rule %s after %s", target.get("Arn"), rule_name, failure[0])
            await asyncio.sleep(delay_s * self.retry_delay_scale)
            age_s += delay_s
            retries += 1
        await self._dead_letter(rule_arn, target, event, failure, retries + 1)

    async def _attempt(
        self, rule_arn: str, rule_name: str, target: dict[str, Any], payload: Any
    ) -> tuple[str, str] | None:
        arn = str(target["Arn"])
        service = _target_service(target)
        try:
            if service == "lambda":
                function_id = self.app.function_id_by_arn(arn)
                if function_id is None:
                    return ("ResourceNotFoundException", f"Function not found: {arn}")
                # Lambda checks the function's policy for events.amazonaws.com and this rule's ARN;
                # refused, it is a failed delivery (the rule's RetryPolicy, then its dead-letter queue)
                refused = await self.lambda_async.invoke_as(
                    rule_caller(rule_arn), function_id, payload, source=f"EventBridge rule {rule_name}"
                )
                if refused is not None:
                    return ("AccessDeniedException", refused)
                # accepted: from here on the retries are Lambda's (the function's EventInvokeConfig)
                return None
            if service == "states":
                if self.start_execution is None:
                    return ("ServiceUnavailable", "Step Functions is not running in this local stack")
                machine_id = self._state_machine_id(arn)
                if machine_id is None:
                    return ("StateMachineDoesNotExist", f"State machine not found: {arn}")
                await self.start_execution(machine_id, payload)
                return None
        except Exception as error:  # a broken target must not stop delivery to others
            log.exception("delivery to %s failed", arn)
            return (type(error).__name__, str(error))
        return ("UnsupportedTarget", f"{arn} is not a Lambda or Step Functions target")

    def _state_machine_id(self, arn: str) -> str | None:
        for logical_id, machine in self.app.state_machines.items():
            if arn == machine.arn:
                return logical_id
        return None

    async def _dead_letter(
        self,
        rule_arn: str,
        target: dict[str, Any],
        event: dict[str, Any],
        failure: tuple[str, str],
        attempts: int = 1,
    ) -> None:
        queue_arn = (target.get("DeadLetterConfig") or {}).get("Arn")
        if not queue_arn:
            log.warning(
                "event %s dropped after %d attempts to %s: %s",
                event.get("id"),
                attempts,
                target["Arn"],
                failure,
            )
            return
        attributes = {
            "RULE_ARN": rule_arn,
            "TARGET_ARN": str(target["Arn"]),
            "ERROR_CODE": failure[0],
            "ERROR_MESSAGE": failure[1][:1024] or failure[0],
        }
        try:
            # EventBridge sends as events.amazonaws.com for this rule: the queue's policy must allow it
            await self.lambda_async.destinations.send(
                str(queue_arn), event, attributes, success=False, caller=f"events.amazonaws.com {rule_arn}"
            )
            self.dead_lettered += 1
        except Exception:
            log.exception("event %s could not be sent to dead-letter queue %s", event.get("id"), queue_arn)
