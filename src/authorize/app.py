"""`$connect` REQUEST authorizer: verify the token, allow exactly this route's ARN."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import protocol, tokens
from tidings_core.config import settings

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict[str, Any]:
    config = settings()
    headers = event.headers or {}
    token = tokens.token_from_request(headers, event.query_string_parameters or {})
    try:
        secret = tokens.signing_secret(config.require("token_secret_arn"))
        claims = tokens.verify_token(secret, token, config.token_audience)
    except tokens.MissingToken as exc:
        logger.info("connection refused: 401", extra={"reason": str(exc)})
        metrics.add_metric(name="Unauthorized", unit=MetricUnit.Count, value=1)
        raise Exception("Unauthorized") from None  # API Gateway's contract for 401
    except tokens.InvalidToken as exc:
        logger.info("connection refused: 403", extra={"reason": str(exc)})
        metrics.add_metric(name="Denied", unit=MetricUnit.Count, value=1)
        return tokens.deny_policy(event.method_arn)
    logger.append_keys(user_id=claims.user_id)
    logger.info("connection allowed")
    metrics.add_metric(name="Allowed", unit=MetricUnit.Count, value=1)
    return tokens.allow_policy(claims, event.method_arn, subprotocol=protocol.offers_subprotocol(headers))
