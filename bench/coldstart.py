"""Cold start of connect, disconnect and notify as deployed: import plus the first invocation.

Each sample is a fresh Python 3.12 process (Lambda's python3.12 runtime) with only what the
function has on Lambda: the runtime's boto3 (its own directory, byte-compiled as the runtime
ships it), the TidingsCoreLayer built by its own Makefile (`src/tidings_core/Makefile`, for
this machine's platform instead of arm64) and the function's folder as the task root, tracing on
(`LAMBDA_TASK_ROOT`, `_X_AMZN_TRACE_ID`, as with `Tracing: Active`). The process imports the
handler and calls it once (bench/coldstart_probe.py): connect registers a connection, disconnect
forgets it, notify claims a job event and posts it to one subscriber. DynamoDB is a moto server
and `@connections` a bare HTTP server answering 200, both in this process, which is otherwise
idle; the figure is the handler's import plus its first call, wall time, and the process's CPU
time over the same span (steadier on a loaded machine). Lazy imports cannot hide here: what
the first call imports is counted.

`python -X importtime` in the same environment shows where the import time goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.stats import median

ROOT = Path(__file__).resolve().parent.parent
GOAL_MS = 350.0
GOAL_FUNCTIONS = ("connect", "disconnect", "notify")
PYTHON312 = Path(os.environ.get("BENCH_PYTHON312", Path.home() / ".pyenv/versions/3.12.1/bin/python"))
CACHE = ROOT / ".bench-cache"
PROBE = (Path(__file__).parent / "coldstart_probe.py").read_text()

_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


class ImportTimeMissing(LookupError):
    """The report has no line for the module (it failed to import, or was already imported)."""


def cumulative_import_us(report: str, module: str) -> int:
    """Cumulative microseconds of the top-level import of `module` in an `-X importtime` report."""
    found: int | None = None
    for line in report.splitlines():
        match = _LINE.match(line)
        # a nested import of the same name is indented deeper; the handler's own line is not
        if match and match.group(4) == module and len(match.group(3)) == 1:
            found = int(match.group(2))
    if found is None:
        raise ImportTimeMissing(f"no import time line for {module!r}")
    return found


# --- the deployment: runtime boto3 and the layer, built once per content -------------------------


def _digest(folder: Path) -> str:
    hashed = hashlib.sha256()
    for path in sorted(folder.glob("*")):
        if (path.is_file() and path.suffix in (".py", ".txt", "")) or path.name == "Makefile":
            hashed.update(path.name.encode() + b"\0" + path.read_bytes())
    return hashed.hexdigest()[:16]


def _run(command: list[str], **kwargs: Any) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(command[:4])} failed: {' / '.join(tail)}")


def deployment() -> tuple[Path, Path]:
    """(runtime site-packages, layer `python/` folder) for Python 3.12 on this machine."""
    if not PYTHON312.exists():
        raise RuntimeError(f"Python 3.12 not found at {PYTHON312} (set BENCH_PYTHON312)")
    pip = f"{PYTHON312} -m pip --quiet --disable-pip-version-check"
    runtime = CACHE / "py312-runtime"
    if not (runtime / "boto3").exists():
        # the runtime's boto3, byte-compiled (the Lambda runtime image ships compiled modules)
        _run([str(PYTHON312), "-m", "pip", "install", "--quiet", "--target", str(runtime), "boto3"])
    layer = CACHE / f"py312-layer-{_digest(ROOT / 'src' / 'tidings_core')}"
    if not (layer / "python" / "tidings_core").exists():
        shutil.rmtree(layer, ignore_errors=True)
        platform = "manylinux2014_x86_64" if os.uname().machine == "x86_64" else "manylinux2014_aarch64"
        _run(
            [
                "make",
                "-C",
                str(ROOT / "src" / "tidings_core"),
                "build-TidingsCoreLayer",
                f"ARTIFACTS_DIR={layer}",
                f"LAMBDA_PLATFORM={platform}",
                f"PIP={pip}",
                f"PYTHON={PYTHON312}",
            ]
        )
    return runtime, layer / "python"


# --- the services the first invocation reaches ---------------------------------------------------


class _Answer200(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _services() -> Iterator[tuple[str, str]]:
    """(DynamoDB endpoint with the tables, @connections base URL)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tidings_core import models

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    management = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer200)
    threading.Thread(target=management.serve_forever, daemon=True).start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        # one model per table: JobSlots' items live in the Jobs table (its first model makes it)
        per_table = {model.Meta.table_name: model for model in reversed(models.ALL_MODELS)}
        first_models = sorted(per_table.values(), key=models.ALL_MODELS.index)
        for model, name in zip(first_models, _TABLES.values(), strict=True):
            props = models.table_properties(model)
            props.pop("TimeToLiveSpecification", None)
            dynamodb.create_table(TableName=name, **props)
        _seed(dynamodb)
        yield endpoint, f"http://127.0.0.1:{management.server_address[1]}/bench"
    finally:
        management.shutdown()
        moto.stop()


