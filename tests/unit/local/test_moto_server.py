"""moto_server.py: the AWS endpoint binds before serving and checks the Host (issue 14, items 2 and 6).

Also pins the moto names it builds on: when moto moves them, this fails loudly."""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest

from tidings.local.hosts import HostPolicy
from tidings.local.moto_server import MotoServer, dispatcher, keep_metadata_names


def test_the_moto_names_it_uses_are_where_it_expects_them() -> None:
    from moto.core import request
    from moto.moto_server import werkzeug_app

    for name in ("DomainDispatcherApplication", "create_backend_app"):
        assert hasattr(werkzeug_app, name), f"moto moved {name}: update tidings/local/moto_server.py"
    assert hasattr(werkzeug_app.DomainDispatcherApplication, "get_backend_for_host")
    # keep_metadata_names does what MotoRequestHandler.make_environ does, with moto's helpers
    for name in (
        "PRESERVED_HEADER_NAMES_ENVIRON_KEY",
        "environ_key_for_header",
        "should_preserve_original_header_name",
    ):
        assert hasattr(request, name), f"moto moved {name}: update tidings/local/moto_server.py"
    assert request.PRESERVED_HEADER_NAMES_ENVIRON_KEY == "moto.preserved_header_names"
    assert werkzeug_app.PRESERVED_HEADER_NAMES_ENVIRON_KEY == request.PRESERVED_HEADER_NAMES_ENVIRON_KEY


METADATA_HEADERS = [
    [
        ("Host", "s3.local"),
        ("X-Amz-Meta-My_Key", "one"),
        ("X-Amz-Meta-My_Key", "two"),
        ("x-amz-meta-shadowed_name", "spoof"),
        ("X-Amz-Meta-Shadowed-Name", "real"),
        ("X_Not_Metadata", "dropped"),
    ],
    [("Host", "s3.local"), ("X-Amz-Meta-Plain", "one"), ("Content-Type", "text/plain")],
]


@pytest.mark.parametrize("headers", METADATA_HEADERS, ids=["underscores", "none"])
def test_the_metadata_names_are_kept_as_motos_own_request_handler_keeps_them(
    headers: list[tuple[str, str]],
) -> None:
    """keep_metadata_names gives the environ moto's MotoRequestHandler (werkzeug) gave."""
    from email.message import Message

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import WSGIRequestHandler

    message = Message()
    for name, value in headers:
        message[name] = value
    base: dict[str, Any] = {"HTTP_X_AMZ_META_SHADOWED_NAME": "real"}

    handler = MotoRequestHandler.__new__(MotoRequestHandler)
    handler.headers = message  # type: ignore[assignment]
    original = WSGIRequestHandler.make_environ
    WSGIRequestHandler.make_environ = lambda self: dict(base)  # type: ignore[method-assign]
    try:
        theirs = handler.make_environ()
    finally:
        WSGIRequestHandler.make_environ = original  # type: ignore[method-assign]
    ours = dict(base)
    keep_metadata_names(ours, headers)
    assert ours == theirs
    if len(headers) > 3:
        assert ours["HTTP_X_AMZ_META_MY_KEY"] == "one,two"
        assert ours["moto.preserved_header_names"] == {"HTTP_X_AMZ_META_MY_KEY": "X-Amz-Meta-My_Key"}


def test_s3_metadata_with_an_underscore_keeps_its_name_and_calls_keep_their_connection() -> None:
    import boto3

    server = MotoServer("127.0.0.1", 0)
    server.start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{server.port}",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        s3.create_bucket(Bucket="meta-bucket")
        s3.put_object(
            Bucket="meta-bucket", Key="k", Body=b"x", Metadata={"my_key": "one", "other-key": "two"}
        )
        assert s3.head_object(Bucket="meta-bucket", Key="k")["Metadata"] == {
            "my_key": "one",
            "other-key": "two",
        }
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for _ in range(2):  # one connection, kept alive
            connection.request("GET", "/moto-api/data.json")
            answer = connection.getresponse()
            assert answer.status == 200 and answer.getheader("Connection") is None
            answer.read()
        connection.close()
    finally:
        server.stop()


def test_stop_is_idempotent_and_works_for_a_server_never_started() -> None:
    never = MotoServer("127.0.0.1", 0)
    port = never.port
    never.stop()
    never.stop()
    with socket.create_server(("127.0.0.1", port)):  # the port is free again
        pass
    started = MotoServer("127.0.0.1", 0)
    started.start()
    started.stop()
    started.stop()


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


def test_a_foreign_host_is_refused_on_its_head_before_any_body_is_read() -> None:
    """A page (DNS rebinding, or a plain cross-site POST) must not make the process hold a body:
    the host policy answers on the head, no `100 Continue`, and the connection closes."""
    server = MotoServer("127.0.0.1", 0, hosts=lambda port: HostPolicy(port=port))
    server.start()
    try:
        for expect in (b"", b"Expect: 100-continue\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
                connection.sendall(
                    b"PUT /bucket/key HTTP/1.1\r\nHost: evil.test:%d\r\n%s"
                    b"Content-Length: 400000000\r\n\r\n" % (server.port, expect)
                )
                data = b""
                while chunk := connection.recv(65536):  # answered and closed, the body never sent
                    data += chunk
            assert data.startswith(b"HTTP/1.1 403 ") and b"does not answer to Host evil.test" in data
            assert b"100 Continue" not in data and b"Connection: close" in data
        served = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        served.request("PUT", "/bucket", body=b"", headers={"Host": f"127.0.0.1:{server.port}"})
        assert served.getresponse().status == 200  # the served host still gets moto
    finally:
        server.stop()
