"""Which requests the local stack answers: the `Host` it serves, the `Origin` of changes, the peer.

Pure decisions (no I/O), fed by thin shells on every port the stack opens: the HTTP server
(http.py), the WebSocket handshake (gateway.py) and the embedded AWS endpoint (moto_server.py).

- **DNS rebinding**: a page at `http://evil.test:3000` whose name the attacker re-points at
  127.0.0.1 reaches the stack with `Host: evil.test:3000`. Only the names the stack serves pass:
  127.0.0.1, localhost, [::1], the `--host` given, each with the port of that server. An IP literal
  cannot be rebound, so with a wildcard bind (`--host 0.0.0.0`) any IP literal passes too.
- **Cross-site changes**: a state-changing request (not GET/HEAD/OPTIONS) on the stack's own
  paths that carries an `Origin` must come from one of the stack's own pages.
- **This machine only**: some paths (token minting, the console, fault control) answer only to a
  peer on this machine, whatever `--host` exposes.

`HostPolicy.with_rule` adds an allowance (a `HostRule`) without touching the rest, e.g. "the
execute-api host, on the `@connections` path, from the stack's own workers".
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class HostRequest:
    """What a shell knows about one request (header names as sent; look-ups ignore case)."""

    method: str
    path: str
    host: str | None
    origin: str | None = None
    peer: str | None = None  # the client's address
    local: str | None = None  # the address the connection arrived on
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    status: int = 200
    reason: str = ""


ALLOWED = Verdict(True)
HostRule = Callable[[HostRequest], bool]


def parse_authority(value: str | None, scheme: str = "http") -> tuple[str, int] | None:
    """`Host`/authority → (lower-case name without brackets, port); None when malformed."""
    if not value or any(ch in value for ch in "/\\@?# \t"):
        return None
    try:
        parts = urlsplit(f"{scheme}://{value}")
        port = parts.port
    except ValueError:
        return None
    name = parts.hostname
    if not name:
        return None
    return name.lower(), port if port is not None else DEFAULT_PORTS.get(scheme, 80)


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """`Origin` → (scheme, name, port); None for `null` or anything malformed."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[parts.scheme]


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def is_this_machine(peer: str | None, local: str | None) -> bool:
    """The client runs on this machine: a loopback address, or the very address it connected to."""
    return is_loopback(peer) or (peer is not None and local is not None and peer == local)


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in WILDCARD_HOSTS


def browser_host(bind_host: str) -> str:
    """The name to print in URLs: a wildcard bind is reachable at 127.0.0.1, which a browser can use."""
    if is_wildcard(bind_host):
        return "127.0.0.1"
    name = bind_host.strip("[]")
    return f"[{name}]" if ":" in name else name


@dataclass(frozen=True)
class HostPolicy:
    """The hosts one server answers to.

    `port`: the port this server listens on (the `Host` must name it). `origin_ports`: the ports of
    the stack's pages whose changes this server accepts (default: its own port). `local_only`: path
    prefixes answered only to this machine. `origin_checked`: path prefixes where a state-changing
    request with an `Origin` must come from the stack's pages (empty tuple: none; `("/",)`: all).
    """

    port: int
    bind_host: str = "127.0.0.1"
    extra_names: frozenset[str] = frozenset()  # e.g. this machine's name when bound to a wildcard
    origin_ports: frozenset[int] = frozenset()
    local_only: tuple[str, ...] = ()
    origin_checked: tuple[str, ...] = ("/",)
    rules: tuple[HostRule, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        names = set(LOOPBACK_NAMES) | {name.lower() for name in self.extra_names}
        if not is_wildcard(self.bind_host):
            names.add(self.bind_host.strip("[]").lower())
        return frozenset(names)

    def with_rule(self, rule: HostRule) -> HostPolicy:
        """This policy, also allowing what `rule` allows (a request `rule` returns True for)."""
        return dataclasses.replace(self, rules=(*self.rules, rule))

    def serves_name(self, name: str) -> bool:
        if name in self.names:
            return True
        return is_wildcard(self.bind_host) and is_ip_literal(name)

    def serves_host(self, host: str | None, scheme: str = "http") -> bool:
        authority = parse_authority(host, scheme)
        return authority is not None and authority[1] == self.port and self.serves_name(authority[0])

    def serves_origin(self, origin: str) -> bool:
        parsed = parse_origin(origin)
        if parsed is None or parsed[0] not in ("http", "ws"):
            return False
        ports = self.origin_ports | {self.port}
        return parsed[2] in ports and self.serves_name(parsed[1])

    def check(self, request: HostRequest, scheme: str = "http") -> Verdict:
        """Allowed, or the status and one-line reason to answer with."""
        if any(rule(request) for rule in self.rules):
            return ALLOWED
        if not self.serves_host(request.host, scheme):
            shown = (request.host or "")[:100] or "(none)"
            return Verdict(False, 403, f"this server does not answer to Host {shown}")
        if _under(request.path, self.local_only) and not is_this_machine(request.peer, request.local):
            return Verdict(False, 403, "this path answers only to this machine")
        changes = request.method.upper() not in SAFE_METHODS
        origin = request.origin
        checked = changes and origin is not None and _under(request.path, self.origin_checked)
        if checked and origin is not None and not self.serves_origin(origin):
            return Verdict(False, 403, "changes are accepted only from the stack's own pages")
        return ALLOWED


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    """`/console` covers `/console` and `/console/...`, not `/consoles`; `/` covers everything."""
    for prefix in prefixes:
        bare = prefix.rstrip("/")
        if path == bare or path.startswith(bare + "/"):
            return True
    return False
