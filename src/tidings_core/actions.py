"""What the server does with one client frame: subscribe, unsubscribe, ping (calls registry only)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import protocol, ratelimit, registry
from .protocol import Ping, ProtocolError, Subscribe, Topic, Unsubscribe
from .push import Outcome, Pusher

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the frame, from the event's requestContext (the authorizer's context persists)."""

    connection_id: str
    user_id: str
    connected_at: int  # epoch ms


def _owned_job(topic: Topic, caller: Caller) -> None:
    job = registry.get_job(topic.id)
    if job is None or job.user_id != caller.user_id:
        # one answer for both: another user's job id must not be told apart from a missing one
        raise ProtocolError("not_found", f"no job {topic.id}")


def _snapshot_jobs(topic: Topic, caller: Caller) -> list[dict[str, Any]]:
    if topic.kind == "job":
        job = registry.get_job(topic.id)
        jobs = [job] if job is not None else []
    else:
        jobs = registry.recent_jobs(caller.user_id, limit=protocol.SNAPSHOT_JOB_LIMIT)
    return [registry.snapshot_message(job) for job in jobs]


def subscribe(topic: Topic, caller: Caller) -> list[dict[str, Any]]:
    """Check ownership, write the subscription, THEN read the state for the snapshot.

    Writing first means an update stored after the read is fanned out to this connection, and
    one stored before it is in the snapshot; clients keep the highest seq per job.
    """
    if topic.kind == "user" and topic.id != caller.user_id:
        raise ProtocolError("forbidden", "you may subscribe only to your own user topic")
    if topic.kind == "job":
        _owned_job(topic, caller)  # before the write: never a moment subscribed to another's job
    registry.subscribe(str(topic), caller.connection_id, caller.user_id, caller.connected_at)
    return [protocol.subscribed(topic), protocol.snapshot(topic, _snapshot_jobs(topic, caller))]


def handle_frame(body: str | None, caller: Caller) -> list[dict[str, Any]]:
    """The replies to one frame, in order; errors become `error` replies and never escape."""
    try:
        if not registry.take_frame_token(caller.connection_id):
            raise ProtocolError(
                "rate_limited",
                f"at most {ratelimit.RATE_PER_SECOND} frames a second, bursts of {ratelimit.BURST}",
            )
        action = protocol.parse_frame(body)
        if isinstance(action, Subscribe):
            return subscribe(action.topic, caller)
        if isinstance(action, Unsubscribe):
            registry.unsubscribe(str(action.topic), caller.connection_id)
            return [protocol.unsubscribed(action.topic)]
        assert isinstance(action, Ping)
        return [protocol.pong(action)]
    except ProtocolError as exc:
        return [protocol.error(exc.code, exc.message)]
    except Exception:
        logger.exception("frame failed", extra={"connection_id": caller.connection_id})
        return [protocol.error("internal", "the server failed to handle this frame; try again")]


def send_replies(replies: list[dict[str, Any]], caller: Caller, poster: Pusher) -> Outcome:
    """Post the replies in order; stop at the first that fails, and forget the connection if Gone."""
    for reply in replies:
        result = poster.post(caller.connection_id, protocol.encode(reply))
        if result.outcome is Outcome.GONE:
            registry.forget_connection(caller.connection_id)  # closed while we answered
        if result.outcome is not Outcome.DELIVERED:
            logger.warning("reply lost", extra={"outcome": result.outcome.value, "reply": reply["type"]})
            return result.outcome
    return Outcome.DELIVERED
