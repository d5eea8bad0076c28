"""Cold start: `python -X importtime` of each function's handler module, in fresh processes.

Each run imports the handler the way the Lambda runtime does (its folder and the layer on
sys.path, the function's environment), and the module's cumulative import time is read from
the `-X importtime` report on stderr.
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
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_LAMBDA_FUNCTION_NAME": function,
        }
    )
    return env


def import_ms(function: str, python: str = sys.executable) -> float:
    """One fresh process: milliseconds to import `src/<function>/app.py` (with its imports)."""
    completed = subprocess.run(
        [python, "-X", "importtime", "-c", "import app"],
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
        samples = [import_ms(function) for _ in range(repeats)]
        value = median(samples)
        results[function] = {
            "import_ms": round(value, 1),
            "samples_ms": [round(s, 1) for s in samples],
            "goal_ms": GOAL_MS if function in GOAL_FUNCTIONS else None,
            "meets_goal": value < GOAL_MS if function in GOAL_FUNCTIONS else None,
        }
    return {
        "python": sys.version.split()[0],
        "repeats": repeats,
        "note": "Python on this machine, .pyc caches warm; Lambda runs 3.12 on arm64",
        "handlers": results,
    }
