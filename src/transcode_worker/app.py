"""Step Functions task handlers of the transcoding pipeline; the work happens in `transcoder/`.

Each handler raises on failure: the exception's class name (`CorruptInput`, `WorkerLost`, ...)
is the Step Functions error the state machine retries on or catches into `fail_handler`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import logs, registry

if TYPE_CHECKING:  # mypy resolves modules from src/; Lambda puts this folder itself on the path
    from transcode_worker.transcoder import steps, storage
    from transcode_worker.transcoder.sinks import BusSink
else:
    from transcoder import steps, storage
    from transcoder.sinks import BusSink

logger = Logger()
logs.route_package_logs(logger, ("tidings_core", "transcoder"))  # the steps log through transcoder.*
tracer = Tracer(patch_modules=["botocore"])  # S3, EventBridge and DynamoDB calls as subsegments
settings = storage.WorkerSettings.from_env()
sink = BusSink()
MAX_CONCURRENCY = int(os.environ.get("MAX_CONCURRENCY", "10"))


def _tag(job_id: Any, **keys: Any) -> None:
    """Keys on every log line, and the job id as the X-Ray annotation traces are searched by."""
    logger.append_keys(job_id=job_id, **keys)
    if isinstance(job_id, str):
        tracer.put_annotation(key="job_id", value=job_id)


class UnknownJob(LookupError):
    """The upload names a job that does not exist or belongs to someone else."""


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def plan_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = steps.job_from_input(event, settings)
    _tag(job.job_id, user_id=job.user_id)
    stored = registry.get_job(job.job_id)
    if stored is None or stored.user_id != job.user_id:
        raise UnknownJob(f"no job {job.job_id} for this user")
    plan = steps.plan_step(event, settings, sink)
    logger.info("planned", extra={"segments": plan["segmentCount"]})
    return plan


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def segment_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _tag(event.get("job", {}).get("jobId"), segment=event.get("segment"))
    return steps.segment_step(event, sink, concurrency=MAX_CONCURRENCY)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def audio_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _tag(event.get("job", {}).get("jobId"))
    return steps.audio_step(event)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def merge_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _tag(event.get("job", {}).get("jobId"))
    result = steps.merge_step(event, sink)
    logger.info("completed", extra={"output": result["output"]})
    return result


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def fail_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _tag(event.get("jobId") or event.get("job", {}).get("jobId"))
    logger.warning("job failed", extra={"error": str(event.get("error"))[:1000]})
    return steps.fail_step(event, settings, sink)
