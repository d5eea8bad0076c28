"""AWS's rules, not only its shapes: invoke permissions and the declared runtime, on a small app
(rules_app/, not Tidings) that breaks them on purpose. Each test fails without its rule."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
import pytest_asyncio
import websockets
from websockets.exceptions import InvalidStatus

from tidings.local.stack import DevOptions, LocalStack, RunningStack

RULES_TEMPLATE = Path(__file__).parent / "rules_app" / "template.yaml"
# one stack (and its event loop) serves the module's tests
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def start(**overrides: str) -> tuple[RunningStack, io.StringIO]:
    out = io.StringIO()
    options = DevOptions(
        template=RULES_TEMPLATE,
        ws_port=0,
        http_port=0,
        aws_port=0,
        demo=False,
        parameter_overrides=dict(overrides),
    )
    running = await LocalStack(options, out=out).start()  # stops what it started if it fails
    return running, out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rules_stack() -> AsyncIterator[tuple[RunningStack, io.StringIO]]:
    stack, out = await start()
    yield stack, out
    await stack.stop()


def http_get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    try:
        with urlopen(Request(url, headers=headers), timeout=30) as response:  # noqa: S310 - 127.0.0.1
            return response.status, {"body": response.read().decode()}
    except HTTPError as error:
        return error.code, json.loads(error.read())


# ---------------------------------------------------------------------------- invoke permissions
async def test_websocket_route_without_invoke_permission_answers_internal_server_error(
    rules_stack: tuple[RunningStack, io.StringIO],
) -> None:
    stack, out = rules_stack
    assert stack.urls is not None
    async with websockets.connect(stack.urls.websocket_url) as ws:
        await ws.send(json.dumps({"action": "permitted", "text": "hi"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30)) == {"echo": "hi"}
        await ws.send(json.dumps({"action": "unpermitted", "text": "hi"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert reply["message"] == "Internal server error"
    assert {"connectionId", "requestId"} <= set(reply)
    line = next(line for line in out.getvalue().splitlines() if "UnpermittedFunction" in line)
    assert "AccessDeniedException" in line and "AWS::Lambda::Permission" in line
    assert "/test/unpermitted" in line  # the SourceArn a permission must match


async def test_http_api_authorizer_without_permission_answers_500(
    rules_stack: tuple[RunningStack, io.StringIO],
) -> None:
    stack, out = rules_stack
    assert stack.urls is not None
    status, body = await asyncio.to_thread(
        http_get, f"{stack.urls.http_url}/hello", {"Authorization": "let-me-in"}
    )
    assert (status, body) == (500, {"message": "Internal Server Error"})
    line = next(line for line in out.getvalue().splitlines() if "HttpAuthorizerFunction" in line)
    assert "AccessDeniedException" in line and "EnableFunctionDefaultPermissions" in line
    assert "/authorizers/" in line


async def test_eventbridge_target_without_permission_goes_to_the_dead_letter_queue(
    rules_stack: tuple[RunningStack, io.StringIO],
) -> None:
    stack, out = rules_stack
    assert stack.runner is not None and stack.delivery is not None
    sent = await stack.runner.invoke("PublisherFunction", {})
    assert sent.ok, sent
    await asyncio.sleep(0.5)  # moto hands the event over on its own thread
    await stack.delivery.drain()
    parked = await stack.runner.invoke("PublisherFunction", {"read": True})
    assert parked.ok, parked
    assert len(parked.result) == 1
    assert parked.result[0]["body"]["source"] == "rules.test"
    assert parked.result[0]["attributes"]["ERROR_CODE"] == "AccessDeniedException"
    # the rule's RetryPolicy (1 retry): two refused attempts, each on the terminal
    refused = [
        line
        for line in out.getvalue().splitlines()
        if "UnpermittedFunction" in line and "events.amazonaws.com" in line
    ]
    assert len(refused) == 2, out.getvalue()


# ---------------------------------------------------------------------------- the declared runtime
async def test_function_importing_a_package_it_does_not_ship_fails_with_import_module_error(
    rules_stack: tuple[RunningStack, io.StringIO],
) -> None:
    import yaml  # the local stack's own virtualenv has it: the function still must not see it

    assert yaml.__name__ == "yaml"
    stack, _ = rules_stack
    assert stack.runner is not None
    invocation = await stack.runner.invoke("ImportsUnshippedFunction", {})
    assert not invocation.ok
    assert invocation.error_type == "Runtime.ImportModuleError"
    assert invocation.error_message == "Unable to import module 'app': No module named 'yaml'"


async def test_python312_function_runs_on_python_312_with_the_runtime_sdk_only(
    rules_stack: tuple[RunningStack, io.StringIO],
) -> None:
    from tidings.local.runtimes import RUNTIME_SDK

    stack, _ = rules_stack
    assert stack.runner is not None
    invocation = await stack.runner.invoke("VersionFunction", {})
    assert invocation.ok, invocation
    assert invocation.result["version"] == [3, 12]
    assert f"boto3=={invocation.result['boto3']}" in RUNTIME_SDK["python3.12"]
    assert not any(".venv" in entry or "site-packages" in entry for entry in invocation.result["path"])


# last: a second stack in this process takes over EventBridge delivery from the module's one
async def test_connect_without_invoke_permission_fails_the_handshake_with_500() -> None:
    stack, out = await start(ConnectPermitted="no")
    try:
        assert stack.urls is not None
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(stack.urls.websocket_url):
                pass
        assert refused.value.response.status_code == 500
        assert "PermittedFunction" in out.getvalue() and "/test/$connect" in out.getvalue()
    finally:
        await stack.stop()
