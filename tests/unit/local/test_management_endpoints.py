"""management_endpoints.py, local_ca.py and worker.py's redirect: the hosts handlers build
themselves, which requests they answer, what a worker's environment says, and the CA's TLS."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.local import worker
from tidings.local.hosts import HostPolicy, HostRequest
from tidings.local.local_ca import LocalAuthority, public_roots_pem, server_context, trust_bundle
from tidings.local.management_endpoints import (
    ManagementHosts,
    WorkerTrust,
    is_management_path,
    worker_environment,
    workers_only,
)
from tidings.local.model import DomainMapping, WebSocketApi
from tidings.local.template import LocalEndpoints, load_app

API = WebSocketApi(
    logical_id="ChatApi",
    api_id="abc123defg",
    name="chat",
    stage="live",
    route_selection_expression="$request.body.action",
    routes={},
    region="eu-west-1",
)
API_HOST = "abc123defg.execute-api.eu-west-1.amazonaws.com"
REPLY_TEMPLATE = Path(__file__).parents[2] / "integration" / "stack" / "reply_app" / "template.yaml"


# ---------------------------------------------------------------- worker.py: the redirect decision
REDIRECTS = {API_HOST: 45123, "ws.example.com": 45123}


@pytest.mark.parametrize(
    ("host", "port", "target"),
    [
        (API_HOST, 443, ("127.0.0.1", 45123)),
        (API_HOST, "443", ("127.0.0.1", 45123)),
        (API_HOST, "https", ("127.0.0.1", 45123)),
        (API_HOST.upper() + ".", 443, ("127.0.0.1", 45123)),  # names ignore case and a final dot
        (API_HOST.encode(), b"443", ("127.0.0.1", 45123)),
        ("ws.example.com", 443, ("127.0.0.1", 45123)),
        (API_HOST, 80, None),  # only HTTPS moves
        (API_HOST, None, None),
        (API_HOST, "http", None),
        ("other.example.com", 443, None),
        ("example.com", 443, None),  # a parent of a redirected name is not redirected
        (None, 443, None),
    ],
)
def test_redirect_target(host: object, port: object, target: tuple[str, int] | None) -> None:
    assert worker.redirect_target(host, port, REDIRECTS) == target


def test_redirect_target_without_redirects_is_none() -> None:
    assert worker.redirect_target(API_HOST, 443, {}) is None


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (None, {}),
        ("", {}),
        ("not json", {}),
        ("[1, 2]", {}),
        (
            '{"A.Example.": 4000, "b.example": "4001", "c.example": true, "d.example": 70000}',
            {"a.example": 4000},
        ),
    ],
)
def test_parse_redirects_keeps_only_well_formed_entries(text: str | None, parsed: dict[str, int]) -> None:
    assert worker.parse_redirects(text) == parsed


def test_install_redirects_resolves_redirected_hosts_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", socket.getaddrinfo)  # restored after the test
    worker.install_redirects({"never-resolves.invalid": 45123})
    [(family, _, _, _, address)] = socket.getaddrinfo(
        "never-resolves.invalid", 443, socket.AF_UNSPEC, socket.SOCK_STREAM
    )
    assert (family, address) == (socket.AF_INET, ("127.0.0.1", 45123))
    with pytest.raises(socket.gaierror):  # port 80 is not redirected: the name is looked up as ever
        socket.getaddrinfo("never-resolves.invalid", 80)
    assert socket.getaddrinfo("127.0.0.1", 8080, socket.AF_INET, socket.SOCK_STREAM)[0][4] == (
        "127.0.0.1",
        8080,
    )


# ---------------------------------------------------------------- hosts and stages
def test_hosts_are_the_api_host_and_the_domains_mapped_to_the_served_stage() -> None:
    mappings = [
        DomainMapping("ws.example.com", "abc123defg", "live", "chat"),
        DomainMapping("root.example.com", "abc123defg", "live", ""),
        DomainMapping("other-stage.example.com", "abc123defg", "beta", ""),
        DomainMapping("other-api.example.com", "zzz", "live", ""),
    ]
    hosts = ManagementHosts.of(API, mappings)
    assert hosts.names == (API_HOST, "ws.example.com", "root.example.com")


@pytest.mark.parametrize(
    ("host", "base", "stage"),
    [
        (API_HOST, "live", "live"),
        (API_HOST, "beta", "beta"),  # the handler then answers 403 for a stage it does not serve
        (API_HOST, "", None),
        (f"{API_HOST}:443", "live", "live"),
        (f"{API_HOST}:8443", "live", None),
        ("ws.example.com", "chat", "live"),
        ("ws.example.com", "live", None),  # a custom domain names the stage by its mapping key
        ("ws.example.com", "", None),
        ("root.example.com", "", "live"),
        ("127.0.0.1", "live", None),
        (None, "live", None),
    ],
)
def test_stage_for(host: str | None, base: str, stage: str | None) -> None:
    hosts = ManagementHosts(
        API_HOST,
        (
            DomainMapping("ws.example.com", "abc123defg", "live", "chat"),
            DomainMapping("root.example.com", "abc123defg", "live", ""),
        ),
    )
    assert hosts.stage_for(host, base) == stage


@pytest.mark.parametrize(
    ("path", "management"),
    [
        ("/live/@connections/abc%3D", True),
        ("/@connections/abc", True),
        ("/v1/orders/@connections/abc", True),
        ("/live/@connections", False),
        ("/live/@connections/abc/more", False),
        ("/live/other", False),
        ("/", False),
    ],
)
def test_is_management_path(path: str, management: bool) -> None:
    assert is_management_path(path) is management


WORKER = HostRequest(method="POST", path="/live/@connections/abc%3D", host=API_HOST, peer="127.0.0.1")


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (WORKER, True),
        (HostRequest("GET", "/live/@connections/a", f"{API_HOST}:443", peer="::1"), True),
        (HostRequest("POST", "/live/@connections/a", "WS.EXAMPLE.COM", peer="127.0.0.1"), True),
        (HostRequest("POST", "/live/other", API_HOST, peer="127.0.0.1"), False),  # not management
        (HostRequest("POST", WORKER.path, API_HOST, origin="https://evil.test", peer="127.0.0.1"), False),
        (HostRequest("POST", WORKER.path, API_HOST, peer="192.0.2.7"), False),  # another machine
        (HostRequest("POST", WORKER.path, API_HOST, peer=None), False),
        (HostRequest("POST", WORKER.path, f"{API_HOST}:3000", peer="127.0.0.1"), False),  # not 443
        (HostRequest("POST", WORKER.path, "evil.test", peer="127.0.0.1"), False),
        (HostRequest("POST", WORKER.path, None, peer="127.0.0.1"), False),
    ],
)
def test_workers_only_rule(request_: HostRequest, allowed: bool) -> None:
    policy = HostPolicy(port=45123).with_rule(workers_only([API_HOST, "ws.example.com"]))
    assert policy.check(request_).allowed is allowed


def test_the_rule_is_not_on_a_policy_without_it() -> None:
    """The HTTP and WebSocket ports' policies never take those hosts."""
    assert not HostPolicy(port=3000).check(WORKER).allowed


