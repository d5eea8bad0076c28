"""Shared test helpers (import them with `from testkit import ...`: tests/ is on sys.path).

CI sets CI=true: a test that needs Chromium, wscat or ffmpeg must fail there when the tool
is missing, never skip. On a developer's machine it skips with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_tool(name: str, path: str | None) -> str:
    """Return the tool's path; fail under CI and skip elsewhere when it is missing."""
    if path and (os.path.sep not in path or Path(path).exists()):
        found = shutil.which(path) if os.path.sep not in path else path
        if found:
            return found
    message = f"{name} is not installed (run `make setup`)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def load_handler(function_dir: str, module: str = "app") -> ModuleType:
    """Import `src/<function_dir>/<module>.py` under a unique name (every handler is `app`)."""
    path = SRC / function_dir / f"{module}.py"
    name = f"tidings_handler_{function_dir}_{module}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
