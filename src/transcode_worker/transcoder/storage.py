"""S3 access for the Lambda steps (boto3; `AWS_ENDPOINT_URL` points it at a local emulator)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EmptyInput

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PRESIGN_SECONDS = 3600  # long enough for one segment encode reading its window over HTTPS


@functools.cache
def s3() -> S3Client:
    import boto3
    from botocore.config import Config

    # SigV4 presigning: required in newer regions and for KMS-encrypted buckets
    return boto3.client("s3", config=Config(signature_version="s3v4"))


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    input_bucket: str
    output_bucket: str
    work_bucket: str
    work_prefix: str
    output_prefix: str
    segment_seconds: float
    max_segments: int
    preset: str

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WorkerSettings:
        values = dict(os.environ if env is None else env)
        input_bucket = values.get("INPUT_BUCKET", "")
        output_bucket = values.get("OUTPUT_BUCKET", "")
        return cls(
            input_bucket=input_bucket,
            output_bucket=output_bucket,
            work_bucket=values.get("WORK_BUCKET") or output_bucket,
            work_prefix=values.get("WORK_PREFIX", "work/"),
            output_prefix=values.get("OUTPUT_PREFIX", "outputs/"),
            segment_seconds=float(values.get("SEGMENT_SECONDS", "20")),
            max_segments=int(values.get("MAX_SEGMENTS", "400")),
            preset=values.get("OUTPUT_PRESET", "720p"),
        )


def object_size(bucket: str, key: str) -> int:
    head = s3().head_object(Bucket=bucket, Key=key)
    return int(head["ContentLength"])


def download(bucket: str, key: str, path: Path) -> Path:
    if object_size(bucket, key) == 0:
        raise EmptyInput("the uploaded file is empty")
    s3().download_file(bucket, key, str(path))
    return path


def upload(path: Path, bucket: str, key: str, *, content_type: str | None = None) -> None:
    extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
    s3().upload_file(str(path), bucket, key, ExtraArgs=extra or None)


def presigned_get(bucket: str, key: str) -> str:
    """An HTTPS URL ffmpeg can seek in with range requests, so a segment reads only its window."""
    url: str = s3().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
    )
    return url


def delete_prefix(bucket: str, prefix: str) -> int:
    """Remove the job's intermediate objects (the bucket's lifecycle rule catches what this misses)."""
    deleted = 0
    paginator = s3().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3().delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})  # type: ignore[typeddict-item]
            deleted += len(keys)
    return deleted
