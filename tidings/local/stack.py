"""`tidings dev`: the whole local stack for a SAM template, wired together.

Order matters: ports first (the template's execute-api URLs resolve to them), then the
embedded AWS services (queue URLs contain their endpoint), then the app, its resources, the
function runner, event delivery, the WebSocket gateway, the add-ons (addons.py: the console,
fault injection, an app's own tools, passed in as objects) and the HTTP server.
`LocalStack(options, add_ons=...).start()` returns a `RunningStack` whose parts all exist.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from tidings.local import samconfig
from tidings.local.addons import (
    AddOn,
    DeniedListener,
    GatewayListener,
    InvocationListener,
    ReadyTask,
    StopHook,
)
from tidings.local.aws import LAMBDA_INVOKE, STEP_FUNCTIONS_API, AwsServices, InterceptMatch, Interceptor
from tidings.local.aws_guard import (
    AppCredentials,
    Credentials,
    Denial,
    ManagementGuard,
    PendingDenials,
    issue_app_credentials,
    may_invoke,
)
from tidings.local.bus import EventDelivery
from tidings.local.embedded_values import EmbeddedValues
from tidings.local.functions import FunctionRunner, prewarm_targets
from tidings.local.gateway import Gateway, PostWrapper
from tidings.local.hosts import LOOPBACK_NAMES, HostPolicy, browser_host, is_loopback, is_wildcard
from tidings.local.http import build_http_app
from tidings.local.iam import UnsupportedPolicy
from tidings.local.integration_calls import EmbeddedServiceBackend, MachineTasks
from tidings.local.invocation_line import outcome as invocation_outcome
from tidings.local.invocation_line import text_line
from tidings.local.lambda_invoke import LambdaInvoke
from tidings.local.management_endpoints import ManagementHosts, ManagementListener, WorkerTrust
from tidings.local.model import Caller, Invocation, LocalApp
from tidings.local.runtimes import RuntimeSetup, deprecation_warnings
from tidings.local.stepfunctions import StepFunctions
from tidings.local.stepfunctions_api import StepFunctionsApi
from tidings.local.template import LocalEndpoints, TemplateError, load_app, parse_template
from tidings.state import (
    LocalStackState,
    StackAlreadyRunning,
    StateLock,
    remove_state,
    state_path,
    write_state,
)

# Metadata: {Tidings: {LocalSite: web/}} on a bucket serves that folder at /
LOCAL_SITE_METADATA = "Tidings"
# Whatever --host exposes, these answer only to this machine: the stack's own prefix, and every
# add-on's routes (addons.StackHost.add_routes)
LOCAL_ONLY_PATHS = ("/_tidings",)
# The AWS endpoint never follows --host: it holds every secret and table of the stack
AWS_HOST = "127.0.0.1"
# State-file fields an add-on may fill (the rest are the stack's own)
STATE_FIELDS_FOR_ADD_ONS = frozenset(item.name for item in dataclasses.fields(LocalStackState)) - {
    "websocket_url",
    "callback_url",
    "aws_endpoint",
    "http_url",
    "progress_view_url",
    "jobs_api_url",
    "region",
    "stage",
    "aws_access_key_id",
    "aws_secret_access_key",
    "pid",
    "started_at",
}


@dataclass
class DevOptions:
    template: Path = Path("template.yaml")
    host: str = "127.0.0.1"
    ws_port: int = 3001
    http_port: int = 3000
    aws_port: int = 4566
    demo: bool = True
    log_format: str = "text"  # text | json
    drop_disconnect: bool = False
    idle_timeout_s: float = 600.0
    max_lifetime_s: float = 7200.0
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    state_file: Path | None = None
    api: str | None = None  # logical id of the WebSocket API when the template has several
    iam: bool = True  # check each function's calls against its execution role (--no-iam: off)
    env_vars: dict[str, dict[str, str]] = field(default_factory=dict)  # SAM's --env-vars JSON
    # once ready (and after a template reload) initialize a worker of each function a route or a
    # rule invokes, as Lambda's proactive initialization does (--no-prewarm: first invocations cold)
    prewarm: bool = True


@dataclass(frozen=True)
class StackUrls:
    websocket_url: str | None  # None: the template has no WebSocket API, so none is advertised
    callback_url: str | None
    aws_endpoint: str
    http_url: str
    progress_view_url: str | None
    jobs_api_url: str | None
    links: tuple[tuple[str, str], ...] = ()  # (label, URL) the add-ons advertise, e.g. the console

    def lines(self) -> list[str]:
        lines = []
        if self.websocket_url and self.callback_url:
            lines += [f"WebSocket URL: {self.websocket_url}", f"Callback URL: {self.callback_url}"]
        lines.append(f"AWS endpoint: {self.aws_endpoint}")
        if self.progress_view_url:
            lines.append(f"Progress view: {self.progress_view_url}")
        lines.extend(f"{label}: {url}" for label, url in self.links)
        return lines


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def local_site_dirs(template_path: Path) -> list[Path]:
    """Folders the template asks the local stack to serve at `/` (bucket Metadata `Tidings.LocalSite`)."""
    raw = parse_template(template_path)
    sites = []
    for resource in raw.get("Resources", {}).values():
        metadata = (resource.get("Metadata") or {}).get(LOCAL_SITE_METADATA) or {}
        site = metadata.get("LocalSite") if isinstance(metadata, dict) else None
        if isinstance(site, str):
            path = (template_path.parent / site).resolve()
            if path.is_dir():
                sites.append(path)
    return sites


def local_parameters(template_path: Path, site_origins: list[str]) -> dict[str, str]:
    """Parameter values the template asks the local stack to supply (top-level Metadata
    `Tidings.LocalParameters`); `{LocalSiteOrigins}` stands for the origins the site is served from."""
    metadata = (parse_template(template_path).get("Metadata") or {}).get(LOCAL_SITE_METADATA) or {}
    wanted = metadata.get("LocalParameters") if isinstance(metadata, dict) else None
    if not isinstance(wanted, dict):
        return {}
    origins = ",".join(site_origins)
    return {str(k): str(v).replace("{LocalSiteOrigins}", origins) for k, v in wanted.items()}


def site_origins(host: str, port: int) -> list[str]:
    """The origins a browser uses for the HTTP port (127.0.0.1 and localhost name the same one)."""
    hosts = [host] + [alias for alias in ("127.0.0.1", "localhost") if host in ("127.0.0.1", "localhost")]
    return [f"http://{name}:{port}" for name in dict.fromkeys(hosts)]


class InvocationLog:
    """One line per invocation on the terminal (or JSON lines), the traceback on errors."""

    def __init__(
        self,
        app: LocalApp,
        log_format: str = "text",
        out: TextIO = sys.stdout,
        denials: DenialLog | None = None,
    ) -> None:
        self.app = app
        self.log_format = log_format
        self.out = out
        self.denials = denials

    def __call__(self, invocation: Invocation, function_id: str, source: str, event: dict[str, Any]) -> None:
        started = time.strftime("%H:%M:%S", time.localtime())
        denied = [denial.line() for denial in self.denials.take(function_id)] if self.denials else []
        if self.log_format == "json":
            result = invocation_outcome(invocation)
            record = {
                "time": time.time(),
                "function": function_id,
                "source": source,
                "durationMs": round(invocation.duration_ms, 1),
                "cold": invocation.cold,
                "ok": not result.failed,
                "statusCode": result.status_code,
                "requestId": invocation.request_id,
                "errorType": invocation.error_type,
                "errorMessage": invocation.error_message,
                "traceback": invocation.traceback,
                "output": invocation.logs,
                "denied": denied,
            }
            self.out.write(json.dumps(record) + "\n")
        else:
            self.out.write(text_line(invocation, function_id, source, started, denied=denied) + "\n")
            if not invocation.ok and invocation.traceback:
                for line in invocation.traceback.rstrip().splitlines():
                    self.out.write(f"    {line}\n")
        self.out.flush()


class DenialLog:
    """Calls the AWS endpoint refused, by function, until its invocation line takes them; and to
    each listener (the console keeps its own `PendingDenials`)."""

    def __init__(self, limit: int = 20) -> None:
        self._pending = PendingDenials(limit)
        self.listeners: list[Callable[[Denial], Any]] = []

    def __call__(self, denial: Denial) -> None:
        self._pending.add(denial)
        for listener in list(self.listeners):
            try:
                listener(denial)
            except Exception:
                traceback.print_exc()

    def take(self, function_id: str) -> list[Denial]:
        return self._pending.take(function_id)


class NoWebSocketApi:
    """The gateway of a template without a WebSocket API: no connections, nothing to post to."""

    present = False
    stage: str | None = None

    def connections(self) -> list[dict[str, Any]]:
        return []

    def delete(self, connection_id: str) -> int:
        return 410

    def wrap_post(self, wrapper: PostWrapper) -> None:
        """Nothing is ever posted: the wrapper would never run."""


class _Fanout:
    """Calls every listener; one broken listener must not hide the event from the others."""

    def __init__(self) -> None:
        self.listeners: list[Callable[..., Any]] = []

    def __call__(self, *args: Any) -> None:
        for listener in list(self.listeners):
            try:
                listener(*args)
            except Exception:
                traceback.print_exc()


@dataclass(frozen=True)
class _Routes:
    prefix: str
    routes: tuple[web.RouteDef, ...]
    purpose: str


class _AddOnHost:
    """`StackHost` for the add-ons of one run: every part exists before an add-on sees it."""

    def __init__(
        self,
        *,
        app: LocalApp,
        aws: AwsServices,
        runner: _CurrentFunctions,
        gateway: Gateway | NoWebSocketApi,
        urls: StackUrls,
        out: TextIO,
        invocations: _Fanout,
        gateway_events: _Fanout,
        denials: DenialLog,
    ) -> None:
        self._app = app
        self._denials = denials
        self._aws = aws
        self._runner = runner
        self._gateway = gateway
        self._urls = urls
        self._out = out
        self._invocations = invocations
        self._gateway_events = gateway_events
        self.routes: list[_Routes] = []
        self.links: list[tuple[str, str]] = []
        self.stop_hooks: list[StopHook] = []
        self.ready_tasks: list[ReadyTask] = []
        self.state_fields: dict[str, str | None] = {}

    @property
    def app(self) -> LocalApp:
        return self._app

    @property
    def websocket_url(self) -> str | None:
        return self._urls.websocket_url

    @property
    def http_url(self) -> str:
        return self._urls.http_url

    @property
    def http_api_url(self) -> str | None:
        return self._urls.jobs_api_url

    @property
    def site_url(self) -> str | None:
        return self._urls.progress_view_url

    @property
    def gateway(self) -> Gateway | NoWebSocketApi:
        return self._gateway

    def say(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def add_routes(self, prefix: str, routes: Iterable[web.RouteDef], *, purpose: str) -> None:
        if not prefix.startswith("/") or prefix.endswith("/") or "{" in prefix:
            raise ValueError(f"an add-on's route prefix is a fixed path like /console, not {prefix!r}")
        self.routes.append(_Routes(prefix, tuple(routes), purpose))

    def advertise(self, label: str, path: str) -> None:
        self.links.append((label, f"{self._urls.http_url}{path}"))

    def on_invocation(self, listener: InvocationListener) -> None:
        self._invocations.listeners.append(listener)

    def on_denied(self, listener: DeniedListener) -> None:
        self._denials.listeners.append(listener)

    def on_gateway_event(self, listener: GatewayListener) -> None:
        self._gateway_events.listeners.append(listener)

    def on_stop(self, hook: StopHook) -> None:
        self.stop_hooks.append(hook)

    def when_ready(self, task: ReadyTask) -> None:
        self.ready_tasks.append(task)

    def set_state(self, name: str, value: str | None) -> None:
        if name not in STATE_FIELDS_FOR_ADD_ONS:
            raise ValueError(f"no add-on field {name!r} in the state file")
        self.state_fields[name] = value

    def admin_client(self, service: str) -> Any:
        return self._aws.client(service)

    def intercept_aws(self, interceptor: Interceptor, match: InterceptMatch) -> None:
        self._aws.add_interceptor(interceptor, match)

    async def invoke(self, function_id: str, event: dict[str, Any], *, source: str) -> Invocation:
        return await self._runner.invoke(function_id, event, source=source)

    def busy_worker_pids(self, function_id: str) -> list[int]:
        return self._runner.functions.runner.busy_worker_pids(function_id)

    def reloaded(self, app: LocalApp) -> None:
        """A template reload: `app` is now the reloaded one (add-ons read it when they need it)."""
        self._app = app

    def local_paths(self) -> tuple[str, ...]:
        return (*LOCAL_ONLY_PATHS, *(routes.prefix for routes in self.routes))

    def register_routes(self, http_app: web.Application) -> None:
        for group in self.routes:
            for route in group.routes:
                prefixed = web.RouteDef(route.method, group.prefix + route.path, route.handler, route.kwargs)
                prefixed.register(http_app.router)

    async def run_stop_hooks(self) -> None:
        for hook in reversed(self.stop_hooks):
            try:
                await hook()
            except Exception:
                traceback.print_exc()


class LocalStack:
    """What `tidings dev` runs, for one template, with the given add-ons; `start()` runs it."""

    def __init__(
        self, options: DevOptions, *, add_ons: Sequence[AddOn] = (), out: TextIO = sys.stdout
    ) -> None:
        self.options = options
        self.add_ons = tuple(add_ons)
        self.out = out

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    async def start(self) -> RunningStack:
        """Start everything, or stop what had started and raise (TemplateError, OSError)."""
        async with contextlib.AsyncExitStack() as cleanup:
            running = await self._start(cleanup)
            cleanup.pop_all()  # the running stack stops them now
            return running
        raise AssertionError("unreachable")  # pragma: no cover - the exit stack never swallows

    async def _start(self, cleanup: contextlib.AsyncExitStack) -> RunningStack:
        opts = self.options
        host = opts.host
        ws_port = opts.ws_port or free_port(host)
        http_port = opts.http_port or free_port(host)
        shown = browser_host(host)  # never 0.0.0.0 in a URL: browsers cannot use it
        extra_names = frozenset({socket.gethostname().lower()}) if is_wildcard(host) else frozenset()
        denials = DenialLog()

        def aws_hosts(port: int) -> HostPolicy:
            # the stack's pages (the HTTP port) may upload to presigned URLs
            return HostPolicy(port=port, bind_host=AWS_HOST, origin_ports=frozenset({http_port}))

        aws = AwsServices(
            port=opts.aws_port,
            host=AWS_HOST,
            hosts=aws_hosts,
            enforce_iam=opts.iam,
            on_denied=denials,
        )
        aws_endpoint = aws.start_server()
        cleanup.callback(aws.stop)
        endpoints = LocalEndpoints(
            ws_url_base=f"ws://{shown}:{ws_port}",
            http_url_base=f"http://{shown}:{http_port}",
            aws_endpoint=aws_endpoint,
        )
        app = _load_app(opts, endpoints, site_origins(shown, http_port), aws, self.out)
        try:
            issued = issue_app_credentials(aws.credentials, app, strict=opts.iam)
        except UnsupportedPolicy as error:
            raise TemplateError(f"IAM: {error}") from None
        try:
            aws.create_resources(app)
        except (BotoCoreError, ClientError) as exc:  # the embedded service refused what it declares
            raise TemplateError(f"{app.template_path}: cannot create its resources: {exc}") from None

        invocations = _Fanout()
        invocations.listeners.append(InvocationLog(app, opts.log_format, self.out, denials))
        gateway_events = _Fanout()
        api = _choose_api(app, opts.api)
        # the management API at the execute-api and custom-domain hosts, for the workers only
        trust = WorkerTrust(ManagementHosts.of(api, app.domain_mappings)) if api is not None else None
        if trust is not None:
            cleanup.callback(trust.close)
        worker_environment = trust.environment if trust is not None else {}
        functions = await _start_functions(
            app, aws, issued, opts, invocations, self._say, worker_environment, endpoints.http_url_base
        )
        cleanup.push_async_callback(functions.stop)
        # the gateway, the HTTP API, the add-ons and the embedded endpoint reach the functions
        # through `current`, which a template reload points at the new ones
        current = _CurrentFunctions(functions)
        # Invoke of the template's functions on the embedded endpoint runs them here
        aws.add_interceptor(current.lambda_invoke, LAMBDA_INVOKE)
        # StartExecution and the other execution calls on the endpoint run the interpreter
        aws.add_interceptor(current.stepfunctions_api, STEP_FUNCTIONS_API)
        services = EmbeddedServiceBackend(aws, functions.machines, issued.integrations)

        gateway: Gateway | NoWebSocketApi = NoWebSocketApi()
        if api is not None:
            gateway = Gateway(
                api,
                current,
                host=host,
                port=ws_port,
                idle_timeout_s=opts.idle_timeout_s,
                max_lifetime_s=opts.max_lifetime_s,
                drop_disconnect=opts.drop_disconnect,
                on_event=gateway_events,
                services=services,
                aws_endpoint=aws_endpoint,
                hosts=HostPolicy(port=ws_port, bind_host=host, extra_names=extra_names),
            )
            await gateway.start()
            cleanup.push_async_callback(gateway.stop)

        sites = local_site_dirs(app.template_path)
        stage = api.stage if api is not None else ""
        urls = StackUrls(
            websocket_url=f"ws://{shown}:{ws_port}/{stage}" if api is not None else None,
            callback_url=f"http://{shown}:{http_port}/{stage}" if api is not None else None,
            aws_endpoint=aws_endpoint,
            http_url=f"http://{shown}:{http_port}",
            progress_view_url=f"http://{shown}:{http_port}/" if sites else None,
            jobs_api_url=f"http://{shown}:{http_port}" if app.http_routes else None,
        )
        add_on_host = _AddOnHost(
            app=app,
            aws=aws,
            runner=current,
            gateway=gateway,
            urls=urls,
            out=self.out,
            invocations=invocations,
            gateway_events=gateway_events,
            denials=denials,
        )
        cleanup.push_async_callback(add_on_host.run_stop_hooks)
        for add_on in self.add_ons:
            add_on.install(add_on_host)

        def management_guard(api: Any, *, admin: bool) -> ManagementGuard:
            """Who may call `@connections`: signed with this run's keys, a function's role needs
            ManageConnections; `admin`: the run's admin key too (not on the workers' TLS hosts)."""
            return ManagementGuard(
                aws.credentials,
                api_id=api.api_id,
                region=api.region,
                account=api.account_id,
                enforce_iam=opts.iam,
                on_denied=denials,
                admin=admin,
            )

        management = ("/@connections", f"/{api.stage}/@connections") if api is not None else ()
        local_paths = add_on_host.local_paths()
        http_hosts = HostPolicy(
            port=http_port,
            bind_host=host,
            extra_names=extra_names,
            local_only=local_paths,
            origin_checked=(*local_paths, *management),
        )
        http_app = build_http_app(
            gateway if isinstance(gateway, Gateway) else None,
            static_dirs=sites,
            http_routes=app.http_routes,
            invoker=current,
            region=app.region,
            hosts=http_hosts,
            management_auth=management_guard(api, admin=True) if api is not None else None,
        )
        add_on_host.register_routes(http_app)
        http_runner = web.AppRunner(http_app, access_log=None)
        await http_runner.setup()
        cleanup.push_async_callback(http_runner.cleanup)
        await web.TCPSite(http_runner, host, http_port).start()
        listener: ManagementListener | None = None
        if trust is not None and api is not None and isinstance(gateway, Gateway):
            listener = await ManagementListener.start(
                trust,
                gateway,
                # only the functions reach these hosts, with their roles' keys
                management_guard(api, admin=False),
            )
            cleanup.push_async_callback(listener.stop)
        reloader = TemplateReload(
            options=opts,
            out=self.out,
            aws=aws,
            endpoints=endpoints,
            site_origins=site_origins(shown, http_port),
            invocations=invocations,
            denials=denials,
            current=current,
            services=services,
            gateway=gateway,
            add_on_host=add_on_host,
            app=app,
            issued=issued,
            worker_environment=worker_environment,
        )
        if opts.prewarm:  # in the background, two at a time: it starts once the stack serves
            current.functions.runner.prewarm(prewarm_targets(app))
        return RunningStack(
            options=opts,
            app=app,
            aws=aws,
            current=current,
            reloader=reloader,
            watcher=asyncio.create_task(reloader.watch(), name="tidings-template-watcher"),
            gateway=gateway,
            http_runner=http_runner,
            urls=dataclasses.replace(urls, links=tuple(add_on_host.links)),
            denials=denials,
            add_ons=add_on_host,
            management_listener=listener,
        )


@dataclass
class RunningStack:
    """A started local stack: every part is running until `stop()`."""

    options: DevOptions
    app: LocalApp  # the app as first loaded (`reloader.app`: as last reloaded)
    aws: AwsServices
    current: _CurrentFunctions  # the runner, state machines and event delivery of the current app
    reloader: TemplateReload
    watcher: asyncio.Task[None]  # reloads the stack when the template file changes
    gateway: Gateway | NoWebSocketApi  # NoWebSocketApi: the template has no WebSocket API
    http_runner: web.AppRunner
    urls: StackUrls
    denials: DenialLog
    add_ons: _AddOnHost
    # the management API at the execute-api/custom-domain hosts; None: no WebSocket API
    management_listener: ManagementListener | None = None

    @property
    def runner(self) -> FunctionRunner:
        return self.current.functions.runner

    @property
    def machines(self) -> StepFunctions:
        return self.current.functions.machines

    @property
    def delivery(self) -> EventDelivery:
        return self.current.functions.delivery

    @property
    def ready_tasks(self) -> list[ReadyTask]:
        """What the add-ons start once `tidings dev` has said it is ready (e.g. a demo)."""
        return list(self.add_ons.ready_tasks)

    def exposure_warning(self) -> str | None:
        """What `--host` exposes beyond this machine, or None when it binds a loopback address."""
        host = self.options.host
        if host.strip("[]").lower() in LOOPBACK_NAMES or is_loopback(host.strip("[]")):
            return None
        exposed = [f"the HTTP API, callback and static site (port {self.urls.http_url.rsplit(':', 1)[1]})"]
        if isinstance(self.gateway, Gateway):
            exposed.insert(0, f"the WebSocket API (port {self.gateway.port})")
        local = [*dict.fromkeys(routes.purpose for routes in self.add_ons.routes), "the AWS endpoint"]
        return (
            f"warning: --host {host} exposes {' and '.join(exposed)} to the network; "
            f"{', '.join(local[:-1])}{' and ' if len(local) > 1 else ''}{local[-1]} "
            "answer only on this machine"
        )

    async def stop(self) -> None:
        """Stop the add-ons, then what produces events (executions, workers) before event delivery
        goes: moto's own delivery, back once ours is uninstalled, cannot reach Lambda or Step
        Functions targets."""
        self.watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.watcher
        await self.add_ons.run_stop_hooks()
        if isinstance(self.gateway, Gateway):
            with contextlib.suppress(Exception):
                await self.gateway.stop()
        await self.http_runner.cleanup()
        if self.management_listener is not None:
            await self.management_listener.stop()
        await self.current.functions.stop()
        self.aws.stop()

    def state(self) -> LocalStackState:
        return LocalStackState(
            websocket_url=self.urls.websocket_url,
            callback_url=self.urls.callback_url,
            aws_endpoint=self.urls.aws_endpoint,
            http_url=self.urls.http_url,
            progress_view_url=self.urls.progress_view_url,
            jobs_api_url=self.urls.jobs_api_url,
            region=self.app.region,
            stage=self.gateway.stage,
            aws_access_key_id=self.aws.credentials.admin.access_key_id,
            aws_secret_access_key=self.aws.credentials.admin.secret_access_key,
            **self.add_ons.state_fields,  # type: ignore[arg-type]
        )


def _load_app(
    opts: DevOptions, endpoints: LocalEndpoints, origins: list[str], aws: AwsServices, out: TextIO
) -> LocalApp:
    """The template as the stack runs it: local parameters, overrides, SAM's --env-vars."""
    overrides = local_parameters(Path(opts.template), origins)
    overrides.update(opts.parameter_overrides)  # the user's --parameter-overrides win
    app = load_app(opts.template, endpoints, parameter_overrides=overrides, embedded=EmbeddedValues(aws))
    for function_id, reason in app.skipped.items():
        out.write(f"tidings dev: starting without function {function_id}: {reason}\n")
    for warning in deprecation_warnings({fid: f.runtime for fid, f in app.functions.items()}):
        out.write(f"tidings dev: {warning}\n")
    for logical_id, function in app.functions.items():
        environment = samconfig.function_environment(function, opts.env_vars)
        app.functions[logical_id] = dataclasses.replace(function, environment=environment)
    return app


