"""Package sizes as `sam build` produces them (its own venv, .venv-sam), unzipped and zipped.

When sam cannot run here, the layer is assembled the way its Makefile does it (pip with the
Lambda platform's wheels, then the package) and the report says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAM = ROOT / ".venv-sam" / "bin" / "sam"
BUILD_DIR = Path(tempfile.gettempdir()) / "tidings-bench-sam-build"
GOAL_BYTES = 5 * 1024 * 1024
FFMPEG_LAYER = "FfmpegLayer"
LAYER_PLATFORM = ("--platform", "manylinux2014_aarch64", "--only-binary=:all:", "--python-version", "3.12")


def tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def zipped_bytes(folder: Path) -> int:
    """Size of the deployment zip (deflate), which is what Lambda's 50 MB upload limit counts."""
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "package.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    bundle.write(path, path.relative_to(folder))
        return archive.stat().st_size


def python312_bin() -> str | None:
    try:
        prefix = subprocess.run(
            ["pyenv", "prefix", "3.12.1"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return str(Path(prefix) / "bin")


def sam_build() -> Path:
    python_bin = python312_bin()
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    if python_bin:
        env["PATH"] = f"{python_bin}{os.pathsep}{env['PATH']}"
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    completed = subprocess.run(
        [str(SAM), "build", "--build-dir", str(BUILD_DIR)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError("sam build failed: " + " | ".join(completed.stderr.strip().splitlines()[-3:]))
    return BUILD_DIR


def pip_layer() -> Path:
    """The TidingsCoreLayer content without sam: the Makefile's pip command, then the package."""
    target = BUILD_DIR / "TidingsCoreLayer" / "python"
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    requirements = ROOT / "src" / "tidings_core" / "requirements.txt"
    command = [sys.executable, "-m", "pip", "install", "--quiet", *LAYER_PLATFORM, "-t", str(target)]
    subprocess.run([*command, "-r", str(requirements)], check=True, timeout=900)
    shutil.copytree(
        ROOT / "src" / "tidings_core", target / "tidings_core", ignore=shutil.ignore_patterns("Makefile")
    )
    return BUILD_DIR


def measure(build_dir: Path, method: str) -> dict[str, Any]:
    packages: dict[str, Any] = {}
    for folder in sorted(p for p in build_dir.iterdir() if p.is_dir()):
        unzipped, zipped = tree_bytes(folder), zipped_bytes(folder)
        goal = None if folder.name == FFMPEG_LAYER else zipped < GOAL_BYTES
        packages[folder.name] = {"unzipped_bytes": unzipped, "zipped_bytes": zipped, "under_5mb": goal}
    return {"method": method, "goal_bytes": GOAL_BYTES, "packages": packages}


def run() -> dict[str, Any]:
    if SAM.exists():
        return measure(sam_build(), "sam build (.venv-sam, python3.12, arm64 wheels)")
    return measure(pip_layer(), "pip --platform manylinux2014_aarch64 (sam build not available)")
