"""moto's server for the embedded AWS endpoint: bound before it is started, behind the host check.

moto's `ThreadedMotoServer` binds inside its thread and waits for an event that a failed bind
never sets (after werkzeug printed the error and called `sys.exit` in that thread), so a taken
port hung `tidings dev` and its signal handlers never ran. Here the socket is bound in the
caller's thread, so a taken port raises `OSError` at once, like the
WebSocket and HTTP servers; only `serve_forever` runs in the thread. Requests pass through
`hosts.py`'s policy first (DNS rebinding; the server's gate, on the head: a refused request's
body is never read), then the optional `wrap` (another add-on, e.g. a signature check), then
moto's dispatcher.

The HTTP server is `wsgi_server.WsgiServer` (keep-alive, httptools), not werkzeug's dev server,
which answered each request on a new connection and thread and cost the AWS process about twice
the CPU per small call (see wsgi_server.py). `keep_metadata_names` does what moto's own request
handler for werkzeug does: S3 metadata names with an underscore reach moto as sent.

moto's dispatcher resolves each request's backend with `get_backend_for_host`, which lists
and stats moto's ~200 package folders every time, under a lock shared by every request: in a
local fan-out of 1,000 that was half the samples taken inside moto (bench/sampler.py). The
answer depends on the host string alone, so `dispatcher()` memoizes it per host.

Pinned moto names (tests/unit/local/test_moto_server.py fails loudly when they move):
`moto.moto_server.werkzeug_app.DomainDispatcherApplication` (and its `get_backend_for_host`),
`create_backend_app`; `moto.core.request.PRESERVED_HEADER_NAMES_ENVIRON_KEY`,
`environ_key_for_header`, `should_preserve_original_header_name`.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from tidings.local.hosts import HostPolicy, HostRequest
from tidings.local.wsgi_server import WsgiServer

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_host_request(environ: dict[str, Any]) -> HostRequest:
    headers = {
        key[5:].replace("_", "-").title(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    return HostRequest(
        method=str(environ.get("REQUEST_METHOD", "GET")),
        path=str(environ.get("PATH_INFO", "/")),
        host=environ.get("HTTP_HOST"),
        origin=environ.get("HTTP_ORIGIN"),
        peer=environ.get("REMOTE_ADDR"),
        local=environ.get("SERVER_NAME"),
        headers=headers,
    )


def host_gate(policy: HostPolicy) -> Callable[[dict[str, Any]], WsgiApp | None]:
    """`WsgiServer`'s gate: None for a request the policy allows, else the application answering
    403 for its Host (or change's Origin). It runs on the head, before the body is read."""

    def gate(environ: dict[str, Any]) -> WsgiApp | None:
        verdict = policy.check(wsgi_host_request(environ))
        if verdict.allowed:
            return None
        body = json.dumps({"__type": "AccessDeniedException", "message": verdict.reason}).encode()

        def refused(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            start_response(
                f"{verdict.status} Forbidden",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]

        return refused

    return gate


def host_checked(app: WsgiApp, policy: HostPolicy) -> WsgiApp:
    """WSGI middleware: 403 for a Host (or change's Origin) the policy refuses, else `app` (for a
    server without a gate; `WsgiServer` takes `host_gate`, which refuses before the body)."""
    gate = host_gate(policy)

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refused = gate(environ)
        return (app if refused is None else refused)(environ, start_response)

    return checked


def dispatcher() -> WsgiApp:
    """moto's WSGI dispatcher, its host-to-backend lookup memoized (bounded: hosts come from requests)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    class Dispatcher(DomainDispatcherApplication):
        def __init__(self) -> None:
            super().__init__(create_backend_app)
            self._backend_for = functools.lru_cache(maxsize=256)(super().get_backend_for_host)

        def get_backend_for_host(self, host: str | None) -> Any:
            return self._backend_for(host)

    return Dispatcher()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` (0: a free port); a taken port raises OSError with one line.

    Bound here rather than by werkzeug, which prints and calls sys.exit(1) when the port is taken.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise OSError(
            exc.errno, f"AWS endpoint: cannot listen on {host}:{port}: {os.strerror(exc.errno or 0)}"
        ) from None


def keep_metadata_names(environ: dict[str, Any], headers: list[tuple[str, str]]) -> None:
    """moto's `MotoRequestHandler.make_environ`, for `WsgiServer`: S3 metadata names with an
    underscore (`x-amz-meta-my_key`), which the server leaves out, go back into the environ, with
    their names as sent under moto's `PRESERVED_HEADER_NAMES_ENVIRON_KEY` (moto's own helpers
    decide which); never in place of a dashed header of the same WSGI name."""
    from moto.core.request import (
        PRESERVED_HEADER_NAMES_ENVIRON_KEY,
        environ_key_for_header,
        should_preserve_original_header_name,
    )

    names: dict[str, str] = {}
    environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = names
    if not any("_" in name for name, _ in headers):  # moto keeps only names with an underscore
        return
    values: dict[str, list[str]] = {}
    dashed = {environ_key_for_header(name) for name, _ in headers if "_" not in name}
    for name, value in headers:
        if not should_preserve_original_header_name(name):
            continue
        key = environ_key_for_header(name)
        if key in dashed:
            continue
        names.setdefault(key, name)
        values.setdefault(key, []).append(value)
    for key, key_values in values.items():
        environ[key] = ",".join(key_values)


class MotoServer:
    """moto's WSGI dispatcher on `host:port` (0: a free one), bound on construction: a taken port
    raises OSError here; or on `listening`, a socket `bind` gave (the AWS process gets it from the
    stack, which bound it). `hosts(port)` gives the host policy once the port is known."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        hosts: Callable[[int], HostPolicy] | None = None,
        wrap: Callable[[WsgiApp], WsgiApp] | None = None,
        listening: socket.socket | None = None,
    ) -> None:
        app: WsgiApp = dispatcher()
        if wrap is not None:
            app = wrap(app)
        if listening is None:
            listening = bind(host, port)
        self._server = WsgiServer(listening, app, headers_hook=keep_metadata_names)
        if hosts is not None:  # the policy names the port, known only once bound
            self._server.gate = host_gate(hosts(self.port))
        self._thread = threading.Thread(target=self._server.serve_forever, name="tidings-aws", daemon=True)
        self._stopped = False

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def get_host_and_port(self) -> tuple[str, int]:
        return self._server.server_address

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent; also for a server never started)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._server.server_close()