@dataclass(frozen=True)
class _Functions:
    """What runs one app's code: its function runner, state machines, event delivery, and the
    embedded endpoint's Lambda Invoke and Step Functions execution calls."""

    runner: FunctionRunner
    machines: StepFunctions
    delivery: EventDelivery
    lambda_invoke: LambdaInvoke
    stepfunctions_api: StepFunctionsApi

    async def stop(self) -> None:
        """What produces events (executions, workers) stops before event delivery goes."""
        await self.machines.stop()
        await self.runner.stop()
        self.delivery.uninstall()


async def _start_functions(
    app: LocalApp,
    aws: AwsServices,
    issued: AppCredentials,
    opts: DevOptions,
    invocations: _Fanout,
    say: Callable[[str], None],
    worker_environment: Mapping[str, str],
    http_url_base: str,
) -> _Functions:
    runner = FunctionRunner(
        app,
        aws.endpoint,
        # every worker, whatever its runtime: management_endpoints.worker_environment
        extra_environment=worker_environment,
        on_invocation=invocations,
        credentials={fid: keys.environment() for fid, keys in issued.functions.items()},
        # what the functions' runtimes install (first start), with pip's progress, on our terminal
        runtimes=RuntimeSetup(progress=say),
    )
    await runner.start()
    machines = StepFunctions(
        app,
        runner,
        may_invoke=_machine_may_invoke(issued) if opts.iam else None,
        # service and apigateway:invoke Tasks, signed with each machine's role session
        tasks=MachineTasks(aws, issued.machine_keys, http_url_base),
    )
    delivery = EventDelivery(
        app,
        runner,
        aws.endpoint,
        start_execution=machines.start_execution,
        credentials=aws.credentials.boto_credentials,
        may_invoke=_function_may_invoke(aws, issued) if opts.iam else None,
    )
    aws.route_events(delivery)
    loop = asyncio.get_running_loop()
    return _Functions(
        runner,
        machines,
        delivery,
        LambdaInvoke(app, runner, delivery.lambda_async.invoke, loop),
        StepFunctionsApi(machines, loop),
    )


