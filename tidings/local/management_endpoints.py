"""The `@connections` management API at the hosts handlers build themselves, for the functions only.

The documented way to reply over a WebSocket builds the endpoint from the event:
`https://{requestContext.domainName}/{stage}`, `https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`,
or a custom domain's `https://{domain}/{mapping key}`. Locally those names must reach this stack,
from any runtime and any SDK, without editing the user's code and with TLS verified. So:

- a local certificate authority of the run (local_ca.py) signs one certificate for the served
  API's execute-api host and each custom domain mapped to it;
- a TLS listener on a free loopback port serves only the management routes, with the HTTP port's
  handler and guard, the guard taking only the functions' role sessions;
- every worker's environment (`worker_environment`) says which hosts go to that port
  (`_TIDINGS_HOST_REDIRECTS`, which each runtime's bootstrap applies: worker.py for Python) and
  trusts the authority: `AWS_CA_BUNDLE` (botocore), `REQUESTS_CA_BUNDLE` (requests, which
  otherwise reads only certifi), `SSL_CERT_FILE` (OpenSSL's default store: urllib, http.client,
  httpx, aiohttp) name the authority plus the public roots, so other HTTPS still verifies;
  `NODE_EXTRA_CA_CERTS` names the authority alone (Node adds it to its own roots).

Host checks (hosts.py): the listener answers only to these hosts on port 443, on a management
path, from a loopback peer, without an `Origin` (a browser sends one on every cross-origin
POST), signed by a function's role. Those hosts stay refused on the HTTP and WebSocket ports.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from tidings.local.gateway import Gateway
from tidings.local.hosts import HostPolicy, HostRequest, HostRule, is_loopback, parse_authority
from tidings.local.http import ManagementAuth, host_check, management_handler
from tidings.local.local_ca import LocalAuthority, public_roots_pem, server_context, trust_bundle
from tidings.local.model import DomainMapping, WebSocketApi
from tidings.local.worker import REDIRECTED_PORT, REDIRECTS_VARIABLE

LISTEN_HOST = "127.0.0.1"  # the workers run on this machine; nothing else may reach this port
_MANAGEMENT_PATH = re.compile(r"(?:/[^/]+)*/@connections/[^/]+")


def execute_api_host(api: WebSocketApi) -> str:
    return f"{api.api_id}.execute-api.{api.region}.amazonaws.com".lower()


@dataclass(frozen=True)
class ManagementHosts:
    """The hosts that serve one API stage's management API, and the stage each base path names."""

    api_host: str
    mappings: tuple[DomainMapping, ...] = ()

    @classmethod
    def of(cls, api: WebSocketApi, mappings: Iterable[DomainMapping]) -> ManagementHosts:
        """The API's execute-api host, and the custom domains mapped to its served stage."""
        mine = tuple(m for m in mappings if m.api_id == api.api_id and m.stage == api.stage)
        return cls(execute_api_host(api), mine)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([self.api_host, *(m.domain_name for m in self.mappings)]))

    def stage_for(self, host: str | None, base: str) -> str | None:
        """The stage `https://{host}/{base}/@connections/...` names; None: no stage it serves.

        On the execute-api host the base path is the stage itself (the handler then refuses any
        stage but the served one, as for the HTTP port); on a custom domain it is a mapping key."""
        authority = parse_authority(host, "https")
        if authority is None or authority[1] != REDIRECTED_PORT:
            return None
        name = authority[0]
        if name == self.api_host:
            return base or None
        for mapping in self.mappings:
            if mapping.domain_name == name and mapping.key == base:
                return mapping.stage
        return None


def is_management_path(path: str) -> bool:
    """`/{base...}/@connections/{id}` or `/@connections/{id}`."""
    return _MANAGEMENT_PATH.fullmatch(path) is not None


def workers_only(names: Iterable[str]) -> HostRule:
    """A `HostPolicy` rule: `names` (on 443), on a management path, from this machine, not a page."""
    served = frozenset(name.lower() for name in names)

    def allows(request: HostRequest) -> bool:
        authority = parse_authority(request.host, "https")
        return (
            authority is not None
            and authority == (authority[0], REDIRECTED_PORT)
            and authority[0] in served
            and is_management_path(request.path)
            and request.origin is None
            and is_loopback(request.peer)
        )

    return allows


def worker_environment(
    redirects: Mapping[str, int], authority_file: Path, bundle_file: Path
) -> dict[str, str]:
    """What every worker's environment gets, whatever its runtime (the contract its bootstrap reads)."""
    return {
        REDIRECTS_VARIABLE: json.dumps({name.lower(): port for name, port in sorted(redirects.items())}),
        "AWS_CA_BUNDLE": str(bundle_file),
        "REQUESTS_CA_BUNDLE": str(bundle_file),
        "SSL_CERT_FILE": str(bundle_file),
        "NODE_EXTRA_CA_CERTS": str(authority_file),
    }


class WorkerTrust:
    """What the workers need before they start: the listening socket (so its port is known), the
    certificate for the hosts, and the files their environment names. `close()` removes them."""

    def __init__(self, hosts: ManagementHosts) -> None:
        self.hosts = hosts
        self.folder = Path(tempfile.mkdtemp(prefix="tidings-tls-"))  # 0700
        try:
            authority = LocalAuthority()
            authority_file = self.folder / "local-ca.pem"
            bundle_file = self.folder / "ca-bundle.pem"
            authority_file.write_bytes(authority.certificate_pem)
            bundle_file.write_bytes(trust_bundle(authority.certificate_pem, public_roots_pem()))
            self.context: ssl.SSLContext = server_context(authority.issue(hosts.names), self.folder)
            self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.socket.bind((LISTEN_HOST, 0))
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self.port = int(self.socket.getsockname()[1])
        self.environment = worker_environment(
            dict.fromkeys(hosts.names, self.port), authority_file, bundle_file
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def build_management_app(
    hosts: ManagementHosts, gateway: Gateway, auth: ManagementAuth, port: int
) -> web.Application:
    """Only the management routes; only the functions' requests for `hosts` pass the host check."""

    def stage_of(request: web.Request) -> str | None:
        return hosts.stage_for(request.headers.get("Host"), request.match_info.get("base", ""))

    policy = HostPolicy(port=port, bind_host=LISTEN_HOST, origin_checked=("/",)).with_rule(
        workers_only(hosts.names)
    )
    app = web.Application(middlewares=[host_check(policy)])
    handler = management_handler(gateway, auth, stage_of)
    for method in ("POST", "GET", "DELETE"):
        app.router.add_route(method, "/{base:.+}/@connections/{connection_id}", handler)
        app.router.add_route(method, "/@connections/{connection_id}", handler)
    return app


class ManagementListener:
    """The TLS listener of `trust`, serving `gateway`'s management API until `stop()`."""

    def __init__(self, trust: WorkerTrust, runner: web.AppRunner) -> None:
        self.trust = trust
        self.runner = runner

    @property
    def port(self) -> int:
        return self.trust.port

    @classmethod
    async def start(cls, trust: WorkerTrust, gateway: Gateway, auth: ManagementAuth) -> ManagementListener:
        app = build_management_app(trust.hosts, gateway, auth, trust.port)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.SockSite(runner, trust.socket, ssl_context=trust.context).start()
        except BaseException:
            await runner.cleanup()
            raise
        return cls(trust, runner)

    async def stop(self) -> None:
        await self.runner.cleanup()
        self.trust.close()
