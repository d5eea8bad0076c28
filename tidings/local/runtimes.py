"""The Python a function runs on, and the packages it may import, as its `Runtime` declares.

On Lambda a Python function sees its own code folder (`/var/task`, where `sam build` installs
its `requirements.txt`), its layers (`/opt/python`) and the runtime's own packages (boto3,
botocore and their dependencies) — nothing else. Locally each function gets:

- the interpreter its `Runtime` names (`python3.12` → pyenv's 3.12.x or `python3.12` on PATH),
  else the nearest version found, with a one-line warning at start;
- one folder of packages, built once per (interpreter version, requirement set) with
  `pip install --target` into a cache outside any virtualenv
  (`$TIDINGS_CACHE_DIR` or `$XDG_CACHE_HOME/tidings` or `~/.cache/tidings`): the function's
  `requirements.txt`, its layers' `requirements.txt` and the runtime's boto3/botocore pin;
- a warning when a package has no wheel for the function's declared architecture (arm64 on an
  x86_64 machine, say), checked once with `pip download --platform ... --only-binary=:all:`.

Pure decisions (`parse_runtime`, `choose_interpreter`, `requirement_set`, `environment_key`)
take values; `RuntimeSetup` is the thin shell that looks at the machine and runs pip.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tidings.local.model import Function

Version = tuple[int, int]

# The SDK the Python runtimes carry. AWS documents that "the version of the AWS SDK included in
# the Python runtime depends on the runtime version and your AWS Region" and shows how to print it
# from a function (https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html#python-sdk-included);
# the page no longer lists one number. This is the one place the local pin lives. It must be at
# least what the handlers call: presigned PutObject with IfNoneMatch needs botocore 1.35 or later
# (an older pin fails the uploads function with "Unknown parameter in input: IfNoneMatch").
# Update it from that snippet's output on the deployed functions; a function that ships its own
# boto3 in its requirements gets its own (as on AWS).
RUNTIME_SDK: Mapping[str, tuple[str, ...]] = {
    # the last boto3 that installs on Python 3.8 (1.38 requires 3.9): the 1.40 pin cannot
    "python3.8": ("boto3==1.37.38", "botocore==1.37.38"),
    "python3.12": ("boto3==1.40.0", "botocore==1.40.0"),
    "python3.13": ("boto3==1.40.0", "botocore==1.40.0"),
}
DEFAULT_SDK = RUNTIME_SDK["python3.12"]
SDK_PACKAGES = ("boto3", "botocore")
# Lambda's architectures as pip platform tags (manylinux2014 = glibc 2.17; AL2023 is newer)
PIP_PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
_MACHINE_ARCH = {"aarch64": "arm64", "arm64": "arm64", "x86_64": "x86_64", "amd64": "x86_64"}
_RUNTIME = re.compile(r"python(\d+)\.(\d+)")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
Progress = Callable[[str], None]
# Lambda runtimes past their deprecation date (Lambda's "Deprecated runtimes" table,
# https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html#runtimes-deprecated): after
# it, Lambda first blocks creating functions on the runtime, then updating them, so a template
# that runs here may not deploy. Dates: python3.8 from AWS's deprecation notice (14 October 2024);
# python3.9 and nodejs18.x as that table lists them (15 December 2025, 1 September 2025).
DEPRECATED_RUNTIMES: Mapping[str, str] = {
    "python3.8": "2024-10-14",
    "python3.9": "2025-12-15",
    "nodejs18.x": "2025-09-01",
}
# pip's lines worth a user's reading when it fails, and how much of each (one line in all)
_PIP_ERROR = re.compile(r"^ERROR: (?!Ignored the following)")
_PIP_ERROR_CHARS = 240


class RuntimeSetupError(OSError):
    """No interpreter, or packages that could not be installed; the message says which and why.
    An OSError: the machine, not the template, is missing something (`tidings dev` prints one line)."""


# ---------------------------------------------------------------------------- pure decisions
def runtime_family(runtime: str) -> str:
    """`python` or `nodejs` (the worker that runs it), else the runtime name itself."""
    return next((family for family in ("python", "nodejs") if runtime.startswith(family)), runtime)


def deprecation_warnings(runtimes: Mapping[str, str]) -> list[str]:
    """One line per deprecated runtime the template uses, naming its functions (function id ->
    runtime), in the order the runtimes first appear."""
    users: dict[str, list[str]] = {}
    for function_id, runtime in runtimes.items():
        if runtime in DEPRECATED_RUNTIMES:
            users.setdefault(runtime, []).append(function_id)
    return [
        f"warning: {runtime} ({', '.join(functions)}) is a deprecated Lambda runtime since "
        f"{DEPRECATED_RUNTIMES[runtime]}: Lambda blocks creating, then updating, functions on it, "
        f"so this template may not deploy; move to a supported runtime"
        for runtime, functions in users.items()
    ]


def pip_failure(lines: Sequence[str]) -> str:
    """What went wrong, in one readable line, from pip's output: its ERROR lines (the list of
    versions it ignored left out, each clipped), else its last lines."""
    errors = [line.strip() for line in lines if _PIP_ERROR.match(line.strip())]
    chosen = errors or [line.strip() for line in lines[-3:] if line.strip()]
    return " | ".join(
        line if len(line) <= _PIP_ERROR_CHARS else line[: _PIP_ERROR_CHARS - 1] + "…" for line in chosen
    )


def parse_runtime(runtime: str) -> Version:
    match = _RUNTIME.fullmatch(runtime)
    if match is None:
        raise ValueError(f"{runtime!r} is not a Python runtime (pythonX.Y)")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class Interpreter:
    version: Version
    path: Path
    full_version: str = ""  # 3.12.1, for messages


@dataclass(frozen=True)
class Choice:
    interpreter: Interpreter
    warning: str | None  # one line when the declared version is not on this machine


def choose_interpreter(runtime: str, available: Sequence[Interpreter]) -> Choice:
    """The interpreter for `runtime`: the same X.Y, else the nearest minor (newer on a tie)."""
    wanted = parse_runtime(runtime)
    for interpreter in available:
        if interpreter.version == wanted:
            return Choice(interpreter, None)
    candidates = [i for i in available if i.version[0] == wanted[0]] or list(available)
    if not candidates:
        raise RuntimeSetupError(f"{runtime}: no Python interpreter found (pyenv or python3.X on PATH)")
    nearest = min(candidates, key=lambda i: (abs(i.version[1] - wanted[1]), -i.version[1]))
    shown = nearest.full_version or "{}.{}".format(*nearest.version)
    return Choice(
        nearest,
        f"warning: {runtime} is not on this machine (pyenv or python{wanted[0]}.{wanted[1]} on PATH); "
        f"its functions run on Python {shown} instead",
    )


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements.txt (comments and blanks dropped)."""
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def requirement_name(line: str) -> str:
    match = _REQUIREMENT_NAME.match(line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else line


def requirement_set(own: Iterable[str], layers: Iterable[str], runtime: str) -> tuple[str, ...]:
    """What one pip run installs for a function: its and its layers' requirements, and the
    runtime's boto3/botocore unless the function ships its own (then its own wins, as on AWS)."""
    lines = list(dict.fromkeys([*own, *layers]))
    named = {requirement_name(line) for line in lines}
    sdk = () if named & set(SDK_PACKAGES) else RUNTIME_SDK.get(runtime, DEFAULT_SDK)
    return tuple(sorted(set(lines) | set(sdk)))


def environment_key(requirements: Sequence[str], version: Version) -> str:
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    return f"py{version[0]}.{version[1]}-{digest}"


def missing_wheel(pip_output: str) -> str | None:
    """The package pip found no wheel for, from `pip download --only-binary` output."""
    match = re.search(r"No matching distribution found for ([^\s]+)", pip_output)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------- the machine
def default_cache_dir() -> Path:
    configured = os.environ.get("TIDINGS_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tidings"


def machine_architecture() -> str:
    return _MACHINE_ARCH.get(platform.machine().lower(), platform.machine().lower())


def _probe(path: Path) -> Interpreter | None:
    try:
        output = subprocess.run(
            [str(path), "-I", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    parts = output.split(".")
    if len(parts) != 3:
        return None
    return Interpreter((int(parts[0]), int(parts[1])), path, output)


def find_interpreters(pyenv_root: Path | None = None, search_path: str | None = None) -> list[Interpreter]:
    """Python 3 interpreters on this machine: pyenv's versions first, then `python3.X` on PATH."""
    root = pyenv_root or Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found: dict[Version, Interpreter] = {}
    versions = sorted((root / "versions").glob("3.*"), reverse=True) if (root / "versions").is_dir() else []
    for folder in versions:
        match = re.fullmatch(r"3\.(\d+)\.(\d+)", folder.name)
        binary = folder / "bin" / f"python3.{match.group(1)}" if match else None
        if match and binary and binary.exists() and (3, int(match.group(1))) not in found:
            found[(3, int(match.group(1)))] = Interpreter((3, int(match.group(1))), binary, folder.name)
    for minor in range(8, 20):
        if (3, minor) in found:
            continue
        located = shutil.which(f"python3.{minor}", path=search_path)
        if located:
            probed = _probe(Path(located))  # a pyenv shim may name a version it cannot run
            if probed is not None and probed.version == (3, minor):
                found[(3, minor)] = probed
    return sorted(found.values(), key=lambda i: i.version)


@dataclass(frozen=True)
class FunctionRuntime:
    """What a function's worker is started with."""

    interpreter: Interpreter
    packages: Path  # the one folder of installed packages (on sys.path after code and layers)


def _layer_requirement_files(layer_dir: Path) -> list[Path]:
    # a layer folder `X/python` comes from ContentUri X: its requirements.txt sits in X
    candidates = [layer_dir / "requirements.txt"]
    if layer_dir.name == "python":
        candidates.append(layer_dir.parent / "requirements.txt")
    return [path for path in candidates if path.is_file()]


@dataclass
class RuntimeSetup:
    """Finds interpreters and builds (once, cached) each function's package folder."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    interpreters: Sequence[Interpreter] | None = None  # None: look at this machine
    progress: Progress = field(default=lambda line: print(line, flush=True))
    check_architecture: bool = True
    _environments: dict[str, asyncio.Task[Path]] = field(default_factory=dict, init=False)
    _warned: set[str] = field(default_factory=set, init=False)
    _checked: set[str] = field(default_factory=set, init=False)

    def available(self) -> Sequence[Interpreter]:
        if self.interpreters is None:
            self.interpreters = find_interpreters()
        return self.interpreters

    def choose(self, runtime: str) -> Interpreter:
        choice = choose_interpreter(runtime, self.available())
        if choice.warning and runtime not in self._warned:
            self._warned.add(runtime)
            self.progress(choice.warning)
        return choice.interpreter

    def requirements_of(self, function: Function) -> tuple[str, ...]:
        own_file = function.code_dir / "requirements.txt"
        own = requirement_lines(own_file.read_text()) if own_file.is_file() else []
        layers: list[str] = []
        for layer_dir in function.layer_dirs:
            for path in _layer_requirement_files(layer_dir):
                layers.extend(requirement_lines(path.read_text()))
        return requirement_set(own, layers, function.runtime)

    async def prepare(self, functions: Iterable[Function]) -> dict[str, FunctionRuntime]:
        """Each function's interpreter and package folder; installs what the cache lacks."""
        prepared: dict[str, FunctionRuntime] = {}
        for function in functions:
            if runtime_family(function.runtime) != "python":
                continue
            prepared[function.logical_id] = await self.for_function(function)
        return prepared

    async def for_function(self, function: Function) -> FunctionRuntime:
        interpreter = self.choose(function.runtime)
        requirements = self.requirements_of(function)
        key = environment_key(requirements, interpreter.version)
        task = self._environments.get(key)
        if task is None:
            task = asyncio.ensure_future(
                asyncio.to_thread(self._ensure, key, interpreter, requirements, function)
            )
            self._environments[key] = task
        packages = await asyncio.shield(task)
        if self.check_architecture:
            for architecture in function.architectures:
                if f"{key}.{architecture}" not in self._checked:
                    self._checked.add(f"{key}.{architecture}")
                    await asyncio.to_thread(
                        self._check_wheels, key, interpreter, requirements, architecture, function
                    )
        return FunctionRuntime(interpreter, packages)

    # ---------------------------------------------------------------- installing
    def _ensure(
        self, key: str, interpreter: Interpreter, requirements: tuple[str, ...], function: Function
    ) -> Path:
        target = self.cache_dir / "python-packages" / key
        if (target / ".complete").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(target.parent / f"{key}.lock"):
            if (target / ".complete").exists():  # another process built it while we waited
                return target
            self._install(target, interpreter, requirements, function)
        return target

    def _install(
        self, target: Path, interpreter: Interpreter, requirements: tuple[str, ...], function: Function
    ) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        listing = staging / "requirements.txt"
        listing.write_text("\n".join(requirements) + "\n")
        shown = ", ".join(requirements)
        self.progress(
            f"Installing packages for {function.runtime} (as `sam build` would; once, "
            f"cached in {target}): {shown}"
        )
        started = time.monotonic()
        command = [
            *self._pip(interpreter),
            "install",
            "--target",
            str(staging / "site"),
            "--no-input",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            "-r",
            str(listing),
        ]
        output = self._run_pip(command)
        if output is not None:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeSetupError(
                f"pip could not install the packages of {function.logical_id} ({shown}): {output}"
            )
        (staging / "site" / ".complete").write_text(json.dumps({"requirements": list(requirements)}))
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(target)
        (staging / "site").rename(target)
        shutil.rmtree(staging, ignore_errors=True)
        self.progress(f"Installed in {time.monotonic() - started:.1f} s")

    def _pip(self, interpreter: Interpreter) -> list[str]:
        """The target interpreter's own pip (wheels for its version); else this one's, told the version."""
        probe = subprocess.run(
            [str(interpreter.path), "-I", "-m", "pip", "--version"], capture_output=True, timeout=60
        )
        if probe.returncode == 0:
            return [str(interpreter.path), "-I", "-m", "pip"]
        return [sys.executable, "-m", "pip", "--python", str(interpreter.path)]

    def _run_pip(self, command: list[str]) -> str | None:
        """Runs pip, relaying its progress lines; None on success, else what went wrong (one line)."""
        tail: list[str] = []
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_pip_environment()
        )
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip()
            tail = [*tail[-19:], line]
            if line.startswith(("Collecting", "Installing collected", "Successfully installed")):
                self.progress(f"  pip: {re.sub(r' [(]from .*[)]$', '', line.strip())}")
        if process.wait() != 0:
            return pip_failure(tail)
        return None

    def _check_wheels(
        self,
        key: str,
        interpreter: Interpreter,
        requirements: tuple[str, ...],
        architecture: str,
        function: Function,
    ) -> None:
        """Warns once when a package has no wheel for the declared architecture (cached verdict)."""
        if architecture == machine_architecture() or architecture not in PIP_PLATFORMS:
            return  # the install itself used this architecture's wheels
        verdict_file = self.cache_dir / "python-packages" / f"{key}.{architecture}.json"
        if verdict_file.exists():
            verdict = json.loads(verdict_file.read_text())
        else:
            with tempfile.TemporaryDirectory(prefix="tidings-wheels-") as scratch:
                listing = Path(scratch) / "requirements.txt"
                listing.write_text("\n".join(requirements) + "\n")
                self.progress(f"Checking for {architecture} wheels of: {', '.join(requirements)}")
                result = subprocess.run(
                    [
                        *self._pip(interpreter),
                        "download",
                        "--only-binary=:all:",
                        "--platform",
                        PIP_PLATFORMS[architecture],
                        "--implementation",
                        "cp",
                        "--python-version",
                        "{}.{}".format(*interpreter.version),
                        "--no-input",
                        "--progress-bar",
                        "off",
                        "-d",
                        str(Path(scratch) / "wheels"),
                        "-r",
                        str(listing),
                    ],
                    capture_output=True,
                    text=True,
                    env=_pip_environment(),
                )
            output = result.stdout + result.stderr
            verdict = {"ok": result.returncode == 0, "missing": missing_wheel(output)}
            if result.returncode == 0 or verdict["missing"]:  # a network failure is no verdict
                verdict_file.write_text(json.dumps(verdict))
        warning_key = f"{key}.{architecture}"
        if not verdict["ok"] and warning_key not in self._warned:
            self._warned.add(warning_key)
            missing = verdict.get("missing") or "a package"
            self.progress(
                f"warning: {function.logical_id} declares {architecture}, but {missing} has no "
                f"{architecture} wheel: `sam build` would fail or ship a package that cannot load"
            )


def _pip_environment() -> dict[str, str]:
    environment = dict(os.environ)
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_TARGET", "PIP_PREFIX", "PIP_USER"):
        environment.pop(name, None)
    return environment


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (two stacks or test runs starting together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