class _CurrentFunctions:
    """A `FunctionInvoker` and the endpoint's interceptors that always use the current app's
    functions: the gateway, the HTTP API and the add-ons outlive a template reload, this follows it."""

    def __init__(self, functions: _Functions) -> None:
        self.functions = functions

    async def invoke(
        self,
        function_id: str,
        event: dict[str, Any],
        *,
        source: str = "",
        request_id: str | None = None,
        caller: Caller | None = None,
    ) -> Invocation:
        return await self.functions.runner.invoke(
            function_id, event, source=source, request_id=request_id, caller=caller
        )

    def lambda_invoke(self, environ: dict[str, Any]) -> Callable[..., Iterable[bytes]] | None:
        return self.functions.lambda_invoke(environ)

    def stepfunctions_api(self, environ: dict[str, Any]) -> Callable[..., Iterable[bytes]] | None:
        return self.functions.stepfunctions_api(environ)


# What a template that does not load, or that the embedded services refuse, raises
_REFUSED_EDITS = (TemplateError, UnsupportedPolicy, OSError, ValueError, BotoCoreError, ClientError)


@dataclass
class TemplateReload:
    """`tidings dev` on an edited template: the stack runs the new app without stopping.

    Kept: the embedded services and their data (resources the new template names anew are
    created), the WebSocket server with its connections (routes come from the new template), the
    HTTP server. Replaced: the function runner (every function cold, new environment, new role
    keys; the old keys are revoked), state machines, rules and event delivery. Not refreshed (said
    on reload): another WebSocket API, stage or route selection expression, changed HTTP API routes,
    custom domains or static sites; add-ons keep what they read when they were installed;
    executions running in the old state machines stop. An edit that does not load leaves the
    stack as it was.
    """

    options: DevOptions
    out: TextIO
    aws: AwsServices
    endpoints: LocalEndpoints
    site_origins: list[str]
    invocations: _Fanout
    denials: DenialLog
    current: _CurrentFunctions
    services: EmbeddedServiceBackend
    gateway: Gateway | NoWebSocketApi
    add_on_host: _AddOnHost
    app: LocalApp
    issued: AppCredentials
    worker_environment: Mapping[str, str] = field(default_factory=dict)  # kept: same listener
    reloads: int = 0

    def _say(self, line: str) -> None:
        self.out.write(f"tidings dev: {line}\n")
        self.out.flush()

    async def reload(self) -> bool:
        """Run the template as it is now; False (and one line said) when it does not load."""
        opts, previous = self.options, self.app
        try:
            app = await asyncio.to_thread(
                _load_app, opts, self.endpoints, self.site_origins, self.aws, self.out
            )
            api = _choose_api(app, opts.api)
            issued = issue_app_credentials(self.aws.credentials, app, strict=opts.iam)
        except _REFUSED_EDITS as exc:
            self._say(f"template not reloaded, still running the previous one: {_one_line(exc)}")
            return False
        try:
            await asyncio.to_thread(self.aws.create_resources, app, previous=previous)
        except _REFUSED_EDITS as exc:
            self.aws.credentials.revoke(issued_keys(issued))  # none of the new sessions is used
            self._say(f"template not reloaded, still running the previous one: {_one_line(exc)}")
            return False
        functions = await _start_functions(
            app,
            self.aws,
            issued,
            opts,
            self.invocations,
            self._say,
            self.worker_environment,
            self.endpoints.http_url_base,
        )
        old = self.current.functions
        old_keys = issued_keys(self.issued)
        self.current.functions = functions
        self.services.machines = functions.machines
        self.services.use_roles(issued.integrations)  # integration roles as the new template says
        self.invocations.listeners[0] = InvocationLog(app, opts.log_format, self.out, self.denials)
        self.add_on_host.reloaded(app)
        self.app, self.issued = app, issued
        await old.stop()
        self.aws.credentials.revoke(old_keys)
        if opts.prewarm:  # the reloaded functions start with new workers: warm one of each again
            functions.runner.prewarm(prewarm_targets(app))
        notes = []
        if isinstance(self.gateway, Gateway) and api is not None and _same_api(self.gateway.api, api):
            self.gateway.api = api
        elif isinstance(self.gateway, Gateway) or api is not None:
            notes.append("the WebSocket API changed its id, stage or route selection: restart to serve it")
        if app.http_routes != previous.http_routes:
            notes.append("the HTTP API routes changed: restart to serve them")
        if app.domain_mappings != previous.domain_mappings:
            notes.append("the custom domains changed: restart to serve them")
        self.reloads += 1
        self._say(f"{opts.template} reloaded; data and connections kept")
        for note in notes:
            self._say(note)
        return True

    async def watch(self) -> None:
        """Reload on each change of the template file (watchfiles, as FunctionRunner watches code)."""
        from watchfiles import awatch

        template = self.options.template.resolve()

        def is_template(_: object, path: str) -> bool:
            return Path(path).resolve() == template

        try:
            async for _ in awatch(template.parent, watch_filter=is_template, recursive=False):
                await self.reload()
        except asyncio.CancelledError:
            raise
        except Exception:  # the stack keeps serving; only the reload on edit is lost
            traceback.print_exc()
            self._say("the template watcher stopped; template edits need a restart")


