"""HTTP API routes (payload format 2.0) and static files on the HTTP port."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from tidings.local.model import HttpRoute

from .conftest import Stack, StackFactory

ROUTES = (
    HttpRoute("HttpApi", "POST", "/jobs", "jobs"),
    HttpRoute("HttpApi", "GET", "/jobs/{jobId}", "job"),
    HttpRoute("HttpApi", "ANY", "/files/{proxy+}", "files"),
    HttpRoute(
        "HttpApi",
        "GET",
        "/me",
        "me",
        authorizer_function_id="authz",
        identity_sources=("$request.header.Authorization",),
    ),
    HttpRoute("HttpApi", "GET", "/broken", "fail"),
)


def handlers() -> dict[str, Any]:
    return {
        "jobs": lambda event: {
            "statusCode": 201,
            "headers": {"X-Job": "created"},
            "cookies": ["a=1", "b=2"],
            "body": json.dumps({"echo": event}),
        },
        "job": lambda event: {"jobId": event["pathParameters"]["jobId"]},
        "files": lambda event: {"statusCode": 200, "body": json.dumps({"event": event})},
        "me": lambda event: {"who": event["requestContext"]["authorizer"]["lambda"]["user"]},
        "authz": lambda event: {
            "isAuthorized": event["identitySource"] == ["Bearer good"],
            "context": {"user": "alice"},
        },
    }


async def start(stack_factory: StackFactory, static_dirs: tuple[Path, ...] = ()) -> Stack:
    stack: Stack = await stack_factory(handlers=handlers(), http_routes=ROUTES, static_dirs=static_dirs)
    return stack


def base(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.http_port}"


async def test_post_route_event_and_proxy_result(stack_factory: StackFactory) -> None:
    stack = await start(stack_factory)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base(stack)}/jobs?x=1&x=2", json={"name": "clip"}, headers={"Cookie": "s=abc; t=def"}
        ) as response,
    ):
        assert response.status == 201
        assert response.headers["X-Job"] == "created"
        assert response.headers.getall("Set-Cookie") == ["a=1", "b=2"]
        event = (await response.json())["echo"]
    APIGatewayProxyEventV2Model.model_validate(event)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /jobs"
    assert event["rawPath"] == "/jobs"
    assert event["rawQueryString"] == "x=1&x=2"
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert event["cookies"] == ["s=abc", "t=def"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["content-type"] == "application/json"
    assert json.loads(event["body"]) == {"name": "clip"}
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["path"] == "/jobs"


async def test_bare_result_is_200_json_and_path_parameters(stack_factory: StackFactory) -> None:
    stack = await start(stack_factory)
    async with aiohttp.ClientSession() as session, session.get(f"{base(stack)}/jobs/j-42") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert await response.json() == {"jobId": "j-42"}
    [event] = stack.invoker.events_for("job")
    assert "queryStringParameters" not in event and "body" not in event


async def test_binary_body_is_base64_and_greedy_path(stack_factory: StackFactory) -> None:
    stack = await start(stack_factory)
    payload = bytes(range(256))
    async with aiohttp.ClientSession() as session:
        url = f"{base(stack)}/files/a/b.bin"
        headers = {"Content-Type": "application/octet-stream"}
        async with session.put(url, data=payload, headers=headers) as response:
            event = (await response.json())["event"]
    assert event["routeKey"] == "ANY /files/{proxy+}"
    assert event["pathParameters"] == {"proxy": "a/b.bin"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


async def test_lambda_authorizer_simple_responses(stack_factory: StackFactory) -> None:
    stack = await start(stack_factory)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base(stack)}/me") as response:
            assert response.status == 401
        async with session.get(f"{base(stack)}/me", headers={"Authorization": "Bearer bad"}) as response:
            assert response.status == 403
        async with session.get(f"{base(stack)}/me", headers={"Authorization": "Bearer good"}) as response:
            assert response.status == 200
            assert await response.json() == {"who": "alice"}
    assert len(stack.invoker.events_for("authz")) == 2  # not invoked without the identity source
    event = stack.invoker.events_for("authz")[0]
    assert event["type"] == "REQUEST" and event["version"] == "2.0"
    assert event["routeArn"].endswith("/$default/GET/me")


async def test_failing_function_is_500(stack_factory: StackFactory) -> None:
    stack = await start(stack_factory)
    async with aiohttp.ClientSession() as session, session.get(f"{base(stack)}/broken") as response:
        assert response.status == 500
        assert await response.json() == {"message": "Internal Server Error"}


async def test_static_files_and_management_routes_win(stack_factory: StackFactory, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>progress</h1>")
    (tmp_path / "app.js").write_text("export {}")
    shadow = tmp_path / "dev" / "@connections"
    shadow.mkdir(parents=True)
    (shadow / "AAAAAAAAAAAAAAA=").write_text("static must not win")
    stack = await start(stack_factory, static_dirs=(tmp_path,))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base(stack)}/") as response:
            assert response.status == 200
            assert await response.text() == "<h1>progress</h1>"
        async with session.get(f"{base(stack)}/app.js") as response:
            assert await response.text() == "export {}"
        async with session.get(f"{base(stack)}/dev/@connections/AAAAAAAAAAAAAAA%3D") as response:
            assert response.status == 410
        async with session.get(f"{base(stack)}/missing.css") as response:
            assert response.status == 404
        async with session.get(f"{base(stack)}/%2E%2E/%2E%2E/etc/passwd") as response:
            assert response.status == 404


async def test_default_route_catches_what_nothing_else_matched(
    stack_factory: StackFactory, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("home")
    routes = (*ROUTES, HttpRoute("HttpApi", "$default", "/", "fallback"))
    stack: Stack = await stack_factory(
        handlers={
            **handlers(),
            "fallback": lambda event: {"routeKey": event["routeKey"], "path": event["rawPath"]},
        },
        http_routes=routes,
        static_dirs=(tmp_path,),
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base(stack)}/") as response:
            assert await response.text() == "home"  # a static file wins over $default
        async with session.get(f"{base(stack)}/jobs/j-1") as response:
            assert await response.json() == {"jobId": "j-1"}
        async with session.get(f"{base(stack)}/nowhere") as response:
            assert await response.json() == {"routeKey": "$default", "path": "/nowhere"}
        async with session.delete(f"{base(stack)}/else/where") as response:
            assert await response.json() == {"routeKey": "$default", "path": "/else/where"}
    assert all("pathParameters" not in event for event in stack.invoker.events_for("fallback"))
