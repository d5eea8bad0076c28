"""HTTP API (payload 2.0): `POST /jobs` creates a job and a presigned upload; `GET /jobs/{jobId}` reads it.

The HTTP API's Lambda authorizer verifies the same JWT as the WebSocket and passes `userId`.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext

from tidings_core import logs, registry, tracing

if TYPE_CHECKING:  # mypy resolves modules from src/; Lambda puts this folder itself on the path
    from mypy_boto3_s3 import S3Client

    from uploads.upload_rules import (
        InvalidUpload,
        parse_upload_request,
        presigned_put,
        upload_key,
        with_output_links,
    )
else:
    from upload_rules import InvalidUpload, parse_upload_request, presigned_put, upload_key, with_output_links

logger = Logger()
logs.route_package_logs(logger)  # tidings_core's records as JSON lines with their keys
tracer = tracing.tracer(patch_modules=["botocore"])  # its DynamoDB calls as subsegments
api = APIGatewayHttpResolver()
MAX_UNFINISHED_JOBS = 20  # per user: queued (for at most an hour), probing, transcoding, merging


@functools.cache
def s3() -> S3Client:
    import boto3
    from botocore.config import Config

    # SigV4 presigning: required in newer regions and for KMS-encrypted buckets
    return boto3.client("s3", config=Config(signature_version="s3v4"))


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def _error(status: int, code: str, message: str) -> Response[str]:
    return _json(status, {"error": {"code": code, "message": message}})


def _user_id() -> str | None:
    claims = api.current_event.request_context.authorizer.get_lambda or {}
    user_id = claims.get("userId")
    return str(user_id) if user_id else None


@api.post("/jobs")
def create_job() -> Response[str]:
    user_id = _user_id()
    if user_id is None:  # only if the route lost its authorizer: refuse rather than guess
        return _error(401, "unauthorized", "no authenticated user")
    try:
        body = json.loads(api.current_event.decoded_body or "")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "invalid_request", "the body must be JSON")
    try:
        request = parse_upload_request(body)
    except InvalidUpload as exc:
        return _error(400, "invalid_request", exc.message)
    bucket = os.environ["INPUT_BUCKET"]
    job_id = uuid.uuid4().hex
    key = upload_key(user_id, job_id, request.filename)
    upload_input = {
        "bucket": bucket,
        "key": key,
        "contentType": request.content_type,
        "sizeBytes": request.size,
    }
    try:  # the job takes one of the user's slots atomically (registry.create_job)
        registry.create_job(job_id, user_id, input=upload_input, max_unfinished=MAX_UNFINISHED_JOBS)
    except registry.TooManyJobs:
        logger.info("job refused: too many unfinished", extra={"user_id": user_id})
        return _error(
            429,
            "too_many_jobs",
            f"you have {MAX_UNFINISHED_JOBS} unfinished jobs; wait for one to complete or fail",
        )
    logger.info("job created", extra={"job_id": job_id, "user_id": user_id, "size": request.size})
    return _json(201, {"jobId": job_id, "upload": presigned_put(s3(), bucket, key, request)})


@api.get("/jobs/<job_id>")
def read_job(job_id: str) -> Response[str]:
    user_id = _user_id()
    job = registry.get_job(job_id) if user_id else None
    if job is None or job.user_id != user_id:  # someone else's job is as absent as a missing one
        return _error(404, "not_found", "no such job")
    return _json(200, with_output_links(s3(), registry.snapshot_message(job)))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # it holds a presigned upload URL
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api.resolve(event, context)
