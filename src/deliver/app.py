"""One shard of a job event, invoked asynchronously by notify: post it to the shard's subscribers."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import fanout, tracing

logger = Logger()
metrics = Metrics()
tracer = tracing.tracer(patch_modules=["botocore"])  # DynamoDB calls as subsegments (docs/observability.md)

_COUNTS = {"Delivered": "delivered", "Gone": "gone", "Throttled": "throttled", "Failed": "failed"}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = fanout.deliver_shard_task(event)
    logger.append_keys(job_id=report.job_id, seq=report.seq, shard=report.event_id)
    tracer.put_annotation(key="outcome", value=report.outcome)
    if report.job_id is not None:
        tracer.put_annotation(key="job_id", value=report.job_id)
    tracer.put_metadata(key="shard", value=asdict(report))
    if report.outcome == "invalid":
        metrics.add_metric(name="InvalidEvent", unit=MetricUnit.Count, value=1)
    for metric, attribute in _COUNTS.items():
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=getattr(report, attribute))
    metrics.add_metric(name="Superseded", unit=MetricUnit.Count, value=report.superseded)
    metrics.add_metric(name="ShardDuration", unit=MetricUnit.Milliseconds, value=report.duration_ms)
    logger.info("shard delivered", extra={"outcome": report.outcome, "recipients": report.recipients})
    return {"outcome": report.outcome, "delivered": report.delivered, "gone": report.gone}
