"""DNS rebinding against the local stack in headless Chromium (issue 14, item 2).

Chromium resolves `evil.test` to 127.0.0.1 (`--host-resolver-rules`), which is where a rebinding
attack ends: the attacker's page, at http://evil.test:PORT, sends same-origin requests that reach
the stack with `Host: evil.test:PORT`. The page itself is handed to Chromium by Playwright (what
the attacker's server served before the name was re-pointed); everything it fetches goes to the
stack. It must neither mint a token nor replay an invocation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright
from stack_harness import ROOT, RunningStack, create_job, local_token, start_stack, stop_stack
from testkit import require_tool

from .conftest import CHROMIUM_ARGS

ATTACK_PAGE = """<!doctype html><title>cute cats</title><script>
async function attack() {
  const out = {};
  const token = await fetch("/_tidings/token?user=anyone");
  out.token = {status: token.status, body: await token.text()};
  const list = await fetch("/_tidings/console/api/invocations");
  out.list = {status: list.status};
  const replay = await fetch("/_tidings/console/api/invocations/" + SEQ + "/replay",
    {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
  out.replay = {status: replay.status, body: await replay.text()};
  return out;
}
</script>"""


@pytest.fixture(scope="module")
def rebinding_browser() -> Iterator[Browser]:
    chromium = require_tool("chromium", "/usr/bin/chromium")
    args = [
        *CHROMIUM_ARGS,
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP evil.test 127.0.0.1",
        # Chromium's own private-network checks would stop this page (handed over by Playwright, so
        # not from a local address) before the stack sees it; off, so the stack's defence is tested
        "--disable-features=BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights,"
        "PrivateNetworkAccessRespectPreflightResults,LocalNetworkAccessChecks",
    ]
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, rebinding_browser: Browser) -> Iterator[RunningStack]:
    running = start_stack(ROOT / "template.yaml", Path(tmp_path_factory.mktemp("rebinding")))
    yield running
    stop_stack(running)


def attack(browser: Browser, origin: str, seq: int) -> dict[str, Any]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.route(
            f"{origin}/cats.html",
            lambda route: route.fulfill(
                status=200, content_type="text/html", body=ATTACK_PAGE.replace("SEQ", str(seq))
            ),
        )
        page.goto(f"{origin}/cats.html")
        result: dict[str, Any] = page.evaluate("attack()")
        return result
    finally:
        context.close()


def newest_invocation(stack: RunningStack) -> int:
    from urllib.request import urlopen

    with urlopen(f"{stack.http_url}/_tidings/console/api/invocations", timeout=30) as answer:  # noqa: S310
        return int(json.loads(answer.read())["invocations"][0]["seq"])


def test_a_rebound_page_can_neither_mint_tokens_nor_replay(
    stack: RunningStack, rebinding_browser: Browser
) -> None:
    create_job(stack, local_token(stack, "victim"))
    seq = newest_invocation(stack)
    port = stack.http_url.rsplit(":", 1)[1]
    stolen = attack(rebinding_browser, f"http://evil.test:{port}", seq)
    assert stolen["token"]["status"] == 403 and "eyJ" not in stolen["token"]["body"]
    assert stolen["list"]["status"] == 403
    assert stolen["replay"]["status"] == 403
    assert newest_invocation(stack) == seq  # nothing ran

    # the same page from the stack's own origin works: the refusal is about the Host, not the page
    own = attack(rebinding_browser, stack.http_url, seq)
    assert own["token"]["status"] == 200 and own["replay"]["status"] == 201
