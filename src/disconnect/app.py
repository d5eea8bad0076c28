"""`$disconnect`: forget the connection and all its subscriptions. Idempotent; always 200."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import logs, registry, tracing

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
    logger.append_keys(connection_id=request.connection_id)
    tracer.put_annotation(key="connection_id", value=request.connection_id)
    try:
        removed = registry.forget_connection(request.connection_id)
    except Exception:
        # $disconnect is best effort anyway: TTL and the notifier's 410 pruning clean up later
        logger.exception("could not forget the connection")
        metrics.add_metric(name="DisconnectFailed", unit=MetricUnit.Count, value=1)
        return {"statusCode": 200}
    logger.info(
        "disconnected",
        extra={"subscriptions": removed, "close_code": request.disconnect_status_code},
    )
    metrics.add_metric(name="Disconnected", unit=MetricUnit.Count, value=1)
    return {"statusCode": 200}
