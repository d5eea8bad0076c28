"""`subscribe`, `unsubscribe`, `ping` and `$default`: answer one client frame through the management API."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import actions, logs, push, tracing

logger = Logger()
logs.route_package_logs(logger)  # tidings_core's records as JSON lines with their keys
metrics = Metrics()
tracer = tracing.tracer(patch_modules=["botocore"])  # DynamoDB calls as subsegments (docs/observability.md)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: LambdaContext) -> dict[str, Any]:
    request = event.request_context
    authorizer = request.get("authorizer") or {}
    caller = actions.Caller(request.connection_id, str(authorizer.get("userId", "")), request.connected_at)
    logger.append_keys(connection_id=caller.connection_id, user_id=caller.user_id, route=request.route_key)
    tracer.put_annotation(key="connection_id", value=caller.connection_id)
    replies = actions.handle_frame(event.decoded_body, caller)
    actions.send_replies(replies, caller, push.pusher())  # in order: `subscribed` before `snapshot`
    metrics.add_metric(name="Frames", unit=MetricUnit.Count, value=1)
    for reply in replies:
        if reply["type"] == "error":
            logger.info("frame refused", extra={"code": reply["code"]})
            metrics.add_metric(name="FrameRefused", unit=MetricUnit.Count, value=1)
    return {"statusCode": 200}
