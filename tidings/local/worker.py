"""The process one local function runs in, like a Lambda execution environment.

Started by `functions.py` by file path (`pythonX.Y -I -S -u -B .../worker.py`) on the interpreter
the function's `Runtime` names, with the function's environment; `TIDINGS_WORKER_SYS_PATH` lists
what it may import (code folder, layers, its package folder). It imports the handler once
(warm), then serves invocations one at a time over stdin/stdout with length-prefixed JSON
frames. An init frame (`{"init": true}`) imports the handler ahead of any invocation (Lambda's
proactive initialization, see functions.py) and answers `{"ok": true, "init_ms": ...}` or the
error the first invocation would have reported. What the handler prints or logs during an
invocation goes back with that invocation's response. Standard library only (it runs outside
the tidings package, on any Python 3.9+): nothing here may shadow or preload what the function imports.

Endpoints a handler builds itself (`https://{requestContext.domainName}/{stage}`, the API id host,
a custom domain) reach the local stack: before the handler is imported, `socket.getaddrinfo`
sends a connection to (a host named in `_TIDINGS_HOST_REDIRECTS`, 443) to the loopback port that
variable gives (management_endpoints.py serves it with a certificate of the run's local CA, which
`AWS_CA_BUNDLE`/`SSL_CERT_FILE` trust). The TLS server name and the certificate check stay on the
original host; every SDK that resolves names through the socket module follows it.
"""

from __future__ import annotations

import decimal
import importlib
import io
import json
import logging
import os
import socket
import struct
import sys
import time
import traceback
from typing import Any, BinaryIO, TextIO

FRAME_HEADER = struct.Struct(">I")
SYS_PATH_VARIABLE = "TIDINGS_WORKER_SYS_PATH"
# {"abc123.execute-api.us-east-1.amazonaws.com": 45123, ...}: (host, 443) → (127.0.0.1, port)
REDIRECTS_VARIABLE = "_TIDINGS_HOST_REDIRECTS"
REDIRECTED_PORT = 443
LOOPBACK = "127.0.0.1"


def parse_redirects(text: str | None) -> dict[str, int]:
    """`_TIDINGS_HOST_REDIRECTS` → {lower-case host: port}; anything malformed is left out."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        str(host).lower().rstrip("."): port
        for host, port in raw.items()
        if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
    }


def redirect_target(host: Any, port: Any, redirects: dict[str, int]) -> tuple[str, int] | None:
    """Where a connection to (`host`, `port`) goes instead, or None for where it was going.

    `host`/`port` as `socket.getaddrinfo` takes them: text or bytes, a number, a numeric string or
    a service name. Only the HTTPS port of a redirected host moves."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str) or not redirects:
        return None
    if isinstance(port, bytes):
        port = port.decode("ascii", "replace")
    if isinstance(port, str):
        port = REDIRECTED_PORT if port == "https" else int(port) if port.isdigit() else None
    if port != REDIRECTED_PORT:
        return None
    target = redirects.get(host.lower().rstrip("."))
    return None if target is None else (LOOPBACK, target)


def install_redirects(redirects: dict[str, int]) -> None:
    """Resolve the redirected hosts to the loopback port (everything else as before)."""
    if not redirects:
        return
    resolve = socket.getaddrinfo

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        target = redirect_target(host, port, redirects)
        if target is None:
            return resolve(host, port, family, type, proto, flags)
        # the listener is on IPv4 loopback, whatever family the caller would have liked
        return resolve(target[0], target[1], socket.AF_INET, type, proto, flags)

    socket.getaddrinfo = getaddrinfo


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (length,) = FRAME_HEADER.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    message: dict[str, Any] = json.loads(body)
    return message


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return FRAME_HEADER.pack(len(body)) + body


