"""functions.py + node_runtimes.py + node_worker.mjs: Node.js handlers run as Lambda runs them.

CommonJS and ES modules, async and callback handlers, Lambda's context, console output captured
per invocation, Lambda's error types, timeouts, concurrency, reload on edit, the declared Node.js
major (found, fetched from the npm registry, or the nearest with a warning), package.json
dependencies built as `sam build` would, the AWS SDK v3 on the embedded endpoint and IAM, and
the management-endpoint host redirects (`_TIDINGS_HOST_REDIRECTS`) with verification kept on.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tidings.local.functions import FunctionRunner
from tidings.local.model import Function, LocalApp
from tidings.local.node_runtimes import NodeSetup, find_nodes
from tidings.local.runtimes import RuntimeSetup

from .runtime_stack import APPS, running


def make_function(
    root: Path,
    logical_id: str,
    files: dict[str, str],
    handler: str = "app.handler",
    runtime: str = "nodejs20.x",
    timeout_s: float = 20,
) -> Function:
    code_dir = root / logical_id
    for name, text in files.items():
        (code_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (code_dir / name).write_text(textwrap.dedent(text))
    return Function(
        logical_id=logical_id,
        name=f"local-{logical_id}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:local-{logical_id}",
        code_dir=code_dir,
        handler=handler,
        runtime=runtime,
        timeout_s=timeout_s,
        memory_mb=256,
        environment={"GREETING": "hi"},
    )


def app_of(tmp_path: Path, *functions: Function) -> LocalApp:
    app = LocalApp(template_path=tmp_path / "template.yaml", region="us-east-1", parameters={})
    app.functions = {function.logical_id: function for function in functions}
    return app


def runner_for(
    tmp_path: Path, *functions: Function, lines: list[str] | None = None, **options: Any
) -> FunctionRunner:
    progress = (lines if lines is not None else []).append
    return FunctionRunner(
        app_of(tmp_path, *functions),
        "http://127.0.0.1:1",
        runtimes=RuntimeSetup(progress=progress),
        **{"watch": False, **options},
    )


CONTEXT_PROBE = """
    {export} = {asynchronous}(event, context) => ({{
      kind: "{kind}",
      event,
      greeting: process.env.GREETING,
      functionName: context.functionName,
      requestId: context.awsRequestId,
      arn: context.invokedFunctionArn,
      memory: context.memoryLimitInMB,
      remaining: context.getRemainingTimeInMillis(),
      pid: process.pid,
    }});