_TABLES = {
    "CONNECTIONS_TABLE": "cold-connections",
    "SUBSCRIPTIONS_TABLE": "cold-subscriptions",
    "JOBS_TABLE": "cold-jobs",
    "FANOUT_TABLE": "cold-fanout",
}
_USER = "alice"
_JOB = "cold-job"
_TAB = "cold-tab"


def _seed(dynamodb: Any) -> None:
    """A job of alice's with one subscribed tab: notify's first call claims and posts once."""
    now = int(time.time() * 1000)
    ttl = str(now // 1000 + 86_400)
    dynamodb.put_item(
        TableName=_TABLES["JOBS_TABLE"],
        Item={
            "jobId": {"S": _JOB},
            "userId": {"S": _USER},
            "updatedAt": {"N": str(now)},
            "seq": {"N": "0"},
            "stage": {"S": "queued"},
            "percent": {"N": "0"},
            "progressSeq": {"N": "0"},
            "segmentPercents": {"M": {}},
        },
    )
    dynamodb.put_item(
        TableName=_TABLES["CONNECTIONS_TABLE"],
        Item={
            "connectionId": {"S": _TAB},
            "userId": {"S": _USER},
            "connectedAt": {"N": str(now)},
            "ttl": {"N": ttl},
        },
    )
    dynamodb.put_item(
        TableName=_TABLES["SUBSCRIPTIONS_TABLE"],
        Item={
            "topic": {"S": f"job:{_JOB}"},
            "connectionId": {"S": _TAB},
            "userId": {"S": _USER},
            "createdAt": {"N": str(now)},
            "ttl": {"N": ttl},
        },
    )


def event_for(function: str, sample: int) -> dict[str, Any]:
    """The event of the `sample`-th cold start of `function` (each notify a newer seq)."""
    now = int(time.time() * 1000)
    if function == "notify":
        return {
            "version": "0",
            "id": f"cold-event-{sample}",
            "detail-type": "JobProgress",
            "source": "tidings.transcode",
            "account": "123456789012",
            "time": "2026-01-01T00:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "version": 1,
                "jobId": _JOB,
                "userId": _USER,
                "seq": sample + 1,
                "stage": "transcoding",
                "percent": min(99, sample + 1),
                "emittedAt": now,
            },
        }
    connection_id = f"cold-conn-{sample}"
    context: dict[str, Any] = {
        "routeKey": f"${function}",
        "eventType": function.upper(),
        "stage": "bench",
        "connectedAt": now,
        "requestTimeEpoch": now,
        "requestId": f"cold-{sample}",
        "domainName": "127.0.0.1",
        "connectionId": connection_id,
        "apiId": "bench",
        "messageDirection": "IN",
        "identity": {"sourceIp": "127.0.0.1"},
        "authorizer": {"userId": _USER, "principalId": _USER},
    }
    if function == "disconnect":
        context.update(disconnectStatusCode=1000, disconnectReason="bye")
    return {
        "headers": {"Sec-WebSocket-Protocol": "tidings.v1"},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def _lambda_environment(
    function: str, runtime: Path, layer: Path, dynamodb: str, callback_url: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
    env.update(_TABLES)
    env.update(
        {
            # Lambda's order: task root, then the layers (/opt/python), then the runtime's packages
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src" / function), str(layer), str(runtime)]),
            "PYTHONDONTWRITEBYTECODE": "1",  # /var/task and /opt are read-only on Lambda
            "HOME": tempfile.gettempdir(),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_ENDPOINT_URL": dynamodb,
            "CALLBACK_URL": callback_url,
            "DELIVER_FUNCTION": "cold-deliver",
            "EVENT_BUS_NAME": "cold-bus",
            "TOKEN_AUDIENCE": "tidings",
            "POWERTOOLS_SERVICE_NAME": "tidings",
            "POWERTOOLS_METRICS_NAMESPACE": "Tidings",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "LAMBDA_TASK_ROOT": str(ROOT / "src" / function),  # tracing on, as on Lambda
            "_X_AMZN_TRACE_ID": "Root=1-6731f0aa-0f1e2d3c4b5a69788796a5b4;Parent=53995c3f42cd8ad8;Sampled=1",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",  # UDP: nobody listens, nothing waits
        }
    )
    return env


def first_invocation(function: str, sample: int, env: dict[str, str]) -> dict[str, float]:
    """One fresh process: import plus first call of `function`'s handler (ms, wall and CPU)."""
    completed = subprocess.run(
        [str(PYTHON312), "-c", PROBE, json.dumps(event_for(function, sample))],
        cwd=ROOT / "src" / function,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = completed.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"cold start of {function} failed: {tail[0]}")
    probe: dict[str, Any] = json.loads(lines[-1])
    result = probe.pop("result")
    if (
        not isinstance(result, dict)
        or result.get("statusCode", 200) != 200
        or result.get("delivered", 1) != 1
    ):
        raise RuntimeError(f"cold start of {function}: unexpected result {result}")
    return {k: float(v) for k, v in probe.items()}


def cold_starts(repeats: int) -> dict[str, Any]:
    runtime, layer = deployment()
    results: dict[str, Any] = {}
    with _services() as (dynamodb, callback_url):
        envs = {f: _lambda_environment(f, runtime, layer, dynamodb, callback_url) for f in GOAL_FUNCTIONS}
        samples: dict[str, list[dict[str, float]]] = {f: [] for f in GOAL_FUNCTIONS}
        for sample in range(repeats):  # interleaved: a burst of load hits every function alike
            for function in GOAL_FUNCTIONS:
                samples[function].append(first_invocation(function, sample, envs[function]))
    for function, runs in samples.items():
        total = median([r["total_ms"] for r in runs])
        results[function] = {
            "total_ms": round(total, 1),
            "import_ms": round(median([r["import_ms"] for r in runs]), 1),
            "invoke_ms": round(median([r["invoke_ms"] for r in runs]), 1),
            "cpu_ms": round(median([r["cpu_ms"] for r in runs]), 1),
            "samples_ms": [round(r["total_ms"], 1) for r in runs],
            "goal_ms": GOAL_MS,
            "meets_goal": total < GOAL_MS,
        }
    return results


def run(repeats: int) -> dict[str, Any]:
    functions = cold_starts(repeats)
    return {
        "python": "3.12 (" + str(PYTHON312) + ")",
        "repeats": repeats,
        "note": (
            "fresh processes, import plus first call, wall ms (cpu_ms: the process's CPU time);"
            " the runtime's boto3 byte-compiled, the layer as its Makefile builds it, tracing on;"
            " Lambda runs 3.12 on arm64"
        ),
        "functions": functions,
    }
