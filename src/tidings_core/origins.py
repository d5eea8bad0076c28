"""The `$connect` Origin allow-list (`ALLOWED_ORIGINS`).

Browsers always send `Origin` on a WebSocket handshake and let any page open a socket to any
host, so a stolen or ambient token could be used from a hostile page; the allow-list refuses
those pages. Clients that send no `Origin` (wscat, the CLI, servers) are not browsers and are
allowed: the header is a browser's statement, not an authentication.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

ANY_ORIGIN = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidOrigin(ValueError):
    """An origin that is not `scheme://host[:port]`."""


def normalize_origin(value: str) -> str:
    """`scheme://host[:port]` with scheme and host lower-cased and a default port dropped.

    Raises InvalidOrigin for anything with a path, query, user info or no host (an `Origin` is
    never more than that, and an allow-list entry with a path would silently never match).
    """
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidOrigin(f"not an origin: {text!r}") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        raise InvalidOrigin(f"not an http(s) origin: {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidOrigin(f"an origin has no path, query or fragment: {text!r}")
    if ":" in host:  # IPv6 literal keeps its brackets
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Which browser origins may open a connection; `any_origin` when the list holds `*`."""

    any_origin: bool
    origins: frozenset[str]

    @classmethod
    def parse(cls, value: str | None) -> OriginPolicy:
        """From a comma-separated list; empty or unset means `*`. Raises InvalidOrigin on a bad entry."""
        entries = [entry.strip() for entry in (value or "").split(",") if entry.strip()]
        if not entries or ANY_ORIGIN in entries:
            return cls(any_origin=True, origins=frozenset())
        return cls(any_origin=False, origins=frozenset(normalize_origin(entry) for entry in entries))

    def allows(self, origin: str | None) -> bool:
        """True for no Origin (not a browser), for `*`, and for an exact listed origin."""
        if origin is None:
            return True
        if self.any_origin:
            return True
        try:
            return normalize_origin(origin) in self.origins
        except InvalidOrigin:
            return False  # "null" (sandboxed pages, file://) and garbage are never listed origins


def origin_header(headers: Mapping[str, str] | None) -> str | None:
    """The request's `Origin` value (any header case); None when absent."""
    for key, value in (headers or {}).items():
        if key.lower() == "origin":
            return value
    return None


@functools.cache
def policy_from_env() -> OriginPolicy:
    """The container's policy from `ALLOWED_ORIGINS` (default `*`), parsed once."""
    return OriginPolicy.parse(os.environ.get("ALLOWED_ORIGINS", ANY_ORIGIN))
