"""The Python client of a Tidings stack, for `pip install tidings` (websockets, PyJWT, boto3 only).

    import asyncio
    from tidings.jobs import job_states, resolve, token_for

    async def main() -> None:
        stack = resolve("tidings-dev")              # or resolve() for the running local stack
        async for job in job_states(stack.websocket_url, lambda: token_for(stack, "alice"), "job-1"):
            print(job.stage, job.percent, [s.percent for s in job.segments])

- `resolve` / `token_for`: where a stack listens and a signed token for a user (the stack's
  signing secret is read from its Secrets Manager; the token is never logged or stored).
- `job_states`: subscribes to one job and yields its states in order. Each connection gets a
  fresh token, re-subscribes after a drop with backoff, and the snapshot after subscribe catches
  up; the seq rule (docs/protocol.md) drops anything older or repeated, so states never go back.
  It ends after the completed or failed state; a refused subscription raises `SubscriptionError`.
- `publish_job_event`: what a publisher (a worker) puts on the stack's bus (docs/events.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from . import client, watch_view
from .client import Target
from .watch_view import JobView, WatchState

# docs/events.md (kept equal to tidings_core.events by tests/unit/cli/test_jobs_client.py)
EVENT_SOURCE = "tidings.transcode"
DETAIL_TYPE = "JobProgress"
MAX_ENTRY_BYTES = 256 * 1024
STAGES = frozenset({"queued", "probing", "transcoding", "merging", "completed", "failed"})

__all__ = [
    "JobView",
    "PublishError",
    "SubscriptionError",
    "Target",
    "job_states",
    "publish_job_event",
    "resolve",
    "token_for",
]


class SubscriptionError(Exception):
    """The stack refused the connection or the subscription, or stayed unreachable."""


class PublishError(Exception):
    """The job event is invalid or PutEvents did not accept it."""


def resolve(stack: str | None = None, region: str | None = None, template: str | None = None) -> Target:
    """A deployed stack by name (its CloudFormation outputs), else the running local stack."""
    try:
        return client.resolve_target(stack, region, template)
    except client.CliError as exc:
        raise SubscriptionError(exc.message) from None


def token_for(target: Target, user_id: str, ttl_seconds: int = 3600) -> str:
    """A connection token for `user_id`, signed with the stack's secret."""
    try:
        return client.make_token(target, user_id, ttl_seconds)
    except client.CliError as exc:
        raise SubscriptionError(exc.message) from None


class _Collector:
    """The `watch_job` sink that hands each accepted state to the iterator."""

    def __init__(self) -> None:
        self.states: asyncio.Queue[JobView] = asyncio.Queue()
        self.refusal: tuple[str, str] | None = None

    def update(self, state: WatchState, accepted: tuple[Any, ...]) -> None:
        if accepted and state.job is not None:
            self.states.put_nowait(state.job)

    def note(self, text: str) -> None:
        """Reconnections are the iterator's business, not the caller's."""

    def finish(self, lines: list[str]) -> None:
        """The iterator ends instead of printing a summary."""

    def close(self) -> None:
        """Nothing drawn, nothing to restore."""


async def job_states(
    websocket_url: str,
    token: Callable[[], str],
    job_id: str,
    *,
    ping_interval: float = client.PING_INTERVAL_SECONDS,
    max_attempts: int = client.MAX_RECONNECT_ATTEMPTS,
) -> AsyncIterator[JobView]:
    """Each new state of `job_id`, in seq order, until it completes or fails."""
    sink = _Collector()
    watcher = asyncio.create_task(
        client.watch_job(
            websocket_url, token, job_id, sink, ping_interval=ping_interval, max_attempts=max_attempts
        )
    )
    try:
        while True:
            next_state = asyncio.ensure_future(sink.states.get())
            done, _ = await asyncio.wait({next_state, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if next_state in done:
                yield next_state.result()
                continue
            next_state.cancel()
            while not sink.states.empty():
                yield sink.states.get_nowait()
            try:
                code = watcher.result()
            except client.CliError as exc:
                raise SubscriptionError(exc.message) from None
            if code == watch_view.EXIT_REFUSED:
                raise SubscriptionError(f"the stack refused the subscription to job:{job_id}")
            return
    finally:
        if not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def publish_job_event(detail: Mapping[str, Any], *, bus_name: str, events_client: Any = None) -> str:
    """PutEvents one job event (`docs/events.md`); returns its event id.

    Checks what the notifier would drop (required fields, stage, size) before sending, and raises
    PublishError when PutEvents reports the entry failed (boto3 does not raise for that).
    """
    required = {"version": int, "jobId": str, "userId": str, "seq": int, "stage": str, "emittedAt": int}
    for name, kind in required.items():
        if not isinstance(detail.get(name), kind) or isinstance(detail.get(name), bool):
            raise PublishError(f"job event field {name!r} must be {kind.__name__}")
    if detail["stage"] not in STAGES:
        raise PublishError(f"unknown stage {detail['stage']!r}")
    entry = {
        "Source": EVENT_SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps(dict(detail), separators=(",", ":")),
        "EventBusName": bus_name,
    }
    if len(json.dumps(entry).encode()) > MAX_ENTRY_BYTES:
        raise PublishError(f"job event of {detail['jobId']} exceeds {MAX_ENTRY_BYTES} bytes")
    if events_client is None:
        import boto3

        events_client = boto3.client("events")
    response = events_client.put_events(Entries=[entry])
    if response.get("FailedEntryCount", 0):
        failed = response["Entries"][0]
        raise PublishError(f"PutEvents failed: {failed.get('ErrorCode')}: {failed.get('ErrorMessage')}")
    return str(response["Entries"][0]["EventId"])