class InvocationOutput(io.TextIOBase):
    """sys.stdout/sys.stderr for the handler: collects what one invocation writes.

    It stays the same object for the life of the worker, so loggers that keep a reference to
    sys.stdout from import time (Powertools does) still write into the current invocation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def writable(self) -> bool:
        return True

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        return text

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False


class LambdaContext:
    """The attributes and method Lambda's Python runtime gives handlers."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.aws_request_id: str = request["request_id"]
        self.function_name: str = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version: str = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn: str = request.get("function_arn", "")
        self.memory_limit_in_mb: str = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name: str = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name: str = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline_ms: int = int(request["deadline_ms"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class _RequestIdFilter(logging.Filter):
    """Lambda's log lines carry the request id; this fills `aws_request_id` for the formatter."""

    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class Worker:
    def __init__(self, output: InvocationOutput) -> None:
        self.output = output
        self.handler: Any = None
        self.request_ids = _RequestIdFilter()
        handler = logging.StreamHandler(output)
        handler.setFormatter(
            logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s")
        )
        handler.addFilter(self.request_ids)
        root = logging.getLogger()
        root.handlers = [handler]
        root.setLevel(logging.WARNING)  # Lambda's default root level

    def load_handler(self) -> Any:
        module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
        module = importlib.import_module(module_name.replace("/", "."))
        handler = getattr(module, function_name, None)
        if handler is None:
            raise AttributeError(f"Handler '{function_name}' missing on module '{module_name}'")
        return handler

    def _ensure_handler(self) -> Any:
        """The handler, imported on first need; an import failure as Lambda's runtime reports it."""
        if self.handler is None:
            try:
                self.handler = self.load_handler()
            except Exception as error:
                module_name = os.environ["_HANDLER"].rpartition(".")[0]
                error_type = "Runtime.HandlerNotFound" if isinstance(error, AttributeError) else None
                raise _InitError(
                    error_type or "Runtime.ImportModuleError",
                    f"Unable to import module '{module_name}': {error}" if error_type is None else str(error),
                ) from error
        return self.handler

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """One frame: an init request (`{"init": true}`) or an invocation."""
        return self.initialize() if request.get("init") else self.invoke(request)

    def initialize(self) -> dict[str, Any]:
        """Import the handler without invoking it (a proactively initialized environment): the
        next invocation is warm. What the import printed stays for that invocation's logs; a
        failure answers as an invocation would (and the runner discards this worker)."""
        self.request_ids.request_id = ""
        started = time.perf_counter()
        response: dict[str, Any]
        try:
            self._ensure_handler()
            response = {"ok": True}
        except _InitError as error:
            response = _error_response(error.error_type, error.message, error.__cause__ or error)
            sys.stdout.flush()
            response["logs"] = self.output.take()
        response["init_ms"] = (time.perf_counter() - started) * 1000
        return response

    def invoke(self, request: dict[str, Any]) -> dict[str, Any]:
        self.request_ids.request_id = request["request_id"]
        started = time.perf_counter()
        cold = self.handler is None
        response: dict[str, Any]
        try:
            self._ensure_handler()
            result = self.handler(request["event"], LambdaContext(request))
            try:
                encoded = json.loads(json.dumps(result, default=_json_default))
            except (TypeError, ValueError) as error:
                raise _InitError("Runtime.MarshalError", f"Unable to marshal response: {error}") from error
            response = {"ok": True, "result": encoded}
        except _InitError as error:
            response = _error_response(error.error_type, error.message, error.__cause__ or error)
        except Exception as error:
            response = _error_response(type(error).__name__, str(error), error)
        sys.stdout.flush()
        response["logs"] = self.output.take()
        response["duration_ms"] = (time.perf_counter() - started) * 1000
        response["cold"] = cold
        return response


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def _error_response(error_type: str, message: str, error: BaseException) -> dict[str, Any]:
    stack = traceback.format_exception(type(error), error, error.__traceback__)
    print(f"[ERROR] {error_type}: {message}", file=sys.stderr)
    return {"ok": False, "errorType": error_type, "errorMessage": message, "stackTrace": stack}


def main() -> None:
    # Frames travel on the original stdout; the handler's fd 1 goes to stderr so stray C-level
    # output cannot corrupt the protocol.
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    protocol_in = sys.stdin.buffer
    for entry in reversed([path for path in os.environ.get(SYS_PATH_VARIABLE, "").split(os.pathsep) if path]):
        sys.path.insert(0, entry)
    os.environ.pop(SYS_PATH_VARIABLE, None)
    install_redirects(parse_redirects(os.environ.get(REDIRECTS_VARIABLE)))
    output = InvocationOutput()
    handler_output: TextIO = output  # type: ignore[assignment]
    sys.stdout = handler_output
    sys.stderr = handler_output
    worker = Worker(output)
    while True:
        request = read_frame(protocol_in)
        if request is None:
            return
        protocol_out.write(encode_frame(worker.handle(request)))


if __name__ == "__main__":
    main()
