"""Whether a template is a Tidings app: Tidings' add-ons leave any other app alone."""

from __future__ import annotations

from tidings.local.model import LocalApp

SUBSCRIPTIONS_VARIABLE = "SUBSCRIPTIONS_TABLE"
SECRET_VARIABLE = "TOKEN_SECRET_ARN"  # noqa: S105 - the name of a variable, not a secret
# A function told where the subscriptions are, or which secret signs tokens
TIDINGS_VARIABLES = frozenset({SUBSCRIPTIONS_VARIABLE, SECRET_VARIABLE})


def is_tidings_app(app: LocalApp) -> bool:
    return any(TIDINGS_VARIABLES & set(function.environment) for function in app.functions.values())
