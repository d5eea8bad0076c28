"""Cold start: `python -X importtime` of each function's handler module, in fresh processes.

Each run imports the handler the way the Lambda runtime does with `Tracing: Active` (its folder
and the layer on sys.path, a task root, tracing on), and the module's cumulative import time is
read from the `-X importtime` report on stderr. Side by side, in alternating processes, the same
import with Powertools' tracing module replaced by a no-op stub gives the Tracer's share: the
X-Ray SDK's import and the patching each handler asks for.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.stats import median

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = ("connect", "disconnect", "notify", "subscribe", "authorize")
GOAL_MS = 300.0
GOAL_FUNCTIONS = ("connect", "disconnect", "notify")

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


def _environment(function: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "TMPDIR")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src" / function), str(ROOT / "src")]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_SERVICE_NAME": "tidings",
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "LAMBDA_TASK_ROOT": str(ROOT / "src" / function),  # tracing on, as on Lambda
        }
    )
    return env


# Imported before the handler when measuring without the Tracer: a Tracer that does nothing.
_WITHOUT_TRACER = """
import sys, types
class Tracer:
    def __init__(self, *args, **kwargs): pass
    def capture_lambda_handler(self, handler=None, **kwargs):
        return handler if handler is not None else (lambda later: later)
stub = types.ModuleType("aws_lambda_powertools.tracing")
stub.Tracer = Tracer
sys.modules["aws_lambda_powertools.tracing"] = stub
import app
"""


def import_ms(function: str, python: str = sys.executable, *, tracer: bool = True) -> float:
    """One fresh process: milliseconds to import `src/<function>/app.py` (with its imports)."""
    completed = subprocess.run(
        [python, "-X", "importtime", "-c", "import app" if tracer else _WITHOUT_TRACER],
        cwd=ROOT / "src" / function,
        env=_environment(function),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"importing {function}/app.py failed: {tail[0]}")
    return cumulative_import_us(completed.stderr, "app") / 1000


def run(repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for function in HANDLERS:
        pairs = [(import_ms(function), import_ms(function, tracer=False)) for _ in range(repeats)]
        samples = [deployed for deployed, _ in pairs]
        value = median(samples)
        results[function] = {
            "import_ms": round(value, 1),
            "samples_ms": [round(s, 1) for s in samples],
            "without_tracer_ms": round(median([bare for _, bare in pairs]), 1),
            "tracer_ms": round(median([deployed - bare for deployed, bare in pairs]), 1),
            "goal_ms": GOAL_MS if function in GOAL_FUNCTIONS else None,
            "meets_goal": value < GOAL_MS if function in GOAL_FUNCTIONS else None,
        }
    return {
        "python": sys.version.split()[0],
        "repeats": repeats,
        "note": "Python on this machine, .pyc caches warm, tracing on; Lambda runs 3.12 on arm64",
        "handlers": results,
    }
