"""Run handlers as Lambda runs them with active tracing, under moto; print what X-Ray would receive.

    python tests/functional/xray_probe.py OUT.json   (test_tracing.py runs it in its own process)

Its own process because the X-Ray SDK picks its Lambda context when first imported and patches
botocore for the whole process; neither may leak into the other tests. The X-Ray daemon is
replaced by an emitter that keeps each entity's JSON. Writes one JSON document to OUT.json
(stdout carries the handlers' own logs and metrics):
`{"token": ..., "invocations": {function: {"result", "entities"}}}`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from functional.conftest import FUNCTION_ENV  # noqa: E402 - tests/ must be on sys.path first

os.environ.update(
    {
        **{name: value for name, value in FUNCTION_ENV.items() if name != "POWERTOOLS_TRACE_DISABLED"},
        # as in Lambda: a task root, and the trace header the runtime sets for each invocation
        "LAMBDA_TASK_ROOT": str(TESTS.parent / "src"),
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_CONTEXT_MISSING": "RUNTIME_ERROR",  # a call outside any segment fails loudly
    }
)
os.environ.pop("POWERTOOLS_TRACE_DISABLED", None)
os.environ.pop("AWS_ENDPOINT_URL", None)
SIGNING_KEY = "xray-probe-signing-key-0123456789abcdef"


class MemoryEmitter:
    """Stands in for the UDP emitter: keeps what would have been sent to the X-Ray daemon."""

    def __init__(self) -> None:
        self.entities: list[dict[str, Any]] = []

    def send_entity(self, entity: Any) -> None:
        self.entities.append(json.loads(entity.serialize()))

    def set_daemon_address(self, address: str | None) -> None:
        pass

    @property
    def ip(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return 2000


def main(out: str) -> None:
    from handler_probe import handlers_under_moto

    with handlers_under_moto(SIGNING_KEY) as run:
        handlers = run.load_handlers()
        from aws_xray_sdk.core import xray_recorder

        emitter = MemoryEmitter()
        xray_recorder.configure(emitter=emitter)
        invocations: dict[str, Any] = {}
        for name, event in run.calls.items():
            emitter.entities.clear()
            result = handlers[name].handler(event, run.context())
            invocations[name] = {"result": result, "entities": list(emitter.entities)}
    Path(out).write_text(json.dumps({"token": run.token, "invocations": invocations}, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