def test_worker_environment_is_the_contract_every_runtime_reads(tmp_path: Path) -> None:
    environment = worker_environment(
        {"WS.Example.com": 45123, API_HOST: 45123}, tmp_path / "ca", tmp_path / "b"
    )
    assert json.loads(environment["_TIDINGS_HOST_REDIRECTS"]) == {API_HOST: 45123, "ws.example.com": 45123}
    assert environment["NODE_EXTRA_CA_CERTS"] == str(tmp_path / "ca")
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert environment[name] == str(tmp_path / "b")
    assert worker.parse_redirects(environment["_TIDINGS_HOST_REDIRECTS"]) == {
        API_HOST: 45123,
        "ws.example.com": 45123,
    }


def test_worker_trust_writes_its_files_privately_and_removes_them() -> None:
    trust = WorkerTrust(ManagementHosts(API_HOST))
    try:
        assert (trust.folder.stat().st_mode & 0o777) == 0o700
        assert [path.name for path in sorted(trust.folder.iterdir())] == ["ca-bundle.pem", "local-ca.pem"]
        bundle = Path(trust.environment["AWS_CA_BUNDLE"]).read_bytes()
        assert bundle.startswith(Path(trust.environment["NODE_EXTRA_CA_CERTS"]).read_bytes().rstrip(b"\n"))
        assert public_roots_pem() in bundle  # other HTTPS still verifies
        assert json.loads(trust.environment["_TIDINGS_HOST_REDIRECTS"]) == {API_HOST: trust.port}
    finally:
        trust.close()
    assert not trust.folder.exists()


# ---------------------------------------------------------------- the CA, over real sockets
@pytest.fixture(scope="module")
def authority() -> LocalAuthority:
    return LocalAuthority()


@pytest.fixture
def tls_server(authority: LocalAuthority, tmp_path: Path) -> Iterator[int]:
    """A TLS server for API_HOST and ws.example.com that completes handshakes, on a free port."""
    context = server_context(authority.issue([API_HOST, "ws.example.com"]), tmp_path)
    assert list(tmp_path.iterdir()) == []  # the key file is gone once loaded
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(timeout=5)
    listener.close()


def _handshake(port: int, name: str, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name),
    ):
        pass


def test_the_served_names_verify_against_the_run_authority(
    authority: LocalAuthority, tls_server: int, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(trust_bundle(authority.certificate_pem, public_roots_pem()))
    context = ssl.create_default_context(cafile=str(bundle))
    _handshake(tls_server, API_HOST, context)
    _handshake(tls_server, "WS.example.com", context)


def test_another_name_on_the_same_port_fails_verification(authority: LocalAuthority, tls_server: int) -> None:
    context = ssl.create_default_context(cadata=authority.certificate_pem.decode())
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(tls_server, "other.example.com", context)


def test_without_the_run_authority_verification_fails(tls_server: int) -> None:
    context = ssl.create_default_context(cadata=public_roots_pem().decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_server, API_HOST, context)


def test_another_runs_authority_is_not_trusted(tls_server: int) -> None:
    context = ssl.create_default_context(cadata=LocalAuthority().certificate_pem.decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_server, API_HOST, context)


# ---------------------------------------------------------------- the template's custom domains
def test_api_mappings_are_read_from_the_template() -> None:
    endpoints = LocalEndpoints("ws://127.0.0.1:3101", "http://127.0.0.1:3100", "http://127.0.0.1:4599")
    app = load_app(REPLY_TEMPLATE, endpoints, parameter_overrides={"DomainName": "Chat.Example.COM"})
    [api] = app.websocket_apis
    assert app.domain_mappings == [DomainMapping("chat.example.com", api.api_id, "live", "chat")]
    assert app.functions["ReplyFunction"].environment["CUSTOM_DOMAIN"] == "Chat.Example.COM"  # Ref: its name
    assert ManagementHosts.of(api, app.domain_mappings).names == (
        f"{api.api_id}.execute-api.us-east-1.amazonaws.com",
        "chat.example.com",
    )
