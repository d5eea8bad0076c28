"""Identifiers shaped like API Gateway's: connection, request and message ids.

AWS ids such as `BFaT_fALIAMCKug=` are 16 characters: URL-safe base64 of 11 bytes, so they
always end in `=`. Handlers that percent-encode them (`%3D`) must be exercised locally too.
"""

from __future__ import annotations

import base64
import os
import string
from collections.abc import Callable

ID_BYTES = 11
_URLSAFE_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_")

RandomBytes = Callable[[int], bytes]


def new_id(random_bytes: RandomBytes = os.urandom) -> str:
    """A 16-character id in API Gateway's format (connection, request, message ids)."""
    return base64.urlsafe_b64encode(random_bytes(ID_BYTES)).decode("ascii")


def is_connection_id(value: str) -> bool:
    """True when `value` has the shape of an id made by `new_id`."""
    if len(value) != 16 or not value.endswith("=") or not set(value[:-1]) <= _URLSAFE_ALPHABET:
        return False
    try:
        return len(base64.urlsafe_b64decode(value.encode("ascii"))) == ID_BYTES
    except ValueError:
        return False


def trace_id(epoch_s: float, random_bytes: RandomBytes = os.urandom) -> str:
    """An `X-Amzn-Trace-Id` value: `Root=1-{epoch hex}-{24 hex digits}`."""
    return f"Root=1-{int(epoch_s):08x}-{random_bytes(12).hex()}"
