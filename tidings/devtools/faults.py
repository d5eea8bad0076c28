"""Tidings' fault switches: `killAfterPosts` may count only the posts of one job (`jobId`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tidings.local.faults import FaultRequestError, PostFilter


def job_id_of(data: bytes) -> str | None:
    """The `jobId` of a posted job message, if it is one."""
    try:
        message = json.loads(data)
    except ValueError:
        return None
    job_id = message.get("jobId") if isinstance(message, dict) else None
    return job_id if isinstance(job_id, str) else None


def only_job(value: Any) -> Callable[[bytes], bool]:
    if not isinstance(value, str):
        raise FaultRequestError("killAfterPosts.jobId must be a string")
    return lambda data: job_id_of(data) == value


POST_FILTERS: dict[str, PostFilter] = {"jobId": only_job}
