"""`pip install .` in a fresh venv gives a working client without moto (or any `local` extra).

Needs PyPI for websockets, PyJWT and boto3 (and setuptools to build): the only network it uses.
The sources are copied first, so the build leaves nothing in the worktree.
"""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

from tidings.cli import LOCAL_EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[3]


def test_a_fresh_venv_with_pip_install_dot_runs_the_client_without_the_local_stack(tmp_path: Path) -> None:
    source = tmp_path / "src-copy"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "tidings", source / "tidings", ignore=ignore)
    shutil.copytree(ROOT / "src" / "tidings_core", source / "src" / "tidings_core", ignore=ignore)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        check=True,
        timeout=600,
    )
    installed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True,
    ).stdout.lower()  # fmt: skip
    for heavy in ("moto", "aws-sam-translator", "aiohttp", "watchfiles", "pynamodb", "pydantic", "av"):
        assert f"\n{heavy}==" not in f"\n{installed}", installed
    probe = (
        "import importlib.util, sys\n"
        "from tidings import jobs, watch_view\n"
        "from tidings_core.tokens import issue_token\n"
        "print(importlib.util.find_spec('moto') is None)\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
        "token = issue_token('k' * 32, 'alice', 60)\n"
        "print(token.count('.'))\n"
        "state = watch_view.fold(watch_view.WatchState('j'), {'type': 'progress', 'jobId': 'j', 'seq': 1,"
        " 'stage': 'queued'}).state\n"
        "print(state.job.stage)\n"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    no_moto, modules, dots, stage = done.stdout.splitlines()
    assert no_moto == "True"
    assert set(modules.split()) & LOCAL_EXTRA_MODULES == set()
    assert (dots, stage) == ("2", "queued")
    version = subprocess.run([env_dir / "bin" / "tidings", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("tidings ")
    # the local stack's commands say what to install instead of a traceback
    dev = subprocess.run([env_dir / "bin" / "tidings", "dev"], capture_output=True, text=True, cwd=tmp_path)
    assert dev.returncode == 2
    assert "pip install 'tidings[local]'" in dev.stderr and "Traceback" not in dev.stderr
    # the Node.js worker bootstrap ships as package data beside worker.py
    shipped = subprocess.run(
        [python, "-c", "import importlib.resources as r; print(sorted(p.name for p in "
         "r.files('tidings.local').iterdir() if p.name.endswith('.mjs')))"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert shipped == "['node_worker.mjs', 'node_worker_hooks.mjs']"
