"""push.ManagementApi over HTTPS, as on AWS: the certificate is verified (against AWS_CA_BUNDLE
when set, as botocore does), keep-alive holds over TLS, and an untrusted or misnamed certificate
fails the post without stopping the others."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials

from tidings.local.local_ca import LocalAuthority, server_context
from tidings_core.push import ManagementApi, Outcome, Pusher


class _Server:
    """A TLS server answering each POST: 410 for ids starting with "gone", else 200."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.paths: list[str] = []
        self.peers: set[int] = set()
        received = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.paths.append(self.path)
                received.peers.add(self.client_address[1])
                gone = self.path.rsplit("/", 1)[-1].startswith("gone")
                self.send_response(410 if gone else 200)
                if gone:
                    self.send_header("x-amzn-ErrorType", "GoneException")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def authority() -> LocalAuthority:
    return LocalAuthority()


def _serve(authority: LocalAuthority, names: list[str], folder: Path) -> Iterator[_Server]:
    server = _Server(server_context(authority.issue(names), folder))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def server(authority: LocalAuthority, tmp_path: Path) -> Iterator[_Server]:
    yield from _serve(authority, ["localhost"], tmp_path)


def _api(endpoint: str, ca_bundle: str | None = None) -> ManagementApi:
    return ManagementApi(
        endpoint,
        credentials=Credentials("AKIDEXAMPLE", "secret", "token"),
        region="eu-west-1",
        max_connections=2,
        ca_bundle=ca_bundle,
        now=lambda: datetime.datetime.now(datetime.UTC),
    )


def _bundle(authority: LocalAuthority, tmp_path: Path) -> str:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(authority.certificate_pem)
    return str(bundle)


def test_posts_over_verified_tls_on_kept_alive_connections_trusting_aws_ca_bundle(
    server: _Server, authority: LocalAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the Lambda runtime builds it: credentials, region and CA bundle from botocore's chain."""
    monkeypatch.setenv("AWS_CA_BUNDLE", _bundle(authority, tmp_path))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    api = ManagementApi.from_environment(f"https://localhost:{server.port}/prod", max_connections=2)
    ids = [f"c{i}" for i in range(20)] + ["gone-1"]
    results = Pusher(api, max_workers=2).post_many(ids, b"m")
    outcomes = {r.connection_id: r.outcome for r in results}
    assert outcomes == {**{f"c{i}": Outcome.DELIVERED for i in range(20)}, "gone-1": Outcome.GONE}
    assert sorted(server.paths) == sorted(f"/prod/@connections/{cid}" for cid in ids)
    assert len(server.peers) <= 2  # 21 posts over at most one TLS connection per worker


def test_an_untrusted_certificate_fails_every_post_and_reaches_nothing(
    server: _Server,
) -> None:
    # no bundle given: botocore's public roots only, which do not know the local CA
    results = Pusher(_api(f"https://localhost:{server.port}/prod"), max_workers=2).post_many(["a", "b"], b"m")
    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED]
    assert all(r.error for r in results)
    assert server.paths == []


def test_a_certificate_for_another_name_is_refused(authority: LocalAuthority, tmp_path: Path) -> None:
    for server in _serve(authority, ["other.example"], tmp_path):
        api = _api(f"https://localhost:{server.port}/prod", _bundle(authority, tmp_path))
        result = Pusher(api, max_workers=1).post("a", b"m")
        assert result.outcome is Outcome.FAILED
        assert server.paths == []
