"""`tidings dev`: the whole local stack for a SAM template, wired together.

Order matters: ports first (the template's execute-api URLs resolve to them), then the
embedded AWS services (queue URLs contain their endpoint), then the app, its resources, the
function runner, event delivery, the WebSocket gateway and the HTTP server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import json
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from tidings.local import samconfig
from tidings.local.aws import AwsServices
from tidings.local.aws_guard import AppCredentials, Denial, issue_app_credentials, may_invoke
from tidings.local.bus import EventDelivery
from tidings.local.embedded_values import EmbeddedValues
from tidings.local.functions import FunctionRunner
from tidings.local.gateway import Gateway
from tidings.local.hosts import LOOPBACK_NAMES, HostPolicy, browser_host, is_loopback, is_wildcard
from tidings.local.http import build_http_app
from tidings.local.iam import UnsupportedPolicy
from tidings.local.integration_calls import EmbeddedServiceBackend
from tidings.local.invocation_line import outcome as invocation_outcome
from tidings.local.invocation_line import text_line
from tidings.local.lambda_invoke import LambdaInvoke
from tidings.local.model import Invocation, LocalApp
from tidings.local.runtimes import RuntimeSetup
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

USER_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
LOCAL_SITE_METADATA = "Tidings"
# Optional parts of the local stack; each module has `install(http_app, stack)` and may register
# invocation listeners, gateway event listeners and routes before the HTTP server starts.
EXTENSIONS = ("tidings.local.console", "tidings.local.faults")
# Whatever --host exposes, these answer only to this machine (token minting, console, faults)
LOCAL_ONLY_PATHS = ("/_tidings", "/console")
# The AWS endpoint never follows --host: it holds every secret and table of the stack
AWS_HOST = "127.0.0.1"
InvocationListener = Callable[[Invocation, str, str, dict[str, Any]], Any]
GatewayListener = Callable[
    [str, dict[str, Any]], Any
]  # Metadata: {Tidings: {LocalSite: web/}} on a bucket serves that folder at /


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


@dataclass(frozen=True)
class StackUrls:
    websocket_url: str | None  # None: the template has no WebSocket API, so none is advertised
    callback_url: str | None
    aws_endpoint: str
    http_url: str
    progress_view_url: str | None
    jobs_api_url: str | None
    console_url: str | None = None

    def lines(self) -> list[str]:
        lines = []
        if self.websocket_url and self.callback_url:
            lines += [f"WebSocket URL: {self.websocket_url}", f"Callback URL: {self.callback_url}"]
        lines.append(f"AWS endpoint: {self.aws_endpoint}")
        if self.progress_view_url:
            lines.append(f"Progress view: {self.progress_view_url}")
        if self.console_url:
            lines.append(f"Console: {self.console_url}")
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
    """Calls the AWS endpoint refused, by function, until its invocation line takes them.

    The guard reports on moto's threads; the invocation log reads on the event loop.
    """

    def __init__(self, limit: int = 20) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[Denial]] = {}
        self.limit = limit
        self.listeners: list[Callable[[Denial], Any]] = []

    def __call__(self, denial: Denial) -> None:
        with self._lock:
            pending = self._pending.setdefault(denial.caller, [])
            if len(pending) < self.limit and denial not in pending:
                pending.append(denial)
        for listener in list(self.listeners):
            try:
                listener(denial)
            except Exception:
                traceback.print_exc()

    def take(self, function_id: str) -> list[Denial]:
        with self._lock:
            return self._pending.pop(function_id, [])


class LocalStack:
    """Everything `tidings dev` runs, startable and stoppable from tests."""

    def __init__(self, options: DevOptions, *, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.aws: AwsServices | None = None
        self.runner: FunctionRunner | None = None
        self.delivery: EventDelivery | None = None
        self.machines: StepFunctions | None = None
        self.gateway: Gateway | None = None
        self.http_runner: web.AppRunner | None = None
        self.app: LocalApp | None = None
        self.urls: StackUrls | None = None
        self.token_secret_id: str | None = None
        self.invocation_listeners: list[InvocationListener] = []
        self.extensions: list[str] = []
        self.gateway_listeners: list[GatewayListener] = []
        self.denials = DenialLog()

    async def start(self) -> StackUrls:
        opts = self.options
        host = opts.host
        ws_port = opts.ws_port or free_port(host)
        http_port = opts.http_port or free_port(host)
        shown = browser_host(host)  # never 0.0.0.0 in a URL: browsers cannot use it
        extra_names = frozenset({socket.gethostname().lower()}) if is_wildcard(host) else frozenset()

        def aws_hosts(port: int) -> HostPolicy:
            # the stack's pages (the HTTP port) may upload to presigned URLs
            return HostPolicy(port=port, bind_host=AWS_HOST, origin_ports=frozenset({http_port}))

        self.aws = AwsServices(
            port=opts.aws_port,
            host=AWS_HOST,
            hosts=aws_hosts,
            enforce_iam=opts.iam,
            on_denied=self.denials,
        )
        aws_endpoint = self.aws.start_server()
        endpoints = LocalEndpoints(
            ws_url_base=f"ws://{shown}:{ws_port}",
            http_url_base=f"http://{shown}:{http_port}",
            aws_endpoint=aws_endpoint,
        )
        overrides = local_parameters(Path(opts.template), site_origins(shown, http_port))
        overrides.update(opts.parameter_overrides)  # the user's --parameter-overrides win
        self.app = app = load_app(
            opts.template,
            endpoints,
            parameter_overrides=overrides,
            embedded=EmbeddedValues(self.aws),
        )
        for function_id, reason in app.skipped.items():
            self.out.write(f"tidings dev: starting without function {function_id}: {reason}\n")
        for logical_id, function in app.functions.items():
            environment = samconfig.function_environment(function, opts.env_vars)
            app.functions[logical_id] = dataclasses.replace(function, environment=environment)
        try:
            issued = issue_app_credentials(self.aws.credentials, app, strict=opts.iam)
        except UnsupportedPolicy as error:
            raise TemplateError(f"IAM: {error}") from None
        try:
            self.aws.create_resources(app)
        except (BotoCoreError, ClientError) as exc:  # the embedded service refused what it declares
            raise TemplateError(f"{app.template_path}: cannot create its resources: {exc}") from None
        self.token_secret_id = _token_secret_id(app)

        self.invocation_listeners.insert(0, InvocationLog(app, opts.log_format, self.out, self.denials))
        self.runner = FunctionRunner(
            app,
            aws_endpoint,
            on_invocation=self._on_invocation,
            credentials={fid: keys.environment() for fid, keys in issued.functions.items()},
            # first start: what the functions' runtimes install, with pip's progress, on our terminal
            runtimes=RuntimeSetup(progress=self._say),
        )
        await self.runner.start()
        self.machines = StepFunctions(
            app, self.runner, may_invoke=self._machine_may_invoke(issued) if opts.iam else None
        )
        self.delivery = EventDelivery(
            app,
            self.runner,
            aws_endpoint,
            start_execution=self.machines.start_execution,
            credentials=self.aws.credentials.boto_credentials,
            may_invoke=self._function_may_invoke(issued) if opts.iam else None,
        )
        self.delivery.install()
        # Invoke of the template's functions on the embedded endpoint runs them here
        self.aws.add_interceptor(
            LambdaInvoke(app, self.runner, self.delivery.lambda_async.invoke, asyncio.get_running_loop())
        )
        # StartExecution and the other execution calls on the endpoint run the interpreter
        self.aws.add_interceptor(StepFunctionsApi(self.machines, asyncio.get_running_loop()))

        api = _choose_api(app, opts.api)
        if api is not None:
            self.gateway = Gateway(
                api,
                self.runner,
                host=host,
                port=ws_port,
                idle_timeout_s=opts.idle_timeout_s,
                max_lifetime_s=opts.max_lifetime_s,
                drop_disconnect=opts.drop_disconnect,
                on_event=self._on_gateway_event,
                services=EmbeddedServiceBackend(self.aws, self.machines),
                aws_endpoint=aws_endpoint,
                hosts=HostPolicy(port=ws_port, bind_host=host, extra_names=extra_names),
            )
            await self.gateway.start()

        sites = local_site_dirs(app.template_path)
        management = ("/@connections", f"/{api.stage}/@connections") if api is not None else ()
        http_hosts = HostPolicy(
            port=http_port,
            bind_host=host,
            extra_names=extra_names,
            local_only=LOCAL_ONLY_PATHS,
            origin_checked=(*LOCAL_ONLY_PATHS, *management),
        )
        http_app = build_http_app(
            self.gateway,
            static_dirs=sites,
            http_routes=app.http_routes,
            invoker=self.runner,
            region=app.region,
            hosts=http_hosts,
        )
        http_app.middlewares.append(self._local_routes)
        for name in EXTENSIONS:
            try:
                extension = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:
                    raise
                continue
            extension.install(http_app, self)
            self.extensions.append(name)
        self.http_runner = web.AppRunner(http_app, access_log=None)
        await self.http_runner.setup()
        await web.TCPSite(self.http_runner, host, http_port).start()

        stage = api.stage if api is not None else ""
        self.urls = StackUrls(
            websocket_url=f"ws://{shown}:{ws_port}/{stage}" if api is not None else None,
            callback_url=f"http://{shown}:{http_port}/{stage}" if api is not None else None,
            aws_endpoint=aws_endpoint,
            http_url=f"http://{shown}:{http_port}",
            progress_view_url=f"http://{shown}:{http_port}/" if sites else None,
            jobs_api_url=f"http://{shown}:{http_port}" if app.http_routes else None,
            console_url=f"http://{shown}:{http_port}/console"
            if "tidings.local.console" in self.extensions
            else None,
        )
        return self.urls

    def _machine_may_invoke(self, issued: AppCredentials) -> Callable[[str, str], str | None]:
        def check(machine_id: str, function_arn: str) -> str | None:
            return may_invoke(issued.machines[machine_id], function_arn)

        return check

    def _function_may_invoke(self, issued: AppCredentials) -> Callable[[str, str], str | None]:
        """Lambda destinations of type Lambda: the sending function's role must allow the invoke."""

        def check(function_id: str, function_arn: str) -> str | None:
            found = (
                self.aws.credentials.lookup(issued.functions[function_id].access_key_id) if self.aws else None
            )
            if found is None or found[1].principal is None:
                return None
            return may_invoke(found[1].principal, function_arn)

        return check

    def exposure_warning(self) -> str | None:
        """What `--host` exposes beyond this machine, or None when it binds a loopback address."""
        host = self.options.host
        if host.strip("[]").lower() in LOOPBACK_NAMES or is_loopback(host.strip("[]")):
            return None
        assert self.urls is not None
        exposed = [f"the HTTP API, callback and static site (port {self.urls.http_url.rsplit(':', 1)[1]})"]
        if self.gateway is not None:
            exposed.insert(0, f"the WebSocket API (port {self.gateway.port})")
        return (
            f"warning: --host {host} exposes {' and '.join(exposed)} to the network; "
            "token minting, the console and the AWS endpoint answer only on this machine"
        )

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def _on_invocation(
        self, invocation: Invocation, function_id: str, source: str, event: dict[str, Any]
    ) -> None:
        for listener in self.invocation_listeners:
            try:
                listener(invocation, function_id, source, event)
            except Exception:  # one broken listener must not hide the invocation from the others
                traceback.print_exc()

    def _on_gateway_event(self, kind: str, details: dict[str, Any]) -> None:
        for listener in self.gateway_listeners:
            try:
                listener(kind, details)
            except Exception:
                traceback.print_exc()

    @web.middleware
    async def _local_routes(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """`/_tidings/config` and `/_tidings/token`: what the progress view needs from a local stack.

        A middleware, so these win over the site's catch-all static route. Tokens are minted only
        here, on the developer's own machine, with the secret the local stack generated.
        """
        if not request.path.startswith("/_tidings/"):
            response: web.StreamResponse = await handler(request)
            return response
        if self.urls is None:
            raise web.HTTPServiceUnavailable()
        if request.path == "/_tidings/config" and request.method == "GET":
            return web.json_response(
                {"websocketUrl": self.urls.websocket_url, "apiUrl": self.urls.jobs_api_url},
                headers={"Cache-Control": "no-store"},
            )
        if request.path == "/_tidings/token" and request.method == "GET":
            from tidings.local.demo_job import local_token

            user = request.query.get("user", "")
            if not USER_ID.fullmatch(user):
                return web.json_response(
                    {"error": {"code": "bad_user", "message": "user must be 1-64 of [A-Za-z0-9_.@-]"}},
                    status=400,
                )
            if self.token_secret_id is None:
                return web.json_response(
                    {"error": {"code": "no_secret", "message": "this template has no token secret"}},
                    status=404,
                )
            token = await asyncio.to_thread(local_token, self, user)
            return web.json_response({"token": token}, headers={"Cache-Control": "no-store"})
        response = await handler(request)  # other /_tidings/ paths belong to extensions
        return response

    async def stop(self) -> None:
        """Stop what produces events (executions, workers) before event delivery goes: moto's own
        delivery, back once ours is uninstalled, cannot reach Lambda or Step Functions targets."""
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await self.gateway.stop()
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        if self.machines is not None:
            await self.machines.stop()
        if self.runner is not None:
            await self.runner.stop()
        if self.delivery is not None:
            self.delivery.uninstall()
        if self.aws is not None:
            self.aws.stop()

    def state(self) -> LocalStackState:
        assert self.urls is not None and self.app is not None
        return LocalStackState(
            websocket_url=self.urls.websocket_url,
            callback_url=self.urls.callback_url,
            aws_endpoint=self.urls.aws_endpoint,
            http_url=self.urls.http_url,
            progress_view_url=self.urls.progress_view_url,
            jobs_api_url=self.urls.jobs_api_url,
            region=self.app.region,
            stage=self.gateway.stage if self.gateway else None,
            token_secret_id=self.token_secret_id,
            aws_access_key_id=self.aws.credentials.admin.access_key_id if self.aws else None,
            aws_secret_access_key=self.aws.credentials.admin.secret_access_key if self.aws else None,
        )


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


def _token_secret_id(app: LocalApp) -> str | None:
    """The secret the functions verify tokens with (TOKEN_SECRET_ARN), else the only secret."""
    for function in app.functions.values():
        arn = function.environment.get("TOKEN_SECRET_ARN")
        if arn:
            return arn
    secrets = [r for r in app.resources if r.kind == "secret"]
    return secrets[0].arn if len(secrets) == 1 else None


def parse_args(argv: list[str]) -> DevOptions:
    parser = argparse.ArgumentParser(prog="tidings dev", description="Run a SAM WebSocket app locally.")
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


async def run(options: DevOptions, *, demo: Callable[[LocalStack], Any] | None = None) -> int:
    stack = LocalStack(options)
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
        return await _serve(stack, options, state_file, stop, demo)
    finally:
        lock.release()


async def _serve(
    stack: LocalStack,
    options: DevOptions,
    state_file: Path,
    stop: asyncio.Event,
    demo: Callable[[LocalStack], Any] | None,
) -> int:
    try:
        urls = await stack.start()
    except (TemplateError, OSError) as exc:
        await stack.stop()
        print(f"tidings dev: {exc}", file=sys.stderr)
        return 2
    try:
        write_state(stack.state(), state_file)
        warning = stack.exposure_warning()
        if warning is not None:
            print(f"tidings dev: {warning}", file=sys.stderr, flush=True)
        for line in urls.lines():
            print(line, flush=True)
        if options.iam:
            print("IAM: each function's AWS calls are checked against its role (--no-iam turns this off)")
        else:
            print("IAM: NOT enforced (--no-iam): functions may call any embedded AWS service", flush=True)
        print("Ready. Ctrl-C stops everything.", flush=True)
        demo_task = asyncio.create_task(demo(stack)) if demo is not None and options.demo else None
        await stop.wait()
        if demo_task is not None:
            demo_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await demo_task
    finally:
        print("Stopping...", flush=True)
        await stack.stop()
        remove_state(state_file)
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse_args(list(sys.argv[1:] if argv is None else argv))
    from tidings.local.demo_job import run_demo

    try:
        return asyncio.run(run(options, demo=run_demo))
    except KeyboardInterrupt:
        return 130
    except Exception:
        traceback.print_exc()
        return 1
