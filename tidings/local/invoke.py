"""`tidings invoke FUNCTION`: one function of the template, run once, like `sam local invoke`.

The function runs in a worker process with its template environment (and `--env-vars`), as
`tidings dev` runs it. Its AWS calls go to the running local stack's embedded services when
`.tidings/state.json` beside the template names a live stack (signed with that stack's developer
keys from the state file: the stack issued its functions' role keys in its own process, so the
role is not checked); otherwise the embedded services start for this call only, with the
template's resources and the function's role checked, and stop after it.
The handler's result goes to stdout as JSON; its logs to stderr. Exit 0 when it returned, 1 when
it raised (the error as Lambda reports it on stdout), 2 on bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from tidings.local import samconfig
from tidings.local.model import Invocation, LocalApp
from tidings.local.template import LocalEndpoints, TemplateError, load_app
from tidings.state import StackNotRunning, read_state, state_path


class InvokeError(Exception):
    """Bad input for `tidings invoke`: one line for the user, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidings invoke", description="Run one function of the template locally, once."
    )
    parser.add_argument("function", metavar="FUNCTION", help="logical id or function name")
    parser.add_argument(
        "--event", "-e", metavar="FILE", help="the event as JSON; '-' reads stdin (default: {})"
    )
    parser.add_argument("--template", "-t", type=Path, default=Path("template.yaml"))
    parser.add_argument("--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--config-env", metavar="ENV", help="parameter_overrides of ENV in samconfig.toml")
    parser.add_argument("--env-vars", type=Path, metavar="FILE", help='SAM\'s JSON: {"Parameters": {...}}')
    return parser


def read_event(source: str | None, stdin: IO[str]) -> dict[str, Any]:
    if source is None:
        return {}
    try:
        text = stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise InvokeError(f"cannot read the event: {exc.strerror}: {source}") from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvokeError(f"the event is not JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(event, dict):
        raise InvokeError("the event must be a JSON object")
    return event


def _base(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclasses.dataclass(frozen=True)
class _Services:
    endpoints: LocalEndpoints
    own: Any  # AwsServices started for this call, or None when a running stack serves it
    developer_keys: dict[str, str] | None  # the running stack's keys (its state file), if any


@contextlib.asynccontextmanager
async def _services(template: Path) -> AsyncIterator[_Services]:
    """The running stack's endpoints (nothing to stop), else embedded services for this call."""
    try:
        state = read_state(state_path(template))
    except StackNotRunning:
        state = None
    if state is not None:
        # a stack without a WebSocket API has no WebSocket URL: its HTTP port fills the template
        ws_base = _base(state.websocket_url) if state.websocket_url else "ws://127.0.0.1:9"
        keys = None
        if state.aws_access_key_id and state.aws_secret_access_key:
            keys = {
                "AWS_ACCESS_KEY_ID": state.aws_access_key_id,
                "AWS_SECRET_ACCESS_KEY": state.aws_secret_access_key,
            }
        yield _Services(LocalEndpoints(ws_base, _base(state.http_url), state.aws_endpoint), None, keys)
        return
    from tidings.local.aws import AwsServices

    services = AwsServices(port=0)
    try:
        endpoint = await asyncio.to_thread(services.start_server)
        # nothing listens for WebSockets or HTTP during a lone invoke: the URLs only fill the template
        yield _Services(LocalEndpoints("ws://127.0.0.1:9", "http://127.0.0.1:9", endpoint), services, None)
    finally:
        services.stop()


async def invoke(args: argparse.Namespace, event: dict[str, Any]) -> tuple[Invocation, bool]:
    """Run the function; returns its invocation and whether a running stack served it."""
    from tidings.local.functions import FunctionRunner
    from tidings.local.stack import samconfig_options

    overrides, env_vars = samconfig_options(args.template, args.config_env, args.env_vars)
    for item in args.parameter_overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvokeError(f"--parameter-overrides takes KEY=VALUE, not {item!r}")
        overrides[key] = value
    async with _services(args.template) as services:
        app = load_app(args.template, services.endpoints, parameter_overrides=overrides)
        _apply_env_vars(app, env_vars)
        if services.own is not None:
            from tidings.local.aws_guard import issue_app_credentials

            # the function's own role, checked by the embedded services as tidings dev does
            issued = issue_app_credentials(services.own.credentials, app, strict=False)
            keys = {function_id: key.environment() for function_id, key in issued.functions.items()}
            await asyncio.to_thread(services.own.create_resources, app)
        else:
            # the running stack issued its functions' keys in its own process: this call signs with
            # the stack's developer keys (from its state file), so its role is not checked
            developer = services.developer_keys
            keys = {function_id: developer for function_id in app.functions} if developer else {}
        runner = FunctionRunner(app, services.endpoints.aws_endpoint, watch=False, credentials=keys)
        async with runner:
            function_id = runner.function_id_for(args.function)
            if function_id is None:
                known = ", ".join(sorted(app.functions)) or "none"
                raise InvokeError(f"no function {args.function!r} in {args.template} (functions: {known})")
            invocation = await runner.invoke(function_id, event, source="tidings invoke")
    return invocation, services.own is None


def _apply_env_vars(app: LocalApp, env_vars: dict[str, dict[str, str]]) -> None:
    for logical_id, function in app.functions.items():
        environment = samconfig.function_environment(function, env_vars)
        app.functions[logical_id] = dataclasses.replace(function, environment=environment)


def report(invocation: Invocation, out: IO[str], err: IO[str]) -> int:
    """Logs to `err`, then the result (or Lambda's error object) as JSON to `out`."""
    if invocation.logs:
        err.write(invocation.logs if invocation.logs.endswith("\n") else invocation.logs + "\n")
    state = "cold" if invocation.cold else "warm"
    err.write(
        f"REPORT RequestId: {invocation.request_id}  Duration: {invocation.duration_ms:.2f} ms  ({state})\n"
    )
    if invocation.ok:
        out.write(json.dumps(invocation.result) + "\n")
        return 0
    error: dict[str, Any] = {"errorMessage": invocation.error_message, "errorType": invocation.error_type}
    if invocation.traceback:
        error["stackTrace"] = invocation.traceback.splitlines()
    out.write(json.dumps(error) + "\n")
    return 1


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        event = read_event(args.event, sys.stdin)
        invocation, shared = asyncio.run(invoke(args, event))
    except (InvokeError, samconfig.ConfigError, TemplateError) as exc:
        print(f"tidings invoke: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tidings invoke: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    where = "the running local stack" if shared else "embedded services started for this call"
    print(f"tidings invoke: {invocation.function_id} against {where}", file=sys.stderr)
    return report(invocation, sys.stdout, sys.stderr)
