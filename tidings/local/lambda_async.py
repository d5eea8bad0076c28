"""Lambda's asynchronous invocation, the way an EventBridge rule's Lambda target is invoked.

Lambda accepts the event at once, so a function error is never the caller's to retry: Lambda
itself tries again up to `MaximumRetryAttempts` times (default 2), one minute after the first
failure and two minutes after the second, while the event is younger than
`MaximumEventAgeInSeconds` (default 6 hours), all under one request id. Then the invocation
record goes to the OnFailure destination and the event itself to the function's dead-letter
queue (either, both, or neither: then it is dropped with a log line). A success goes to the
OnSuccess destination, if there is one. Locally the waits are scaled down by `delay_scale`.

`destination_record` and `dead_letter_attributes` are pure; `LambdaAsync` runs the attempts on
the event loop and `Destinations` sends to SQS, SNS, EventBridge or another function.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import boto3

from tidings.local.aws import LOCAL_CREDENTIALS
from tidings.local.model import Caller, Function, FunctionInvoker, Invocation, LocalApp, arn_service

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (60.0, 120.0)  # before Lambda's first and second retry
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
DEAD_LETTER_MESSAGE_LIMIT = 1024


def destination_record(
    function: Function,
    payload: Any,
    invocation: Invocation,
    *,
    attempts: int,
    condition: str | None,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The invocation record Lambda sends to an OnSuccess / OnFailure destination."""
    context: dict[str, Any] = {
        "requestId": invocation.request_id,
        "functionArn": f"{function.arn}:$LATEST",
        "condition": condition or "Success",
        "approximateInvokeCount": attempts,
    }
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if invocation.ok:
        body: Any = invocation.result
    else:
        response["functionError"] = "Unhandled"
        body = {"errorMessage": invocation.error_message or "", "errorType": invocation.error_type or "Error"}
        if invocation.traceback:
            body["stackTrace"] = invocation.traceback.rstrip().splitlines()
    return {
        "version": "1.0",
        "timestamp": now.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": context,
        "requestPayload": payload,
        "responseContext": response,
        "responsePayload": body,
    }


def dead_letter_attributes(invocation: Invocation) -> dict[str, str]:
    """The message attributes Lambda puts on an event it sends to a function's dead-letter queue."""
    message = invocation.error_message or invocation.error_type or "Error"
    return {
        "RequestID": invocation.request_id,
        "ErrorCode": "200",  # the Invoke call itself succeeded; the function failed
        "ErrorMessage": message[:DEAD_LETTER_MESSAGE_LIMIT],
    }


class Destinations:
    """Sends a record or an event to an ARN of the embedded services, or to a function."""

    def __init__(
        self,
        app: LocalApp,
        aws_endpoint: str,
        invoke_async: Callable[[str, Any], Awaitable[None]],
        credentials: Callable[[str | None], dict[str, str]] | None = None,
        may_invoke: Callable[[str, str], str | None] | None = None,
    ):
        self.app = app
        self.aws_endpoint = aws_endpoint
        self.invoke_async = invoke_async
        # boto3 credentials for a caller (a function's logical id, a rule's service principal);
        # None: the caller's own key is not known (moto without the guard)
        self.credentials = credentials
        # (function logical id, target function ARN) -> AWS's AccessDenied message, or None
        self.may_invoke = may_invoke
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._clients_lock = threading.Lock()  # sends run on worker threads; boto3 setup is not thread-safe

    def _client(self, service: str, caller: str | None = None) -> Any:
        with self._clients_lock:
            if (service, caller) not in self._clients:
                session = boto3.session.Session()
                factory: Any = session.client
                keys = self.credentials(caller) if self.credentials is not None else LOCAL_CREDENTIALS
                self._clients[(service, caller)] = factory(
                    service, endpoint_url=self.aws_endpoint, region_name=self.app.region, **keys
                )
            return self._clients[(service, caller)]

    async def send(
        self,
        arn: str,
        body: Any,
        attributes: dict[str, str] | None = None,
        *,
        success: bool,
        caller: str | None = None,
    ) -> None:
        """Send as `caller`, whose permissions AWS checks: the function's role for a destination,
        `events.amazonaws.com <rule ARN>` for a rule's dead-letter queue (the queue's policy)."""
        service = arn_service(arn)
        if service == "lambda":
            function_id = self.app.function_id_by_arn(arn)
            if function_id is None:
                raise LookupError(f"destination function not found: {arn}")
            refused = self.may_invoke(caller, arn) if self.may_invoke is not None and caller else None
            if refused:
                raise PermissionError(refused)
            await self.invoke_async(function_id, body)
            return
        await asyncio.to_thread(self._send_blocking, service, arn, body, attributes or {}, success, caller)

    def _send_blocking(
        self, service: str, arn: str, body: Any, attributes: dict[str, str], success: bool, caller: str | None
    ) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        typed = {key: {"DataType": "String", "StringValue": value} for key, value in attributes.items()}
        if service == "sqs":
            *_, account, name = arn.split(":", 5)
            # the queue's URL is the service's own lookup, not the caller's (no sqs:GetQueueUrl needed)
            url = self._client("sqs").get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                "QueueUrl"
            ]
            self._client("sqs", caller).send_message(QueueUrl=url, MessageBody=text, MessageAttributes=typed)
        elif service == "sns":
            self._client("sns", caller).publish(TopicArn=arn, Message=text, MessageAttributes=typed)
        elif service == "events":
            outcome = "Success" if success else "Failure"
            self._client("events", caller).put_events(
                Entries=[
                    {
                        "EventBusName": arn,
                        "Source": "lambda",
                        "DetailType": f"Lambda Function Invocation Result - {outcome}",
                        "Detail": text,
                    }
                ]
            )
        else:
            raise ValueError(f"unsupported destination: {arn}")