def issued_keys(issued: AppCredentials) -> list[Credentials]:
    """Every key a template's run was issued: its functions', state machines' and integrations'."""
    return [*issued.functions.values(), *issued.machine_keys.values(), *issued.integrations.values()]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _same_api(served: Any, reloaded: Any) -> bool:
    """Whether the running gateway can take the reloaded API's routes (same id, stage, selection)."""
    return bool(
        served.logical_id == reloaded.logical_id
        and served.stage == reloaded.stage
        and served.route_selection_expression == reloaded.route_selection_expression
    )


def _machine_may_invoke(issued: AppCredentials) -> Callable[[str, str], str | None]:
    def check(machine_id: str, function_arn: str) -> str | None:
        return may_invoke(issued.machines[machine_id], function_arn)

    return check


def _function_may_invoke(aws: AwsServices, issued: AppCredentials) -> Callable[[str, str], str | None]:
    """Lambda destinations of type Lambda: the sending function's role must allow the invoke."""

    def check(function_id: str, function_arn: str) -> str | None:
        found = aws.credentials.lookup(issued.functions[function_id].access_key_id)
        if found is None or found[1].principal is None:
            return None
        return may_invoke(found[1].principal, function_arn)

    return check


def _choose_api(app: LocalApp, logical_id: str | None) -> Any:
    apis = app.websocket_apis
    if logical_id is not None:
        for api in apis:
            if api.logical_id == logical_id:
                return api
        raise TemplateError(f"--api {logical_id}: no WebSocket API with that logical id")
    if len(apis) > 1:
        names = ", ".join(api.logical_id for api in apis)
        raise TemplateError(f"the template has several WebSocket APIs ({names}): choose one with --api")
    return apis[0] if apis else None


