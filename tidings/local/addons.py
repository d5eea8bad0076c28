"""The narrow interface add-ons get from the local stack: the console, fault injection, an app's tools.

An add-on is an object with `name` and `install(host)`; the stack calls `install` once its
servers and workers exist and before the HTTP server takes requests. Everything an add-on may
touch is on `StackHost`: it never reaches into the stack's parts, and nothing is wired by a
module name. An add-on that does not apply to the template (e.g. an app's own tools on another
app) simply registers nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiohttp import web

from tidings.local.aws import InterceptMatch, Interceptor
from tidings.local.aws_guard import Denial
from tidings.local.gateway import PostWrapper
from tidings.local.model import Invocation, LocalApp

# (invocation, function logical id, trigger, event)
InvocationListener = Callable[[Invocation, str, str, dict[str, Any]], Any]
# (kind: connect | disconnect | message | post | close | reject ..., details)
GatewayListener = Callable[[str, dict[str, Any]], Any]
DeniedListener = Callable[[Denial], Any]
StopHook = Callable[[], Awaitable[None]]
ReadyTask = Callable[[], Awaitable[None]]


class Connections(Protocol):
    """The WebSocket API's live connections, or none when the template has no WebSocket API."""

    @property
    def present(self) -> bool:
        """Whether the template has a WebSocket API served by this stack."""
        ...

    def connections(self) -> list[dict[str, Any]]: ...

    def delete(self, connection_id: str) -> int:
        """DeleteConnection: 204, or 410 when the connection is already gone."""
        ...

    def wrap_post(self, wrapper: PostWrapper) -> None:
        """Put `wrapper` in front of PostToConnection (the `@connections` POST)."""
        ...


class StackHost(Protocol):
    """What a running stack offers its add-ons."""

    @property
    def app(self) -> LocalApp:
        """The resolved template: functions, APIs, tables, parameters, environment."""
        ...

    @property
    def websocket_url(self) -> str | None: ...

    @property
    def http_url(self) -> str: ...

    @property
    def http_api_url(self) -> str | None:
        """The template's HTTP API on the HTTP port, when it has one."""
        ...

    @property
    def site_url(self) -> str | None:
        """The static site (bucket Metadata LocalSite), when the template has one."""
        ...

    @property
    def gateway(self) -> Connections: ...

    def say(self, line: str) -> None:
        """One line on the stack's terminal."""
        ...

    def add_routes(self, prefix: str, routes: Iterable[web.RouteDef], *, purpose: str) -> None:
        """Serve `routes` (paths relative to `prefix`) on the HTTP port, to this machine only and,
        for changes, only from the stack's own pages; `purpose` names them in the `--host` warning."""
        ...

    def advertise(self, label: str, path: str) -> None:
        """Print `label: <http url><path>` with the stack's URLs when it is ready."""
        ...

    def on_invocation(self, listener: InvocationListener) -> None: ...

    def on_gateway_event(self, listener: GatewayListener) -> None: ...

    def on_denied(self, listener: DeniedListener) -> None:
        """Called with each AWS call IAM refused a function (on the AWS endpoint's threads too)."""
        ...

    def on_stop(self, hook: StopHook) -> None:
        """Run `hook` when the stack stops, before its servers and workers go."""
        ...

    def when_ready(self, task: ReadyTask) -> None:
        """Start `task` once `tidings dev` has printed that it is ready; cancelled at stop."""
        ...

    def set_state(self, name: str, value: str | None) -> None:
        """A field of the state file `tidings dev` writes for the command-line tools."""
        ...

    def admin_client(self, service: str) -> Any:
        """A boto3 client for the embedded AWS services with this run's admin key."""
        ...

    def intercept_aws(self, interceptor: Interceptor, match: InterceptMatch) -> None:
        """Answer some embedded-AWS requests before the services do (behind the signature and IAM
        checks): those `match` takes (decided in the AWS process, which sends them here)."""
        ...

    async def invoke(self, function_id: str, event: dict[str, Any], *, source: str) -> Invocation:
        """Run one of the template's functions, announced to the invocation listeners."""
        ...

    def busy_worker_pids(self, function_id: str) -> list[int]:
        """Process ids of the function's workers inside an invocation now."""
        ...


class AddOn(Protocol):
    name: str

    def install(self, host: StackHost) -> None: ...
