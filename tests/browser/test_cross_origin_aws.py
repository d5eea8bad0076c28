"""A page on another local origin against the stack's AWS endpoint, in headless Chromium (issue 14,
item 1).

The attacker's page is served by a small HTTP server of its own on another port of 127.0.0.1 (a
dev server, a notebook, anything a laptop runs), so Chromium treats every request as cross-origin
but local-to-local: nothing of Chromium's own private-network rules stands in the way, only the
stack's. The page tries to read the token-signing secret (Secrets Manager GetSecretValue, with and
without a preflight), to dump every table, bucket and secret (`GET /moto-api/data.json`) and to
wipe them (`POST /moto-api/reset`, a simple request that no preflight stops). It must read
nothing, and the stack's data must be intact afterwards.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Response
from stack_harness import ROOT, RunningStack, start_stack, stop_stack

ATTACK_PAGE = b"""<!doctype html><title>cute cats</title><script>
async function attempt(out, name, url, init) {
  try {
    const response = await fetch(url, init);
    out[name] = {status: response.status, type: response.type, body: await response.text()};
  } catch (error) {
    out[name] = {error: String(error)};
  }
}
async function attack(aws, secretId) {
  const out = {};
  const read = JSON.stringify({SecretId: secretId});
  await attempt(out, "secret", aws + "/", {method: "POST", body: read, headers: {
    "X-Amz-Target": "secretsmanager.GetSecretValue", "Content-Type": "application/x-amz-json-1.1"}});
  // text/plain and no custom header: a simple request, sent without asking first
  await attempt(out, "secretSimple", aws + "/?Action=GetSecretValue", {method: "POST", body: read,
    mode: "no-cors", headers: {"Content-Type": "text/plain"}});
  await attempt(out, "dump", aws + "/moto-api/data.json", {});
  await attempt(out, "dumpNoCors", aws + "/moto-api/data.json", {mode: "no-cors"});
  await attempt(out, "reset", aws + "/moto-api/reset", {method: "POST", mode: "no-cors"});
  await attempt(out, "resetCors", aws + "/moto-api/reset", {method: "POST"});
  return out;
}
</script>"""


class AttackerPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(ATTACK_PAGE)))
        self.end_headers()
        self.wfile.write(ATTACK_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture(scope="module")
def attacker_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AttackerPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[RunningStack]:
    running = start_stack(ROOT / "template.yaml", Path(tmp_path_factory.mktemp("cross-origin-aws")))
    yield running
    stop_stack(running)


def snapshot(stack: RunningStack, secret_id: str) -> tuple[str, list[str], list[str]]:
    """The secret's value, the tables and the buckets, read with the run's admin key."""
    secret = str(stack.boto3_client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])
    tables = sorted(stack.boto3_client("dynamodb").list_tables()["TableNames"])
    buckets = sorted(b["Name"] for b in stack.boto3_client("s3").list_buckets()["Buckets"])
    return secret, tables, buckets


def test_another_local_origin_can_neither_read_secrets_nor_dump_nor_reset_the_aws_endpoint(
    stack: RunningStack, browser: Browser, attacker_origin: str
) -> None:
    secret_id = json.loads(stack.state_file.read_text())["tokenSecretId"]
    before = snapshot(stack, secret_id)
    assert before[0] and before[1] and before[2]

    context = browser.new_context()
    statuses: dict[str, int] = {}

    def seen(response: Response) -> None:  # what the endpoint answered, even where the page cannot look
        if response.url.startswith(stack.aws_endpoint):
            statuses[f"{response.request.method} {response.url[len(stack.aws_endpoint) :]}"] = response.status

    try:
        page = context.new_page()
        page.on("response", seen)
        page.goto(f"{attacker_origin}/cats.html")
        result: dict[str, Any] = page.evaluate(
            "([aws, id]) => attack(aws, id)", [stack.aws_endpoint, secret_id]
        )
    finally:
        context.close()

    # the page read nothing: cross-origin answers carry no Access-Control-Allow-Origin
    for name in ("secret", "dump", "resetCors"):
        assert "error" in result[name], (name, result[name])
    for name in ("secretSimple", "dumpNoCors", "reset"):
        assert result[name] == {"status": 0, "type": "opaque", "body": ""}, (name, result[name])
    assert before[0] not in json.dumps(result)

    # and the endpoint itself refused: no browser reaches /moto-api, nothing unsigned is served
    assert statuses.get("GET /moto-api/data.json") == 403, statuses
    assert statuses.get("POST /moto-api/reset") == 403, statuses
    assert statuses.get("POST /?Action=GetSecretValue") in (400, 403), statuses

    assert snapshot(stack, secret_id) == before  # nothing was wiped
