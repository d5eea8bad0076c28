"""hosts.py: which Host, Origin and peer each port of the local stack answers (issue 14, items 2 and 5)."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.local.hosts import (
    HostPolicy,
    HostRequest,
    browser_host,
    is_this_machine,
    parse_authority,
    parse_origin,
)

HTTP = HostPolicy(
    port=3000,
    local_only=("/_tidings", "/console"),
    origin_checked=("/_tidings", "/console", "/@connections", "/prod/@connections"),
)


def request(host: str | None, *, method: str = "GET", path: str = "/", **more: Any) -> HostRequest:
    more.setdefault("peer", "127.0.0.1")
    return HostRequest(method=method, path=path, host=host, **more)


@pytest.mark.parametrize("host", ["127.0.0.1:3000", "localhost:3000", "LOCALHOST:3000", "[::1]:3000"])
def test_the_loopback_names_with_the_servers_port_pass(host: str) -> None:
    assert HTTP.check(request(host)).allowed


@pytest.mark.parametrize(
    "host",
    [
        "evil.test:3000",  # DNS rebinding: the attacker's name, re-pointed at 127.0.0.1
        "localhost.evil.test:3000",
        "127.0.0.1:3001",  # another port is another origin
        "localhost",  # no port: 80
        "127.0.0.1@evil.test:3000",
        "127.0.0.1:3000/x",
        "",
        None,
        "[::1",
        "localhost:99999",
    ],
)
def test_foreign_missing_or_malformed_hosts_are_refused_with_403(host: str | None) -> None:
    verdict = HTTP.check(request(host))
    assert not verdict.allowed and verdict.status == 403


def test_the_host_given_with_host_is_served_too() -> None:
    lan = HostPolicy(port=3000, bind_host="192.168.1.5")
    assert lan.check(request("192.168.1.5:3000")).allowed
    assert lan.check(request("localhost:3000")).allowed
    assert not HTTP.check(request("192.168.1.5:3000")).allowed


def test_a_wildcard_bind_serves_ip_literals_and_the_machines_name_but_no_other_name() -> None:
    wildcard = HostPolicy(port=3000, bind_host="0.0.0.0", extra_names=frozenset({"laptop"}))
    assert wildcard.check(request("10.0.0.7:3000")).allowed
    assert wildcard.check(request("laptop:3000")).allowed
    assert not wildcard.check(request("evil.test:3000")).allowed
    assert not wildcard.check(request("0.0.0.0:3001")).allowed


@pytest.mark.parametrize("origin", ["http://evil.test:3000", "http://127.0.0.1:8080", "null", "file://"])
def test_changes_on_the_stacks_paths_from_a_foreign_origin_are_refused(origin: str) -> None:
    replay = request(
        "127.0.0.1:3000", method="POST", path="/_tidings/console/api/invocations/1/replay", origin=origin
    )
    verdict = HTTP.check(replay)
    assert not verdict.allowed and "own pages" in verdict.reason
    post = request("127.0.0.1:3000", method="POST", path="/prod/@connections/abc", origin=origin)
    assert not HTTP.check(post).allowed


def test_changes_from_the_stacks_own_pages_or_without_origin_pass_and_reads_ignore_origin() -> None:
    path = "/_tidings/console/api/invocations/1/replay"
    for origin in ("http://127.0.0.1:3000", "http://localhost:3000"):
        assert HTTP.check(request("127.0.0.1:3000", method="POST", path=path, origin=origin)).allowed
    assert HTTP.check(request("127.0.0.1:3000", method="POST", path=path)).allowed  # curl, boto3
    assert HTTP.check(request("127.0.0.1:3000", path="/_tidings/config", origin="http://evil.test")).allowed
    # the app's own routes: its CORS settings decide, not the emulator
    assert HTTP.check(request("127.0.0.1:3000", method="POST", path="/jobs", origin="http://x.test")).allowed


def test_local_only_paths_answer_only_to_this_machine() -> None:
    exposed = HostPolicy(port=3000, bind_host="0.0.0.0", local_only=("/_tidings", "/console"))
    token = "/_tidings/token"
    assert exposed.check(request("127.0.0.1:3000", path=token, peer="127.0.0.1", local="127.0.0.1")).allowed
    # the machine's own LAN address, from the machine itself
    assert exposed.check(request("10.0.0.7:3000", path=token, peer="10.0.0.7", local="10.0.0.7")).allowed
    for path in (token, "/console", "/console/app.js", "/_tidings/console/api/invocations"):
        verdict = exposed.check(request("10.0.0.7:3000", path=path, peer="10.0.0.9", local="10.0.0.7"))
        assert not verdict.allowed and "this machine" in verdict.reason, path
    # the rest of what --host exposes stays reachable from the network
    for path in ("/index.html", "/consoles"):
        assert exposed.check(request("10.0.0.7:3000", path=path, peer="10.0.0.9", local="10.0.0.7")).allowed


def test_a_rule_adds_an_allowance_without_loosening_the_rest() -> None:
    def from_workers_on_management(req: HostRequest) -> bool:
        return req.path.startswith("/prod/@connections/") and req.headers.get("X-Worker") == "yes"

    widened = HTTP.with_rule(from_workers_on_management)
    api_host = "abc123.execute-api.us-east-1.amazonaws.com"
    worker = request(api_host, method="POST", path="/prod/@connections/c1", headers={"X-Worker": "yes"})
    assert widened.check(worker).allowed and not HTTP.check(worker).allowed
    stranger = request(api_host, method="POST", path="/prod/@connections/c1")
    assert not widened.check(stranger).allowed
    assert not widened.check(request(api_host, path="/_tidings/token", headers={"X-Worker": "yes"})).allowed


def test_parsers_and_helpers() -> None:
    assert parse_authority("[::1]:3001", "ws") == ("::1", 3001)
    assert parse_authority("Example.test", "ws") == ("example.test", 80)
    assert parse_origin("http://localhost:3000") == ("http", "localhost", 3000)
    assert parse_origin("null") is None and parse_origin("http://a.test/path") is None
    assert browser_host("0.0.0.0") == "127.0.0.1" and browser_host("::") == "127.0.0.1"
    assert browser_host("::1") == "[::1]" and browser_host("localhost") == "localhost"
    assert is_this_machine("::ffff:127.0.0.1", None) and not is_this_machine("10.0.0.9", "10.0.0.7")
