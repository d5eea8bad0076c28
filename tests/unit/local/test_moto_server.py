"""moto_server.py: the AWS endpoint binds before serving and checks the Host (issue 14, items 2 and 6).

Also pins the moto names it builds on: when moto moves them, this fails loudly."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from tidings.local.hosts import HostPolicy
from tidings.local.moto_server import MotoServer, dispatcher


def test_the_moto_names_it_uses_are_where_it_expects_them() -> None:
    from moto.moto_server import werkzeug_app

    for name in ("DomainDispatcherApplication", "create_backend_app", "MotoRequestHandler"):
        assert hasattr(werkzeug_app, name), f"moto moved {name}: update tidings/local/moto_server.py"
    assert hasattr(werkzeug_app.DomainDispatcherApplication, "get_backend_for_host")


def test_the_backend_of_a_host_is_looked_up_once_and_answers_as_moto_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto import backends
    from moto.moto_server import werkzeug_app

    listed: list[int] = []
    original = backends.list_of_moto_modules

    def counting() -> object:
        listed.append(1)
        return original()

    monkeypatch.setattr(backends, "list_of_moto_modules", counting)
    uncached = werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app)
    app = dispatcher()
    hosts = ["dynamodb.us-east-1.amazonaws.com", "s3.us-east-1.amazonaws.com", "sqs", None, "moto_api"]
    expected = [uncached.get_backend_for_host(host) for host in hosts]
    assert expected[0] == "dynamodb" and expected[3] is None  # the lookup the cache must agree with
    listed.clear()
    for _ in range(3):
        assert [app.get_backend_for_host(host) for host in hosts] == expected  # type: ignore[attr-defined]
    assert len(listed) <= len(hosts)  # once per host at most, not once per request


def test_a_taken_port_raises_a_one_line_oserror_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(
            OSError, match=f"AWS endpoint: cannot listen on 127.0.0.1:{port}: Address already in use"
        ):
            MotoServer("127.0.0.1", port)


def test_a_foreign_host_gets_403_and_the_served_host_gets_moto() -> None:
    server = MotoServer("127.0.0.1", 0, hosts=lambda port: HostPolicy(port=port))
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/moto-api/data.json"
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.status == 200
        rebound = urllib.request.Request(url, headers={"Host": f"evil.test:{server.port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=30)  # noqa: S310
        assert refused.value.code == 403
        assert b"does not answer to Host evil.test" in refused.value.read()
    finally:
        server.stop()
