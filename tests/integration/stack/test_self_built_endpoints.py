"""Endpoints a handler builds itself reach the local stack (issue 13, item 1).

The reply app's handler (reply_app/reply/app.py) posts back through the management API at
`https://{requestContext.domainName}/{stage}`, at `https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`
and at the template's custom domain, with boto3 and with plain urllib; nothing in the template
names a local URL. The hosts are served, TLS verified, only to the stack's own workers.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conftest import RunningStack, start_stack, stop_stack

REPLY_TEMPLATE = Path(__file__).parent / "reply_app" / "template.yaml"
CUSTOM_DOMAIN = "ws.reply-test.example"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def reply_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(REPLY_TEMPLATE, tmp_path_factory.mktemp("reply"))
    yield stack
    stop_stack(stack)


async def _exchange(stack: RunningStack, message: dict[str, Any]) -> Any:
    """Send one message; the first message that comes back."""
    async with websockets.connect(stack.websocket_url) as ws:
        await ws.send(json.dumps(message))
        return json.loads(await asyncio.wait_for(ws.recv(), 30))


async def _reply_via(stack: RunningStack, via: str) -> None:
    reply = await _exchange(stack, {"action": "reply", "via": via})
    assert reply == {"via": via}, stack.log_text()[-3000:]


async def test_reply_through_the_events_domain_name(reply_stack: RunningStack) -> None:
    await _reply_via(reply_stack, "domainName")


async def test_reply_through_the_api_id_host(reply_stack: RunningStack) -> None:
    await _reply_via(reply_stack, "apiId")


async def test_reply_through_the_custom_domain(reply_stack: RunningStack) -> None:
    await _reply_via(reply_stack, "custom")


async def test_reply_with_plain_urllib_signed_by_hand(reply_stack: RunningStack) -> None:
    await _reply_via(reply_stack, "urllib")


async def _inspect(stack: RunningStack) -> dict[str, Any]:
    reply = await _exchange(stack, {"action": "inspect"})
    assert isinstance(reply, dict)
    return reply


async def test_tls_is_verified_on_the_redirected_hosts(reply_stack: RunningStack) -> None:
    seen = await _inspect(reply_stack)
    # the served name verifies against the run's CA; another name on the same port does not, and
    # nor does the served name without the run's CA
    assert seen["servedName"] == "ok"
    assert seen["otherName"].startswith("refused") and "mismatch" in seen["otherName"]
    assert seen["withoutLocalCa"].startswith("refused")


def _served(stack: RunningStack) -> tuple[str, int, str, str]:
    """(execute-api host, TLS port, CA file, stage) as the worker's environment gives them."""
    seen = asyncio.run(_inspect(stack))
    redirects: dict[str, int] = seen["redirects"]
    [api_host] = [name for name in redirects if name.endswith(f".execute-api.{REGION}.amazonaws.com")]
    assert redirects[CUSTOM_DOMAIN] == redirects[api_host]
    return api_host, redirects[api_host], seen["caFile"], stack.websocket_url.rsplit("/", 1)[1]


class _Redirected(http.client.HTTPSConnection):
    """HTTPS to `host` (SNI and certificate check on it) over a connection to 127.0.0.1:`port`."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(host, 443, context=context, timeout=30)
        self._local_port = port

    def connect(self) -> None:
        raw = socket.create_connection(("127.0.0.1", self._local_port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def _signed(
    keys: dict[str, str], host: str, path: str, body: bytes = b"{}", **extra: str
) -> tuple[str, dict[str, str]]:
    # the Host header is sent as signed (http.client would otherwise name the port it connects to)
    request = AWSRequest(
        method="POST", url=f"https://{host}{path}", data=body, headers={"Host": host, **extra}
    )
    credentials = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
    SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    return path, dict(request.headers.items())


def _tls_post(port: int, ca_file: str, host: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    connection = _Redirected(host, port, ssl.create_default_context(cafile=ca_file))
    try:
        connection.request("POST", path, body=b"{}", headers=headers)
        answer = connection.getresponse()
        raw = answer.read()
    finally:
        connection.close()
    return answer.status, json.loads(raw) if raw else None


def test_the_tls_port_refuses_what_is_not_a_workers_management_call(reply_stack: RunningStack) -> None:
    api_host, port, ca_file, stage = _served(reply_stack)
    admin = reply_stack.admin_credentials()
    management = f"/{stage}/@connections/AAAAAAAAAAAAAAA%3D"
    # signed with the run's admin key (a developer's, not a function's): refused
    status, body = _tls_post(port, ca_file, api_host, *_signed(admin, api_host, management))
    assert (status, body) == (403, {"message": "Forbidden"})
    # unsigned: refused
    status, _ = _tls_post(port, ca_file, api_host, management, {"Host": api_host})
    assert status == 403
    # with an Origin (a page's request) or on another path: refused by the host check
    status, body = _tls_post(
        port, ca_file, api_host, *_signed(admin, api_host, management, Origin="https://evil.test")
    )
    assert status == 403 and "does not answer to Host" in body["message"]
    status, body = _tls_post(port, ca_file, api_host, *_signed(admin, api_host, f"/{stage}/other"))
    assert status == 403 and "does not answer to Host" in body["message"]


def test_the_http_and_websocket_ports_refuse_the_execute_api_host(reply_stack: RunningStack) -> None:
    api_host, _, _, stage = _served(reply_stack)
    admin = reply_stack.admin_credentials()
    http_port = int(reply_stack.http_url.rsplit(":", 1)[1])
    path, headers = _signed(admin, api_host, f"/{stage}/@connections/AAAAAAAAAAAAAAA%3D")
    connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
    try:
        connection.request("POST", path, body=b"{}", headers=headers)
        answer = connection.getresponse()
        assert answer.status == 403
        assert "does not answer to Host" in json.loads(answer.read())["message"]
    finally:
        connection.close()
    ws_port = int(reply_stack.websocket_url.rsplit(":", 1)[1].split("/")[0])
    with socket.create_connection(("127.0.0.1", ws_port), timeout=30) as sock:
        sock.sendall(
            (
                f"GET /{stage} HTTP/1.1\r\nHost: {api_host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        assert b" 403 " in sock.recv(4096).split(b"\r\n", 1)[0]


async def test_a_reload_keeps_the_workers_endpoint_and_says_a_new_domain_needs_a_restart(
    tmp_path: Path,
) -> None:
    app_dir = tmp_path / "reply_app"
    shutil.copytree(REPLY_TEMPLATE.parent, app_dir, ignore=shutil.ignore_patterns("__pycache__", ".tidings"))
    template = app_dir / "template.yaml"
    stack = await asyncio.to_thread(start_stack, template, tmp_path)
    try:
        assert await _exchange(stack, {"action": "reply", "via": "custom"}) == {"via": "custom"}
        template.write_text(
            template.read_text().replace(f"Default: {CUSTOM_DOMAIN}", "Default: ws2.reply-test.example")
        )
        await asyncio.to_thread(stack.wait_for_log, r"reloaded; data and connections kept", 60)
        await asyncio.to_thread(stack.wait_for_log, r"the custom domains changed: restart to serve them", 5)
        # the reloaded functions (cold, new keys) still reach the same listener
        assert await _exchange(stack, {"action": "reply", "via": "apiId"}) == {"via": "apiId"}
    finally:
        stop_stack(stack)