"""


async def test_commonjs_and_es_module_handlers_async_sync_and_callback_run_warm(tmp_path: Path) -> None:
    functions = [
        make_function(
            tmp_path,
            "CjsAsync",
            {"app.js": CONTEXT_PROBE.format(export="exports.handler", asynchronous="async ", kind="cjs")},
        ),
        make_function(
            tmp_path,
            "Cjs",
            {
                "app.cjs": CONTEXT_PROBE.format(
                    export="module.exports.handler", asynchronous="", kind="cjs-sync"
                )
            },
        ),
        make_function(
            tmp_path,
            "Mjs",
            {
                "app.mjs": CONTEXT_PROBE.format(
                    export="export const handler", asynchronous="async ", kind="mjs"
                )
            },
        ),
        make_function(
            tmp_path,
            "TypeModule",
            {
                "package.json": '{"type": "module"}',
                "handlers/chat.js": CONTEXT_PROBE.format(
                    export="export const onMessage", asynchronous="async ", kind="type-module"
                ),
            },
            handler="handlers/chat.onMessage",
        ),
        make_function(
            tmp_path,
            "Callback",
            {
                "app.js": """
                exports.handler = (event, context, callback) => {
                  setTimeout(() => callback(null, { kind: "callback", twice: event.n * 2 }), 10);
                };
                """
            },
        ),
    ]
    async with runner_for(tmp_path, *functions) as runner:
        first = {
            f.logical_id: await runner.invoke(f.logical_id, {"n": 21}, request_id=f"req-{f.logical_id}")
            for f in functions
        }
        second = {f.logical_id: await runner.invoke(f.logical_id, {"n": 1}) for f in functions}
    for logical_id, invocation in first.items():
        assert invocation.ok, (logical_id, invocation.error_type, invocation.error_message)
        assert invocation.cold and not second[logical_id].cold, logical_id
    assert first["Callback"].result == {"kind": "callback", "twice": 42}
    kinds = {
        logical_id: first[logical_id].result["kind"]
        for logical_id in ("CjsAsync", "Cjs", "Mjs", "TypeModule")
    }
    assert kinds == {"CjsAsync": "cjs", "Cjs": "cjs-sync", "Mjs": "mjs", "TypeModule": "type-module"}
    probe = first["Mjs"].result
    assert probe["event"] == {"n": 21} and probe["greeting"] == "hi"
    assert probe["functionName"] == "local-Mjs" and probe["requestId"] == "req-Mjs"
    assert (
        probe["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:local-Mjs"
        and probe["memory"] == "256"
    )
    assert 0 < probe["remaining"] <= 20_000
    assert second["Mjs"].result["pid"] == probe["pid"]  # warm: the same worker


async def test_console_output_is_captured_per_invocation_in_lambdas_format(tmp_path: Path) -> None:
    function = make_function(
        tmp_path,
        "Logs",
        {
            "app.mjs": """
            export const handler = async (event) => {
              console.log("visit %d", event.n, { deep: true });
              console.error("careful");
              process.stdout.write("raw line\\n");
              return event.n;
            };
            """
        },
    )
    async with runner_for(tmp_path, function) as runner:
        one = await runner.invoke("Logs", {"n": 1}, request_id="req-one")
        two = await runner.invoke("Logs", {"n": 2}, request_id="req-two")
    assert one.ok and two.ok
    lines = one.logs.splitlines()
    assert lines[0].endswith("\treq-one\tINFO\tvisit 1 { deep: true }"), lines
    assert lines[1].endswith("\treq-one\tERROR\tcareful") and lines[2] == "raw line", lines
    assert "visit 2" in two.logs and "visit 1" not in two.logs and "req-two" in two.logs


async def test_errors_are_reported_with_lambdas_error_types(tmp_path: Path) -> None:
    functions = [
        make_function(
            tmp_path,
            "Throws",
            {"app.js": 'exports.handler = async () => { throw new TypeError("bad input"); };'},
        ),
        make_function(
            tmp_path, "CallsBack", {"app.js": 'exports.handler = (e, c, cb) => cb(new Error("nope"));'}
        ),
        make_function(tmp_path, "NoModule", {"other.js": "exports.handler = async () => 1;"}),
        make_function(tmp_path, "NoHandler", {"app.js": "exports.other = async () => 1;"}),
        make_function(
            tmp_path,
            "MissingImport",
            {"app.mjs": 'import "left-pad-not-installed";\nexport const handler = async () => 1;'},
        ),
        make_function(tmp_path, "Syntax", {"app.js": "exports.handler = async () => {"}),
        make_function(
            tmp_path, "TypeScript", {"app.ts": "export const handler = async (): Promise<number> => 1;"}
        ),
        make_function(
            tmp_path,
            "Rejects",
            {
                "app.js": "exports.handler = async () => {\n"
                '  Promise.reject(new Error("lost"));\n'
                "  await new Promise((r) => setTimeout(r, 200));\n  return process.pid;\n};"
            },
        ),
    ]
    async with runner_for(tmp_path, *functions) as runner:
        results = {f.logical_id: await runner.invoke(f.logical_id, {}) for f in functions}
        after_rejection = await runner.invoke("Rejects", {})
    assert not any(result.ok for result in results.values())
    rejected = results["Rejects"]
    assert (rejected.error_type, rejected.error_message) == (
        "Runtime.UnhandledPromiseRejection",
        "Error: lost",
    )
    assert after_rejection.cold and after_rejection.error_type == "Runtime.UnhandledPromiseRejection"
    assert (results["Throws"].error_type, results["Throws"].error_message) == ("TypeError", "bad input")
    assert results["Throws"].traceback is not None and "TypeError: bad input" in results["Throws"].traceback
    assert '"errorType":"TypeError"' in results["Throws"].logs  # Lambda logs the Invoke Error line
    assert (results["CallsBack"].error_type, results["CallsBack"].error_message) == ("Error", "nope")
    assert results["NoModule"].error_type == "Runtime.ImportModuleError"
    assert results["NoHandler"].error_type == "Runtime.HandlerNotFound"
    assert results["NoHandler"].error_message == "app.handler is undefined or not exported"
    assert results["MissingImport"].error_type == "Runtime.ImportModuleError"
    assert "left-pad-not-installed" in (results["MissingImport"].error_message or "")
    assert results["Syntax"].error_type == "Runtime.UserCodeSyntaxError"
    assert results["TypeScript"].error_type == "Runtime.ImportModuleError"
    assert "app.ts is TypeScript" in (results["TypeScript"].error_message or "")


async def test_a_slow_handler_times_out_and_the_next_invocation_gets_a_fresh_worker(tmp_path: Path) -> None:
    function = make_function(
        tmp_path,
        "Slow",
        {
            "app.js": "exports.handler = async (event) => {\n"
            "  await new Promise((r) => setTimeout(r, event.ms));\n  return process.pid;\n};"
        },
        timeout_s=1,
    )
    async with runner_for(tmp_path, function) as runner:
        quick = await runner.invoke("Slow", {"ms": 1})
        slow = await runner.invoke("Slow", {"ms": 5000})
        after = await runner.invoke("Slow", {"ms": 1})
    assert quick.ok and after.ok
    assert (slow.error_type, slow.error_message) == ("Sandbox.Timedout", "Task timed out after 1.00 seconds")
    assert after.cold and after.result != quick.result


async def test_concurrent_invocations_each_get_their_own_worker(tmp_path: Path) -> None:
    function = make_function(
        tmp_path,
        "Parallel",
        {
            "app.js": "exports.handler = async () => {\n"
            "  await new Promise((r) => setTimeout(r, 500));\n  return process.pid;\n};"
        },
    )
    async with runner_for(tmp_path, function, max_workers_per_function=3) as runner:
        results = await asyncio.gather(*(runner.invoke("Parallel", {}) for _ in range(3)))
    assert all(result.ok for result in results)
    assert len({result.result for result in results}) == 3


async def test_an_edit_reloads_the_function_on_its_next_invocation(tmp_path: Path) -> None:
    function = make_function(tmp_path, "Edited", {"app.mjs": 'export const handler = async () => "before";'})
    async with runner_for(tmp_path, function, watch=True) as runner:
        before = await runner.invoke("Edited", {})
        await asyncio.sleep(0.3)  # the watcher is running
        (function.code_dir / "app.mjs").write_text('export const handler = async () => "after";')
        for _ in range(100):
            if runner.reloads:
                break
            await asyncio.sleep(0.1)
        after = await runner.invoke("Edited", {})
    assert before.result == "before"
    assert after.result == "after" and after.cold


async def test_package_json_dependencies_are_built_once_outside_the_function_folder(tmp_path: Path) -> None:
    manifest = {
        "name": "uses-ms",
        "version": "1.0.0",
        "dependencies": {"ms": "2.1.3"},
        "devDependencies": {"left-pad": "1.3.0"},
    }
    files = {
        "package.json": json.dumps(manifest),
        "app.js": 'const ms = require("ms");\nexports.handler = async () => ms("2 days");',
        "esm.mjs": 'import ms from "ms";\nexport const handler = async () => ms(60000);',
        "dev.js": 'const leftPad = require("left-pad");\nexports.handler = async () => leftPad("x", 3);',
    }
    cjs = make_function(tmp_path, "Deps", files)
    esm = replace(cjs, logical_id="DepsEsm", handler="esm.handler")
    dev = replace(cjs, logical_id="DepsDev", handler="dev.handler")
    lines: list[str] = []
    async with runner_for(tmp_path, cjs, esm, dev, lines=lines) as runner:
        results = [await runner.invoke(logical_id, {}) for logical_id in ("Deps", "DepsEsm", "DepsDev")]
    assert results[0].ok and results[0].result == 172_800_000, results[0]
    assert results[1].ok and results[1].result == "1m", results[1]
    # devDependencies are not installed, as `sam build` leaves them out
    assert results[2].error_type == "Runtime.ImportModuleError" and "left-pad" in (
        results[2].error_message or ""
    )
    assert not (cjs.code_dir / "node_modules").exists() and not (cjs.code_dir / "package-lock.json").exists()
    again: list[str] = []
    async with runner_for(tmp_path, cjs, lines=again) as runner:
        assert (await runner.invoke("Deps", {})).result == 172_800_000
    assert not any("Installing" in line for line in again), again  # cached


async def test_layers_node_modules_and_package_json_resolve_from_commonjs_and_es_modules(
    tmp_path: Path,
) -> None:
    built = tmp_path / "built-layer"  # a layer folder that carries its node_modules
    package = built / "nodejs" / "node_modules" / "greeter"
    package.mkdir(parents=True)
    (package / "package.json").write_text('{"name": "greeter", "main": "index.js"}')
    (package / "index.js").write_text("exports.greet = (name) => `hello ${name}`;")
    declared = tmp_path / "declared-layer"  # a layer with a package.json, built as `sam build` would
    (declared / "nodejs").mkdir(parents=True)
    (declared / "nodejs" / "package.json").write_text('{"dependencies": {"ms": "2.1.3"}}')
    cjs = make_function(
        tmp_path,
        "LayerCjs",
        {"app.js": 'const { greet } = require("greeter");\nconst ms = require("ms");\n'
         'exports.handler = async () => [greet("cjs"), ms(1000)];'},
    )  # fmt: skip
    esm = make_function(
        tmp_path,
        "LayerEsm",
        {"app.mjs": 'import { greet } from "greeter";\nimport ms from "ms";\n'
         'export const handler = async () => [greet("esm"), ms(2000)];'},
    )  # fmt: skip
    without = make_function(
        tmp_path,
        "NoLayer",
        {"app.mjs": 'import { greet } from "greeter";\nexport const handler = async () => 1;'},
    )
    cjs, esm = replace(cjs, layer_dirs=(built, declared)), replace(esm, layer_dirs=(built, declared))
    async with runner_for(tmp_path, cjs, esm, without) as runner:
        results = [await runner.invoke(f.logical_id, {}) for f in (cjs, esm, without)]
    assert [result.result for result in results[:2]] == [["hello cjs", "1s"], ["hello esm", "2s"]], results
    assert results[2].error_type == "Runtime.ImportModuleError"  # only the layers' functions see them
    assert not (declared / "nodejs" / "node_modules").exists()  # built in the cache, not in the layer


async def test_the_declared_major_is_fetched_once_from_the_npm_registry(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    function = make_function(
        tmp_path,
        "Node22",
        {"app.js": "exports.handler = async () => process.versions.node;"},
        runtime="nodejs22.x",
    )
    lines: list[str] = []
    others = [node for node in find_nodes(cache) if node.major != 22]
    setup = NodeSetup(cache_dir=cache, progress=lines.append, nodes=others)
    async with runner_for(tmp_path, function, node_runtimes=setup) as runner:
        fetched = await runner.invoke("Node22", {})
    assert fetched.ok and str(fetched.result).startswith("22."), fetched
    assert any(line.startswith("Fetching Node.js 22") for line in lines), lines
    assert not any(line.startswith("warning:") for line in lines), lines
    again: list[str] = []
    found = find_nodes(cache)  # the cache is looked at like the machine's own Node.js versions
    assert any(node.major == 22 for node in found)
    setup = NodeSetup(cache_dir=cache, progress=again.append, nodes=found)
    async with runner_for(tmp_path, function, node_runtimes=setup) as runner:
        assert str((await runner.invoke("Node22", {})).result).startswith("22.")
    assert again == []


async def test_without_the_declared_major_functions_run_on_the_nearest_with_one_warning(
    tmp_path: Path,
) -> None:
    installed = find_nodes(tmp_path / "empty-cache")
    assert installed, "this machine needs a Node.js"
    functions = [
        make_function(
            tmp_path,
            name,
            {"app.js": "exports.handler = async () => process.versions.node;"},
            runtime="nodejs24.x",
        )
        for name in ("First", "Second")
    ]
    callback = make_function(
        tmp_path, "OldStyle", {"app.js": "exports.handler = (e, c, cb) => cb(null, 1);"}, runtime="nodejs24.x"
    )
    lines: list[str] = []
    setup = NodeSetup(
        cache_dir=tmp_path / "cache",
        progress=lines.append,
        nodes=[n for n in installed if n.major != 24],
        fetch=False,
    )
    async with runner_for(tmp_path, *functions, callback, node_runtimes=setup) as runner:
        results = [await runner.invoke(f.logical_id, {}) for f in functions]
        old_style = await runner.invoke("OldStyle", {})
    assert all(result.ok and not str(result.result).startswith("24.") for result in results), results
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "nodejs24.x" in warnings[0] and "Node.js 24" in warnings[0], lines
    # nodejs24.x has no callback handlers, whichever Node.js runs them locally
    assert old_style.error_type == "Runtime.CallbackHandlerDeprecated"


async def test_the_sdk_v3_uses_the_embedded_endpoint_and_the_roles_policy() -> None:
    async with running(APPS / "node_iam" / "template.yaml") as runtime:
        invocation = await runtime.runner.invoke("NodeReader", {})
        endpoint = runtime.runner.aws_endpoint
    assert invocation.ok, (invocation.error_type, invocation.error_message, invocation.logs)
    result = invocation.result
    assert result["endpoint"] == endpoint and endpoint.startswith("http://127.0.0.1:")
    assert result["put"] == {"status": 200}
    session = "arn:aws:sts::123456789012:assumed-role/rt-NodeReaderRole/rt-NodeReader"
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/rt-Items"
    assert result["get"] == {
        "status": 400,
        "code": "AccessDeniedException",
        "message": f"User: {session} is not authorized to perform: dynamodb:GetItem on resource: {table} "
        "because no identity-based policy allows the dynamodb:GetItem action",
    }


# ---------------------------------------------------------------- host redirects (mgmt endpoint)
def _certificate(
    name: str, issuer_key: Any, issuer: x509.Name | None, key: Any, ca: bool
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[dict[str, str]]]]:
    """A TLS server for `mgmt.example.test` signed by a throwaway CA; it records what it is sent."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Throwaway Test CA", ca_key, None, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("mgmt.example.test", ca_key, ca.subject, key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "host": self.headers.get("Host", ""),
                    "body": body,
                }
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = _answer

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], tmp_path / "ca.pem", seen
    server.shutdown()
    server.server_close()


