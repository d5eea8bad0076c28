"""Issue 14, item 12: a link's `?ws=`/`?api=` never receive the token the tab keeps.

A listener on another port stands for the attacker's server: it records every handshake's
`Sec-WebSocket-Protocol` (where browsers carry the token) and never answers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .fake_backend import FakeTidings


class Listener:
    """A TCP listener that records the request head of each connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port: int = self.sock.getsockname()[1]
        self.heads: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.heads.append(data.decode("latin-1"))

    def protocols(self) -> list[str]:
        return [
            line.split(":", 1)[1].strip()
            for head in self.heads
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-protocol:")
        ]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def backend() -> Iterator[FakeTidings]:
    with FakeTidings() as running:
        yield running


@pytest.fixture
def attacker() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


def test_a_link_to_another_server_never_gets_the_stored_token(
    page: Page, backend: FakeTidings, attacker: Listener
) -> None:
    # the user connects to their deployed stack: the token is kept in this tab
    page.goto(f"{backend.base_url}/?ws={backend.ws_url}&api={backend.api_url}")
    token = backend.token_for("carol")
    page.locator("#remote-token").fill(token)
    page.locator("#remote-form button").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    # then follows a redirect that names another WebSocket server
    evil = f"ws://127.0.0.1:{attacker.port}/"
    page.goto(f"{backend.base_url}/?ws={evil}&api=http://127.0.0.1:{attacker.port}/")
    expect(page.locator("#remote-form")).to_be_visible()
    expect(page.locator("#remote-ws")).to_have_value(evil)
    expect(page.locator("#remote-token")).to_have_value("")
    expect(page.locator("#settings-error")).to_contain_text("only if you trust them")
    time.sleep(1.5)  # any connection attempt the page makes on load would have arrived
    assert attacker.protocols() == []
    assert all(token not in head for head in attacker.heads)
    assert token not in (page.evaluate("JSON.stringify(sessionStorage)") or "")

    # the confirmed endpoints still work after a reload of a clean address
    page.goto(f"{backend.base_url}/?ws={backend.ws_url}&api={backend.api_url}")
    expect(page.locator("#remote-form")).to_be_visible()
    page.locator("#remote-token").fill(token)
    page.locator("#remote-form button").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert attacker.protocols() == []


def test_a_link_repeating_the_confirmed_endpoints_keeps_the_session(page: Page, backend: FakeTidings) -> None:
    page.goto(f"{backend.base_url}/?ws={backend.ws_url}&api={backend.api_url}")
    page.locator("#remote-token").fill(backend.token_for("carol"))
    page.locator("#remote-form button").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.goto(f"{backend.base_url}/?ws={backend.ws_url}&api={backend.api_url}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