def parse_args(argv: list[str]) -> DevOptions:
    parser = argparse.ArgumentParser(
        prog="tidings dev",
        description="Run a SAM WebSocket app locally.",
        epilog=(
            "Edits reload while it runs: a code or layer folder restarts its functions cold; the "
            "template file reloads the stack, keeping the embedded data and the live connections "
            "(a broken edit is refused and the running app is kept)."
        ),
    )
    parser.add_argument("--template", type=Path, default=Path("template.yaml"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ws-port", type=int, default=3001, help="0 picks a free port")
    parser.add_argument("--http-port", type=int, default=3000, help="0 picks a free port")
    parser.add_argument("--aws-port", type=int, default=4566, help="0 picks a free port")
    parser.add_argument("--no-demo", dest="demo", action="store_false", help="do not start the demo job")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument(
        "--drop-disconnect",
        action="store_true",
        help="never run $disconnect, so stale connections exercise the 410 Gone path",
    )
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="seconds (AWS: 600)")
    parser.add_argument("--max-lifetime", type=float, default=7200.0, help="seconds (AWS: 7200)")
    parser.add_argument("--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--api", default=None, help="logical id of the WebSocket API to serve")
    parser.add_argument(
        "--no-iam",
        dest="iam",
        action="store_false",
        help="do not check the functions' AWS calls against their execution roles",
    )
    parser.add_argument(
        "--no-prewarm",
        dest="prewarm",
        action="store_false",
        help="do not initialize the functions that routes and rules invoke once the stack is ready "
        "(and after a template reload); their first invocations then start cold",
    )
    parser.add_argument("--config-env", metavar="ENV", help="parameter_overrides of ENV in samconfig.toml")
    parser.add_argument("--env-vars", type=Path, metavar="FILE", help='SAM\'s JSON: {"Parameters": {...}}')
    args = parser.parse_args(argv)
    try:
        overrides, env_vars = samconfig_options(args.template, args.config_env, args.env_vars)
    except (samconfig.ConfigError, OSError) as exc:
        parser.error(str(exc))
    for item in args.parameter_overrides:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--parameter-overrides takes KEY=VALUE, not {item!r}")
        overrides[key] = value
    return DevOptions(
        template=args.template,
        host=args.host,
        ws_port=args.ws_port,
        http_port=args.http_port,
        aws_port=args.aws_port,
        demo=args.demo,
        log_format=args.log_format,
        drop_disconnect=args.drop_disconnect,
        idle_timeout_s=args.idle_timeout,
        max_lifetime_s=args.max_lifetime,
        parameter_overrides=overrides,
        state_file=args.state_file,
        api=args.api,
        iam=args.iam,
        prewarm=args.prewarm,
        env_vars=env_vars,
    )


def samconfig_options(
    template: Path, config_env: str | None, env_vars_file: Path | None
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """`--config-env`'s parameter overrides (samconfig.toml beside the template) and `--env-vars`."""
    overrides: dict[str, str] = {}
    if config_env is not None:
        config = template.parent / "samconfig.toml"
        if not config.is_file():
            raise samconfig.ConfigError(f"--config-env {config_env}: no {config}")
        overrides = samconfig.config_env_parameter_overrides(config.read_text(), config_env)
    env_vars = samconfig.parse_env_vars(env_vars_file.read_text()) if env_vars_file else {}
    return overrides, env_vars


AddOnsFor = Callable[[DevOptions], Sequence[AddOn]]


def generic_add_ons(options: DevOptions) -> list[AddOn]:
    """The emulator's own add-ons: the console, and fault injection (when TIDINGS_FAULTS=1)."""
    from tidings.local.console import Console
    from tidings.local.faults import FaultInjection

    return [Console(), FaultInjection()]


async def run(options: DevOptions, add_ons: Sequence[AddOn] = ()) -> int:
    stack = LocalStack(options, add_ons=add_ons)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    state_file = options.state_file or state_path(options.template)
    try:
        lock = StateLock(state_file)  # before any port: the other stack holds them
    except (StackAlreadyRunning, OSError) as exc:
        print(f"tidings dev: {exc}", file=sys.stderr)
        return 2
    try:
        return await _serve(stack, options, state_file, stop)
    finally:
        lock.release()


async def _serve(stack: LocalStack, options: DevOptions, state_file: Path, stop: asyncio.Event) -> int:
    try:
        running = await stack.start()  # on failure it has stopped whatever it had started
    except (TemplateError, OSError) as exc:
        print(f"tidings dev: {exc}", file=sys.stderr)
        return 2
    tasks: list[asyncio.Task[None]] = []
    try:
        write_state(running.state(), state_file)
        warning = running.exposure_warning()
        if warning is not None:
            print(f"tidings dev: {warning}", file=sys.stderr, flush=True)
        for line in running.urls.lines():
            print(line, flush=True)
        if options.iam:
            print("IAM: each function's AWS calls are checked against its role (--no-iam turns this off)")
        else:
            print("IAM: NOT enforced (--no-iam): functions may call any embedded AWS service", flush=True)
        print("Ready. Ctrl-C stops everything.", flush=True)
        tasks = [asyncio.create_task(_ready_task(task)) for task in running.ready_tasks]
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        print("Stopping...", flush=True)
        await running.stop()
        remove_state(state_file)
    return 0


async def _ready_task(task: ReadyTask) -> None:
    await task()


def main(argv: list[str] | None = None, add_ons: AddOnsFor = generic_add_ons) -> int:
    """`tidings dev` with the add-ons `add_ons(options)` chooses (default: the emulator's own)."""
    options = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return asyncio.run(run(options, add_ons(options)))
    except KeyboardInterrupt:
        return 130
    except Exception:
        traceback.print_exc()
        return 1
