"""The token route of a Tidings template on the local stack: `/_tidings/token` and `/_tidings/config`.

The progress view (web/) asks `/_tidings/config` for the stack's URLs and `/_tidings/token` for a
token; tokens are minted only here, on the developer's own machine, with the secret the local
stack generated for the template (TOKEN_SECRET_ARN, else its only secret). The secret's id goes
into the state file, so `tidings token` can mint the same tokens.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from tidings.devtools.app import SECRET_VARIABLE, is_tidings_app
from tidings.local.addons import StackHost
from tidings.local.model import LocalApp

PREFIX = "/_tidings"
USER_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
DEFAULT_AUDIENCE = "tidings"


def token_secret_id(app: LocalApp) -> str | None:
    """The secret the functions verify tokens with (TOKEN_SECRET_ARN), else the only secret."""
    for function in app.functions.values():
        arn = function.environment.get(SECRET_VARIABLE)
        if arn:
            return arn
    secrets = [r for r in app.resources if r.kind == "secret"]
    return secrets[0].arn if len(secrets) == 1 else None


def mint_token(host: StackHost, secret_id: str, user: str, ttl_s: int = 3600) -> str:
    """A token signed with the local stack's generated secret (what `tidings token` prints)."""
    from tidings_core.tokens import issue_token

    secret = host.admin_client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    audience = host.app.parameters.get("TokenAudience") or DEFAULT_AUDIENCE
    return issue_token(secret, user, ttl_s, audience=audience)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class TokenRoute:
    """The add-on, on a Tidings template (another app gets no `/_tidings/token`); without a token
    secret `/_tidings/token` answers 404."""

    name = "tokens"

    def install(self, host: StackHost) -> None:
        if not is_tidings_app(host.app):
            return
        secret_id = token_secret_id(host.app)
        host.set_state("token_secret_id", secret_id)

        async def config(request: web.Request) -> web.Response:
            return web.json_response(
                {"websocketUrl": host.websocket_url, "apiUrl": host.http_api_url},
                headers={"Cache-Control": "no-store"},
            )

        async def token(request: web.Request) -> web.Response:
            user = request.query.get("user", "")
            if not USER_ID.fullmatch(user):
                return _error(400, "bad_user", "user must be 1-64 of [A-Za-z0-9_.@-]")
            if secret_id is None:
                return _error(404, "no_secret", "this template has no token secret")
            minted = await asyncio.to_thread(mint_token, host, secret_id, user)
            return web.json_response({"token": minted}, headers={"Cache-Control": "no-store"})

        host.add_routes(
            PREFIX, [web.get("/config", config), web.get("/token", token)], purpose="token minting"
        )
