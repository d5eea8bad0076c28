"""Records the console tests feed to `ConsoleStore` (tests/unit/local and tests/unit/devtools):
invocations, WebSocket and bus events, and Powertools log lines, built from values."""

from __future__ import annotations

import json
from typing import Any

from tidings.local.model import Invocation


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def invocation(
    function_id: str = "SubscribeFunction",
    *,
    ok: bool = True,
    result: Any = None,
    logs: str = "",
    duration_ms: float = 10.0,
    request_id: str = "r",
) -> Invocation:
    return Invocation(
        request_id=request_id,
        function_id=function_id,
        ok=ok,
        result=result,
        error_type=None if ok else "ValueError",
        error_message=None if ok else "boom",
        traceback=None if ok else "Traceback (most recent call last):\nValueError: boom",
        logs=logs,
        duration_ms=duration_ms,
        cold=False,
    )


def ws_event(connection_id: str, user: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "requestContext": {
            "connectionId": connection_id,
            "routeKey": "subscribe",
            "authorizer": {"userId": user, "principalId": user},
        }
    }
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def bus_event(job_id: str, user: str, seq: int, emitted_ms: int) -> dict[str, Any]:
    return {
        "id": f"event-{seq}",
        "source": "tidings.transcode",
        "detail-type": "JobProgress",
        "time": "2023-11-14T22:13:20Z",
        "detail": {
            "version": 1,
            "jobId": job_id,
            "userId": user,
            "seq": seq,
            "stage": "transcoding",
            "percent": 10,
            "emittedAt": emitted_ms,
        },
    }


def powertools_line(message: str, level: str = "INFO", **fields: Any) -> str:
    record = {"level": level, "location": "handler:1", "message": message, "timestamp": "2023-11-14 22:13:20"}
    return json.dumps({**record, "service": "tidings", **fields})
