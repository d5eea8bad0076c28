"""One fresh process: import a handler and run its first invocation, as a cold Lambda does.

    python bench/tracing_probe.py FUNCTION [--invoke] [--no-tracer]
    (run by bench/coldstart.py in the handler's folder)

Prints `tracing-probe: {...}` after the handler's own logs: wall and CPU milliseconds of the
import and, with --invoke, of the first invocation. CPU time (this process only) is what the
comparison uses: on a shared machine wall time mostly measures the other processes. The backend is
whatever TRACING says (coldstart.py sets the environment); --no-tracer replaces Powertools'
tracing module with a no-op stub first, the baseline. AWS is moto, started after the timed import
so that its own imports are not counted. Only `connect` has an event here.
"""

from __future__ import annotations

import json
import sys
import time
import types
from typing import Any

MARKER = "tracing-probe: "


class _NoTracer:
    """What the handlers use of Powertools Tracer, doing nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def capture_lambda_handler(self, handler: Any = None, **kwargs: Any) -> Any:
        return handler if handler is not None else (lambda later: later)

    def put_annotation(self, *args: Any, **kwargs: Any) -> None:
        pass

    def put_metadata(self, *args: Any, **kwargs: Any) -> None:
        pass


class _Context:
    function_name = "bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"


CONNECT_EVENT = {
    "requestContext": {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "connectionId": "conn-1",
        "connectedAt": 1_700_000_000_000,
        "requestId": "req-1",
        "apiId": "api",
        "stage": "dev",
        "domainName": "api.example",
        "authorizer": {"userId": "alice"},
    },
    "headers": {},
    "isBase64Encoded": False,
}
EVENTS = {"connect": CONNECT_EVENT}


def _timed() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main(function: str, invoke: bool, tracer: bool) -> None:
    if not tracer:
        stub = types.ModuleType("aws_lambda_powertools.tracing")
        stub.Tracer = _NoTracer  # type: ignore[attr-defined]
        sys.modules["aws_lambda_powertools.tracing"] = stub
    wall, cpu = _timed()
    import app  # the handler module, as the runtime imports it

    wall_done, cpu_done = _timed()
    result = {"import_ms": (wall_done - wall) * 1000, "import_cpu_ms": (cpu_done - cpu) * 1000}
    if invoke:
        from moto import mock_aws

        from tidings_core import config, models

        with mock_aws():
            models.create_tables(config.settings())
            wall, cpu = _timed()
            app.handler(EVENTS[function], _Context())
            wall_done, cpu_done = _timed()
        result |= {
            "first_invocation_ms": (wall_done - wall) * 1000,
            "first_invocation_cpu_ms": (cpu_done - cpu) * 1000,
        }
    print(MARKER + json.dumps(result), file=sys.__stdout__, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], invoke="--invoke" in sys.argv[2:], tracer="--no-tracer" not in sys.argv[2:])
