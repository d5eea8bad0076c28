"""Step Functions task handlers of the transcoding pipeline; the work happens in `transcoder/`.

Each handler raises on failure: the exception's class name (`CorruptInput`, `WorkerLost`, ...)
is the Step Functions error the state machine retries on or catches into `fail_handler`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import logs, registry, tracing

if TYPE_CHECKING:  # mypy resolves modules from src/; Lambda puts this folder itself on the path
    from transcode_worker.transcoder import steps, storage
    from transcode_worker.transcoder.errors import UploadMismatch
    from transcode_worker.transcoder.sinks import BusSink
else:
    from transcoder import steps, storage
    from transcoder.errors import UploadMismatch
    from transcoder.sinks import BusSink

logger = Logger()
logs.route_package_logs(logger, ("tidings_core", "transcoder"))  # the steps log through transcoder.*
tracer = tracing.tracer(patch_modules=["botocore"])  # S3, EventBridge and DynamoDB calls as subsegments
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


class DuplicateUpload(RuntimeError):
    """Another execution already transcodes this job (a second upload, or a redelivered S3
    event): the state machine ends this one quietly, without touching the job."""


def _declared_size(stored: Any) -> int | None:
    raw = stored.input
    values = raw.as_dict() if hasattr(raw, "as_dict") else dict(raw or {})
    size = values.get("sizeBytes")
    return int(size) if size is not None else None


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def plan_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = steps.job_from_input(event, settings)
    _tag(job.job_id, user_id=job.user_id)
    stored = registry.get_job(job.job_id)
    if stored is None or stored.user_id != job.user_id:
        raise UnknownJob(f"no job {job.job_id} for this user")
    # the state machine passes its execution id; a direct invocation is claimed by its event id
    execution = str(event.get("executionId") or event.get("id") or context.aws_request_id)
    if registry.claim_transcode(job.job_id, job.user_id, execution) is registry.TranscodeClaim.TAKEN:
        logger.warning("duplicate upload ignored", extra={"execution": execution})
        raise DuplicateUpload(f"job {job.job_id} is already being transcoded")
    declared = _declared_size(stored)
    actual = storage.object_size(job.bucket, job.key)
    if declared is None or declared != actual:  # S3 enforced it at upload; checked again here
        raise UploadMismatch(f"the upload is {actual} bytes, the job declared {declared}")
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
