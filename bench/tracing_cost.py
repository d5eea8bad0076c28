"""The template's `Tracing` parameter at cold start: no Tracer, X-Ray SDK, OpenTelemetry, side by side.

Per handler, in rotation, one fresh process per backend (bench/tracing_probe.py): CPU time of the
import of `app` and, for `connect`, of its first invocation against moto (started after the timed
import). The X-Ray SDK sends its segments by UDP to a port nobody reads; OpenTelemetry signs and
posts its OTLP/JSON batch to a loopback endpoint answering 200 (`otlp_sink`). CPU time rather than
wall time: on a shared machine wall time mostly measures the other processes. This runs the dev
venv's Python with the packages on its path, not the built layers (coldstart.py does that).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.stats import median

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ("connect", "disconnect", "notify", "subscribe", "authorize")


def _environment(function: str, tracing: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src" / function), str(ROOT / "src")]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",  # what the OTLP exporter signs with: nothing leaves the machine
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_SERVICE_NAME": "tidings",
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "LAMBDA_TASK_ROOT": str(ROOT / "src" / function),  # tracing on, as on Lambda
            "TRACING": tracing,
        }
    )
    return env


FIRST_INVOCATION = ("connect",)  # bench/tracing_probe.py has an event for it
_PROBE_MARKER = "tracing-probe: "
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


class _Sink(http.server.BaseHTTPRequestHandler):
    """Stands in for X-Ray's OTLP endpoint: reads the signed post, answers 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    """A loopback OTLP endpoint for the length of the block; yields its traces URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


BACKENDS = ("none", "xray-sdk", "opentelemetry")


def probe(function: str, backend: str, endpoint: str, python: str = sys.executable) -> dict[str, float]:
    """One fresh process (bench/tracing_probe.py): import, and for `connect` the first invocation."""
    env = _environment(function, "xray-sdk" if backend == "none" else backend)
    env.update(
        {
            "POWERTOOLS_METRICS_NAMESPACE": "Tidings",
            "CONNECTIONS_TABLE": "bench-connections",
            "SUBSCRIPTIONS_TABLE": "bench-subscriptions",
            "JOBS_TABLE": "bench-jobs",
            "FANOUT_TABLE": "bench-fanout",
            "_X_AMZN_TRACE_ID": TRACE_HEADER,  # as the runtime sets it for a sampled invocation
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
        }
    )
    options = (["--invoke"] if function in FIRST_INVOCATION else []) + (
        ["--no-tracer"] if backend == "none" else []
    )
    completed = subprocess.run(
        [python, str(ROOT / "bench" / "tracing_probe.py"), function, *options],
        cwd=ROOT / "src" / function,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(_PROBE_MARKER)]
    if completed.returncode != 0 or not lines:
        tail = completed.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"tracing probe of {function} ({backend}) failed: {tail[0]}")
    result: dict[str, float] = json.loads(lines[-1][len(_PROBE_MARKER) :])
    return result


def backends(repeats: int) -> dict[str, Any]:
    """Each handler with no Tracer, the X-Ray SDK Tracer and the OpenTelemetry Tracer, in rotation."""
    out: dict[str, Any] = {}
    with otlp_sink() as endpoint:
        for function in HANDLERS:
            runs = [
                {backend: probe(function, backend, endpoint) for backend in BACKENDS} for _ in range(repeats)
            ]
            out[function] = {
                backend: {
                    key: round(median([run[backend][key] for run in runs]), 1) for key in runs[0][backend]
                }
                for backend in BACKENDS
            }
    return out


def run(repeats: int) -> dict[str, Any]:
    return {"python": sys.version.split()[0], "repeats": repeats, "functions": backends(repeats)}
