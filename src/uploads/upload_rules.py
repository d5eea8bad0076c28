"""Upload requests: validation, safe object keys and the presigned PUT (no DynamoDB here)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_UPLOAD_BYTES = 2 * 1024**3  # 2 GiB: a Lambda worker's /tmp and 15 minutes bound what we accept
MAX_FILENAME_CHARS = 255
PUT_URL_SECONDS = 15 * 60
VIDEO_CONTENT_TYPES = frozenset(
    {
        "video/mp4",
        "video/quicktime",
        "video/x-matroska",
        "video/webm",
        "video/x-msvideo",
        "video/mpeg",
        "video/mp2t",
        "video/3gpp",
        "video/3gpp2",
        "video/x-m4v",
        "video/ogg",
        "video/x-flv",
    }
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class InvalidUpload(ValueError):
    """A 400: `message` says what to fix and is safe to return."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class UploadRequest:
    filename: str
    content_type: str
    size: int


def parse_upload_request(body: Any) -> UploadRequest:
    if not isinstance(body, Mapping):
        raise InvalidUpload("the body must be a JSON object with filename, contentType and size")
    filename = body.get("filename")
    content_type = body.get("contentType")
    size = body.get("size")
    if not isinstance(filename, str) or not filename.strip():
        raise InvalidUpload("filename must be a non-empty string")
    if len(filename) > MAX_FILENAME_CHARS:
        raise InvalidUpload(f"filename must be at most {MAX_FILENAME_CHARS} characters")
    if not isinstance(content_type, str):
        raise InvalidUpload("contentType must be a string such as video/mp4")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in VIDEO_CONTENT_TYPES:
        raise InvalidUpload(f"contentType {media_type or '(empty)'} is not a supported video type")
    if isinstance(size, bool) or not isinstance(size, int):
        raise InvalidUpload("size must be an integer number of bytes")
    if size <= 0:
        raise InvalidUpload("size must be positive (the file is empty)")
    if size > MAX_UPLOAD_BYTES:
        raise InvalidUpload(f"size must be at most {MAX_UPLOAD_BYTES} bytes (2 GiB)")
    return UploadRequest(filename, media_type, size)


def safe_filename(filename: str) -> str:
    """An S3-key-safe version of the client's name: ASCII letters, digits, `.`, `_`, `-` only."""
    base = PurePosixPath(filename.replace("\\", "/")).name
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    stem, dot, suffix = ascii_name.rpartition(".")
    if not dot:
        stem, suffix = ascii_name, ""
    stem = _UNSAFE.sub("-", stem).strip(".-_")[:120] or "video"
    suffix = _UNSAFE.sub("", suffix)[:10].lower()
    return f"{stem}.{suffix}" if suffix else stem


def upload_key(user_id: str, job_id: str, filename: str) -> str:
    """`uploads/{userId}/{jobId}/{safe filename}`: the plan step reads the job and owner back from it."""
    return f"uploads/{user_id}/{job_id}/{safe_filename(filename)}"


def presigned_put(client: S3Client, bucket: str, key: str, request: UploadRequest) -> dict[str, Any]:
    """The URL, method and headers the client must use.

    Content-Type, Content-Length and `If-None-Match: *` are signed, so S3 itself refuses a body
    of another size (403 SignatureDoesNotMatch) and a second PUT of the same key (412
    PreconditionFailed): one upload per job, of the declared size. Browsers set Content-Length
    from the body themselves.
    """
    url = client.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": bucket,
            "Key": key,
            "ContentType": request.content_type,
            "ContentLength": request.size,
            "IfNoneMatch": "*",
        },
        ExpiresIn=PUT_URL_SECONDS,
    )
    return {
        "url": url,
        "method": "PUT",
        "headers": {
            "Content-Type": request.content_type,
            "Content-Length": str(request.size),
            "If-None-Match": "*",
        },
        "expiresIn": PUT_URL_SECONDS,
    }


OUTPUT_PREFIX = "outputs/"
GET_URL_SECONDS = 3600


def with_output_links(client: S3Client, message: dict[str, Any]) -> dict[str, Any]:
    """A completed job's message with presigned GET URLs for its output and poster.

    Only keys under `outputs/` are signed: the role may read nothing else, and a job record
    pointing elsewhere must not turn this API into a reader of other objects.
    """
    output = message.get("output")
    if message.get("stage") != "completed" or not isinstance(output, dict):
        return message
    bucket = output.get("bucket")
    if not isinstance(bucket, str):
        return message
    links: dict[str, Any] = {}
    for key_field, url_field in (("key", "url"), ("posterKey", "posterUrl")):
        key = output.get(key_field)
        if isinstance(key, str) and key.startswith(OUTPUT_PREFIX):
            links[url_field] = client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=GET_URL_SECONDS
            )
    if not links:
        return message
    return {**message, "output": {**output, **links, "urlExpiresIn": GET_URL_SECONDS}}
