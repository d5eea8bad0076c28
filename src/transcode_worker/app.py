"""Step Functions task handlers of the transcoding pipeline; the work happens in `transcoder/`.

Each handler raises on failure: the exception's class name (`CorruptInput`, `WorkerLost`, ...)
is the Step Functions error the state machine retries on or catches into `fail_handler`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import registry

if TYPE_CHECKING:  # mypy resolves modules from src/; Lambda puts this folder itself on the path
    from transcode_worker.transcoder import steps, storage
    from transcode_worker.transcoder.sinks import BusSink
else:
    from transcoder import steps, storage
    from transcoder.sinks import BusSink

logger = Logger()
settings = storage.WorkerSettings.from_env()
sink = BusSink()
MAX_CONCURRENCY = int(os.environ.get("MAX_CONCURRENCY", "10"))


class UnknownJob(LookupError):
    """The upload names a job that does not exist or belongs to someone else."""


@logger.inject_lambda_context(clear_state=True)
def plan_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = steps.job_from_input(event, settings)
    logger.append_keys(job_id=job.job_id, user_id=job.user_id)
    stored = registry.get_job(job.job_id)
    if stored is None or stored.user_id != job.user_id:
        raise UnknownJob(f"no job {job.job_id} for this user")
    plan = steps.plan_step(event, settings, sink)
    logger.info("planned", extra={"segments": plan["segmentCount"]})
    return plan


@logger.inject_lambda_context(clear_state=True)
def segment_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(job_id=event.get("job", {}).get("jobId"), segment=event.get("segment"))
    return steps.segment_step(event, sink, concurrency=MAX_CONCURRENCY)


@logger.inject_lambda_context(clear_state=True)
def audio_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(job_id=event.get("job", {}).get("jobId"))
    return steps.audio_step(event)


@logger.inject_lambda_context(clear_state=True)
def merge_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(job_id=event.get("job", {}).get("jobId"))
    result = steps.merge_step(event, sink)
    logger.info("completed", extra={"output": result["output"]})
    return result


@logger.inject_lambda_context(clear_state=True)
def fail_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(job_id=event.get("jobId") or event.get("job", {}).get("jobId"))
    logger.warning("job failed", extra={"error": str(event.get("error"))[:1000]})
    return steps.fail_step(event, settings, sink)