class LambdaAsync:
    """Runs asynchronous invocations with Lambda's retries, destinations and dead-letter queue."""

    def __init__(
        self,
        app: LocalApp,
        invoker: FunctionInvoker,
        aws_endpoint: str,
        *,
        delay_scale: float = 1.0,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        credentials: Callable[[str | None], dict[str, str]] | None = None,
        may_invoke: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.app = app
        self.invoker = invoker
        self.delay_scale = delay_scale
        self.clock = clock
        self.destinations = Destinations(app, aws_endpoint, self._chained, credentials, may_invoke)
        self.failed = 0  # invocations that ended in failure after Lambda's retries
        self.parked = 0  # failure records and events sent to a destination or dead-letter queue

    async def _chained(self, function_id: str, record: Any) -> None:
        await self.invoke(function_id, record, source="Lambda destination")

    async def invoke(self, function_id: str, payload: Any, *, source: str) -> None:
        """One asynchronous invocation, through all of Lambda's attempts; never raises."""
        await self.invoke_as(None, function_id, payload, source=source)

    async def invoke_as(
        self, caller: Caller | None, function_id: str, payload: Any, *, source: str
    ) -> str | None:
        """`invoke` for a service `caller` (an EventBridge rule) that Lambda checks against the
        function's resource-based policy. Returns why Lambda did not accept the event — then
        nothing ran and nothing is retried here: the caller's own retries apply. None once accepted."""
        function = self.app.functions[function_id]
        config = function.async_config
        request_id = str(uuid.uuid4())  # Lambda keeps one request id across the retries
        started = time.monotonic()
        waited_s = 0.0  # the scaled-down waits, which count at full length in the event's age
        attempts = 0
        while True:
            attempts += 1
            label = source if attempts == 1 else f"{source} (retry {attempts - 1})"
            invocation = await self._attempt(
                function_id, payload, label, request_id, caller if attempts == 1 else None
            )
            if invocation.refused:
                return invocation.error_message or "AccessDeniedException"
            if invocation.ok:
                await self._succeeded(function, payload, invocation, attempts)
                return None
            if attempts > config.max_retry_attempts:
                condition = RETRIES_EXHAUSTED
                break
            delay_s = RETRY_DELAYS_S[min(attempts - 1, len(RETRY_DELAYS_S) - 1)]
            ran_s = time.monotonic() - started - waited_s * self.delay_scale
            if ran_s + waited_s + delay_s >= config.max_event_age_s:
                condition = EVENT_AGE_EXCEEDED
                break
            await asyncio.sleep(delay_s * self.delay_scale)
            waited_s += delay_s
        await self._failed(function, payload, invocation, attempts, condition)
        return None

    async def _attempt(
        self, function_id: str, payload: Any, source: str, request_id: str, caller: Caller | None
    ) -> Invocation:
        try:
            if caller is None:
                return await self.invoker.invoke(function_id, payload, source=source, request_id=request_id)
            return await self.invoker.invoke(
                function_id, payload, source=source, request_id=request_id, caller=caller
            )
        except Exception as error:  # the runner itself failed (e.g. no worker could start): a failed try
            log.exception("%s: invocation %s could not run", function_id, request_id)
            return Invocation(
                request_id, function_id, ok=False, error_type=type(error).__name__, error_message=str(error)
            )

    async def _succeeded(
        self, function: Function, payload: Any, invocation: Invocation, attempts: int
    ) -> None:
        arn = function.async_config.on_success_arn
        if arn:
            record = destination_record(
                function, payload, invocation, attempts=attempts, condition=None, now=self.clock()
            )
            await self._park(arn, record, None, function, invocation, success=True)

    async def _failed(
        self, function: Function, payload: Any, invocation: Invocation, attempts: int, condition: str
    ) -> None:
        self.failed += 1
        config = function.async_config
        if config.on_failure_arn:  # destinations work in addition to, or instead of, a dead-letter queue
            record = destination_record(
                function, payload, invocation, attempts=attempts, condition=condition, now=self.clock()
            )
            await self._park(config.on_failure_arn, record, None, function, invocation, success=False)
        if config.dead_letter_arn:
            attributes = dead_letter_attributes(invocation)
            await self._park(config.dead_letter_arn, payload, attributes, function, invocation, success=False)
        if not (config.on_failure_arn or config.dead_letter_arn):
            log.warning(
                "%s: asynchronous invocation %s dropped after %d attempts (%s): %s",
                function.logical_id,
                invocation.request_id,
                attempts,
                condition,
                invocation.error_type,
            )

    async def _park(
        self,
        arn: str,
        body: Any,
        attributes: dict[str, str] | None,
        function: Function,
        invocation: Invocation,
        *,
        success: bool,
    ) -> None:
        try:
            await self.destinations.send(arn, body, attributes, success=success, caller=function.logical_id)
        except Exception:
            log.exception(
                "%s: invocation %s could not be sent to %s", function.logical_id, invocation.request_id, arn
            )
            return
        if not success:
            self.parked += 1
