"""worker.py's redirect, in a real worker: a redirected host reaches the loopback port with its own
name verified against the run's CA; a redirected host the certificate does not name fails."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tidings.local.functions import FunctionRunner
from tidings.local.local_ca import LocalAuthority, public_roots_pem, server_context, trust_bundle
from tidings.local.management_endpoints import worker_environment
from tidings.local.model import LocalApp

from .test_functions import AWS_ENDPOINT, make_function

FETCH_HANDLER = """
import ssl
import urllib.error
import urllib.request

def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return "refused: " + reason.verify_message
        return "failed: " + type(reason).__name__

def handler(event, context):
    return {url: fetch(url) for url in event["urls"]}
"""


@pytest.fixture
async def tls_port(tmp_path: Path) -> AsyncIterator[tuple[int, LocalAuthority]]:
    """An HTTPS server on a free loopback port with a certificate for `served.example` only."""
    authority = LocalAuthority()
    context: ssl.SSLContext = server_context(authority.issue(["served.example"]), tmp_path)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlocal")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1], authority
    server.close()
    await server.wait_closed()


async def test_a_redirected_host_is_served_locally_and_verified(
    tmp_path: Path, tls_port: tuple[int, LocalAuthority]
) -> None:
    port, authority = tls_port
    ca_file, bundle = tmp_path / "ca.pem", tmp_path / "bundle.pem"
    ca_file.write_bytes(authority.certificate_pem)
    bundle.write_bytes(trust_bundle(authority.certificate_pem, public_roots_pem()))
    environment = worker_environment({"served.example": port, "unserved.example": port}, ca_file, bundle)
    function = make_function(tmp_path / "code", "Fetch", FETCH_HANDLER)
    app = LocalApp(template_path=tmp_path / "template.yaml", region="us-east-1", parameters={})
    app.functions["Fetch"] = function
    async with FunctionRunner(app, AWS_ENDPOINT, watch=False, extra_environment=environment) as runner:
        invocation = await runner.invoke(
            "Fetch",
            {
                "urls": [
                    "https://served.example/",  # redirected, named by the certificate
                    "https://SERVED.example/",  # names ignore case
                    "https://unserved.example/",  # redirected, but not the certificate's name
                    "https://served.example:8443/",  # another port: not redirected, not resolvable
                ]
            },
        )
    assert invocation.ok, invocation.traceback
    result = invocation.result
    assert result["https://served.example/"] == "local"
    assert result["https://SERVED.example/"] == "local"
    assert result["https://unserved.example/"].startswith("refused: ")
    assert "mismatch" in result["https://unserved.example/"]
    assert result["https://served.example:8443/"] == "failed: gaierror"
