"""A reload revokes whole runs of keys: every key a template's run was issued is in `issued_keys`,
so neither the old run's keys (after a reload) nor a refused reload's new ones stay valid."""

from __future__ import annotations

from tidings.local.aws_guard import AppCredentials, Credentials
from tidings.local.stack import issued_keys


def _key(name: str) -> Credentials:
    return Credentials(f"ASIA{name.upper()}", "secret", "token")


def test_issued_keys_holds_the_functions_machines_and_integrations_keys() -> None:
    issued = AppCredentials(
        functions={"Fn": _key("fn")},
        machines={},
        integrations={"arn:aws:iam::123456789012:role/Integration": _key("integration")},
        machine_keys={"Machine": _key("machine")},
    )
    assert sorted(key.access_key_id for key in issued_keys(issued)) == [
        "ASIAFN",
        "ASIAINTEGRATION",
        "ASIAMACHINE",
    ]
