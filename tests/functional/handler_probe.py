"""What the tracing probes (xray_probe.py, otel_probe.py) share: the handlers under moto, with
their tables, a signing secret, a pusher that posts nowhere, and one event for each handler.

Imported by the probes in their own process, after they have set the environment they test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HANDLERS = ("authorize", "connect", "subscribe", "notify", "disconnect")


@dataclass(frozen=True)
class ProbeRun:
    token: str  # alice's token, which the authorizer event carries
    calls: dict[str, dict[str, Any]]  # handler name -> the event it is invoked with, in order

    def load_handlers(self) -> dict[str, ModuleType]:
        from testkit import load_handler

        return {name: load_handler(name) for name in HANDLERS}

    @staticmethod
    def context() -> Any:
        from functional.conftest import FakeContext

        return FakeContext()


@contextmanager
def handlers_under_moto(signing_key: str) -> Iterator[ProbeRun]:
    """Inside moto: the tables, `signing_key` as the token secret, job-1 of alice's created before
    any handler runs, and the pusher replaced by one that answers every post itself."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        secret = boto3.client("secretsmanager").create_secret(Name="signing-key", SecretString=signing_key)
        os.environ["TOKEN_SECRET_ARN"] = secret["ARN"]
        from functional.conftest import FakeManagement, bus_event, sample, ws_event
        from tidings_core import config, models, push, registry, tokens

        settings = config.settings()
        models.create_tables(settings)
        registry.configure(settings)
        pusher = push.Pusher(FakeManagement(), sleep=lambda _: None)  # type: ignore[arg-type]
        push.pusher = lambda: pusher

        token = tokens.issue_token(signing_key, "alice", 600)
        authorizer_event = sample("authorizer_request")
        authorizer_event["headers"]["Sec-WebSocket-Protocol"] = f"tidings.v1, {token}"
        authorizer_event["multiValueHeaders"]["Sec-WebSocket-Protocol"] = [f"tidings.v1, {token}"]
        registry.create_job("job-1", "alice")
        subscribe = {"action": "subscribe", "topic": "job:job-1"}
        yield ProbeRun(
            token=token,
            calls={
                "authorize": authorizer_event,
                "connect": ws_event("connect", "conn-1"),
                "subscribe": ws_event("message", "conn-1", body=subscribe),
                "notify": bus_event(seq=1),
                "disconnect": ws_event("disconnect", "conn-1"),
            },
        )


def run_probe(probe: Path, out: Path) -> dict[str, Any]:
    """Run a probe script in its own process; its JSON document, with its output under "logs"."""
    completed = subprocess.run(
        [sys.executable, str(probe), str(out)], capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document: dict[str, Any] = json.loads(out.read_text())
    document["logs"] = completed.stdout + completed.stderr
    return document
