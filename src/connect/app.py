"""`$connect`: register the connection for the authorized user; echo the `tidings.v1` subprotocol."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import logs, protocol, registry, tracing

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
    user_id = authorizer.get("userId")
    logger.append_keys(connection_id=request.connection_id, user_id=user_id)
    tracer.put_annotation(key="connection_id", value=request.connection_id)
    if not user_id:  # only reachable if the route lost its authorizer: refuse rather than guess
        logger.error("no authorizer context on $connect")
        metrics.add_metric(name="ConnectRefused", unit=MetricUnit.Count, value=1)
        return {"statusCode": 403}
    created = registry.register_connection(request.connection_id, user_id, request.connected_at)
    logger.info("connected" if created else "connect retried")
    metrics.add_metric(name="Connected", unit=MetricUnit.Count, value=1)
    response: dict[str, Any] = {"statusCode": 200}
    if protocol.offers_subprotocol(event.headers):
        response["headers"] = {"Sec-WebSocket-Protocol": protocol.SUBPROTOCOL}
    return response
