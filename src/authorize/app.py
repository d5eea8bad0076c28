"""Token authorizers: `handler` for the WebSocket `$connect`, `http_handler` for the jobs HTTP API."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
    APIGatewayAuthorizerRequestEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import logs, origins, protocol, tokens, tracing
from tidings_core.config import settings

logger = Logger()
logs.route_package_logs(logger)  # tidings_core's records as JSON lines with their keys
metrics = Metrics()
tracer = tracing.tracer(patch_modules=["botocore"])  # its Secrets Manager read (docs/observability.md)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # policies name the user: keep them out of traces
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict[str, Any]:
    """`$connect` REQUEST authorizer: check the Origin, verify the token, allow exactly this route's ARN."""
    config = settings()
    headers = event.headers or {}
    origin = origins.origin_header(headers)
    if not origins.policy_from_env().allows(origin):
        logger.info("connection refused: 403", extra={"reason": "origin not allowed", "origin": origin})
        metrics.add_metric(name="OriginDenied", unit=MetricUnit.Count, value=1)
        return tokens.deny_policy(event.method_arn)
    token = tokens.token_from_request(headers, event.query_string_parameters or {})
    try:
        claims = tokens.verify_with_secret(
            config.require("token_secret_arn"),
            token,
            config.token_audience,
            issuer=config.token_issuer,
            max_lifetime=config.token_max_lifetime,
        )
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


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # policies name the user: keep them out of traces
@event_source(data_class=APIGatewayAuthorizerEventV2)
def http_handler(event: APIGatewayAuthorizerEventV2, context: LambdaContext) -> dict[str, Any]:
    """HTTP API Lambda authorizer (payload 2.0, simple responses): `Authorization: Bearer <jwt>`.

    Every refusal is `isAuthorized: false` (403); the gateway itself answers 401 when the
    Authorization header is missing, because it is the identity source.
    """
    config = settings()
    try:
        token = tokens.bearer_token(event.headers.get("authorization"))  # case-insensitive
        claims = tokens.verify_with_secret(
            config.require("token_secret_arn"),
            token,
            config.token_audience,
            issuer=config.token_issuer,
            max_lifetime=config.token_max_lifetime,
        )
    except tokens.TokenError as exc:
        logger.info("request refused", extra={"reason": str(exc), "route": event.route_key})
        metrics.add_metric(name="HttpDenied", unit=MetricUnit.Count, value=1)
        return tokens.http_authorizer_response(None)
    logger.append_keys(user_id=claims.user_id)
    logger.info("request allowed", extra={"route": event.route_key})
    metrics.add_metric(name="HttpAllowed", unit=MetricUnit.Count, value=1)
    return tokens.http_authorizer_response(claims)
