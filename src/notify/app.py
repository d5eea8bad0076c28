"""EventBridge `JobProgress` → every subscriber of the job and of its owner."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import fanout, logs, tracing

logger = Logger()
logs.route_package_logs(logger)  # tidings_core's records as JSON lines with their keys
metrics = Metrics()
tracer = tracing.tracer(patch_modules=["botocore"])  # DynamoDB calls as subsegments (docs/observability.md)

_COUNTS = {"Delivered": "delivered", "Gone": "gone", "Throttled": "throttled", "Failed": "failed"}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # the EventBridge envelope read as a dict: Powertools' data classes package would import
    # every event class it has (about 15 ms of each cold start) for these two keys
    event_id = str(event.get("id", ""))
    logger.append_keys(event_id=event_id)
    report = fanout.deliver_job_event(event.get("detail"), event_id=event_id)
    logger.append_keys(job_id=report.job_id, seq=report.seq)
    # searchable in X-Ray: `annotation.job_id = "..."` finds every notify of one job
    tracer.put_annotation(key="outcome", value=report.outcome)
    if report.job_id is not None:
        tracer.put_annotation(key="job_id", value=report.job_id)
    tracer.put_metadata(key="fan_out", value=asdict(report))
    if report.outcome == "stale":
        metrics.add_metric(name="DuplicateDropped", unit=MetricUnit.Count, value=1)
    elif report.outcome == "wrong_owner":
        metrics.add_metric(name="WrongOwnerDropped", unit=MetricUnit.Count, value=1)
    elif report.outcome in ("invalid", "too_large"):
        metrics.add_metric(name="InvalidEvent", unit=MetricUnit.Count, value=1)
    else:
        for metric, attribute in _COUNTS.items():
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=getattr(report, attribute))
        metrics.add_metric(name="Shards", unit=MetricUnit.Count, value=report.shards)
        metrics.add_metric(name="FanOutDuration", unit=MetricUnit.Milliseconds, value=report.duration_ms)
        if report.publish_to_post_ms is not None:
            metrics.add_metric(
                name="PublishToPostLatency", unit=MetricUnit.Milliseconds, value=report.publish_to_post_ms
            )
    logger.info("job event handled", extra={"outcome": report.outcome, "recipients": report.recipients})
    return {"outcome": report.outcome, "delivered": report.delivered, "gone": report.gone}