REDIRECT_PROBE = """
const https = require("node:https");
const {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
} = require("@aws-sdk/client-apigatewaymanagementapi");

function get(url) {
  return new Promise((resolve) => {
    https.get(url, (response) => {
      response.resume();
      response.on("end", () => resolve({ status: response.statusCode }));
    }).on("error", (error) => resolve({ error: error.code || error.message }));
  });
}

exports.handler = async () => {
  const client = new ApiGatewayManagementApiClient({ endpoint: "https://mgmt.example.test/dev" });
  let sdk;
  try {
    const reply = await client.send(new PostToConnectionCommand({ ConnectionId: "abc=", Data: "hello" }));
    sdk = { status: reply.$metadata.httpStatusCode };
  } catch (error) {
    sdk = { error: error.code || error.name, message: error.message };
  }
  return {
    https: await get("https://mgmt.example.test/ping"),
    sdk,
    mismatch: await get("https://wrong.example.test/ping"),
    other: await get("https://not-redirected.example.test/ping"),
  };
};
"""


async def test_management_hosts_are_redirected_to_the_local_tls_port_with_verification_on(
    tmp_path: Path, tls_server: tuple[int, Path, list[dict[str, str]]]
) -> None:
    port, ca_file, seen = tls_server
    function = make_function(tmp_path, "Poster", {"app.js": REDIRECT_PROBE})
    environment = {
        # wrong.example.test reaches the same server, whose certificate names mgmt.example.test only
        "_TIDINGS_HOST_REDIRECTS": json.dumps({"mgmt.example.test": port, "Wrong.Example.Test": port}),
        "NODE_EXTRA_CA_CERTS": str(ca_file),
    }
    async with runner_for(tmp_path, function, extra_environment=environment) as runner:
        invocation = await runner.invoke("Poster", {})
    assert invocation.ok, (invocation.error_type, invocation.error_message, invocation.logs)
    result = invocation.result
    assert result["https"] == {"status": 200}
    assert result["sdk"] == {"status": 200}, result
    assert result["mismatch"] == {"error": "ERR_TLS_CERT_ALTNAME_INVALID"}
    assert result["other"]["error"] in ("ENOTFOUND", "EAI_AGAIN")  # not redirected: a real lookup
    assert {"method": "GET", "path": "/ping", "host": "mgmt.example.test", "body": ""} in seen
    posted = [request for request in seen if request["method"] == "POST"]
    assert posted == [
        {"method": "POST", "path": "/dev/@connections/abc%3D", "host": "mgmt.example.test", "body": "hello"}
    ]
