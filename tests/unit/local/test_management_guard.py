"""Who may call `@connections`: signed with this run's keys, and a role needs ManageConnections.

Requests are signed by botocore's own signer (as a handler's boto3 or `push.ManagementApi` does)
and fed to `ManagementGuard.check` as values.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from tidings.local.aws_guard import Credentials, Denial, ManagementGuard, RunCredentials
from tidings.local.iam import Principal, parse_document

CALLBACK = "http://127.0.0.1:3000/dev"
CONNECTION = "L0SM9cOFvHcCIhw="
ROLE = "arn:aws:iam::123456789012:role/app-NotifyRole-1"
ALLOWED = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/POST/@connections/*"


def principal(*statements: dict[str, Any]) -> Principal:
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    return Principal(ROLE, "NotifyFunction", parse_document(document, "inline"))


def signed(
    credentials: Credentials, method: str = "POST", body: bytes = b'{"a":1}', connection: str = CONNECTION
) -> tuple[str, str, str, dict[str, str], bytes]:
    url = f"{CALLBACK}/@connections/{quote(connection, safe='')}"
    request = AWSRequest(method=method, url=url, data=body)
    boto = BotoCredentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    SigV4Auth(boto, "execute-api", "us-east-1").add_auth(request)
    headers = {name: str(value) for name, value in request.headers.items()}
    headers["Host"] = urlsplit(url).netloc
    return method, urlsplit(url).path, "", headers, body


def guard(run: RunCredentials, denials: list[Denial], *, enforce_iam: bool = True) -> ManagementGuard:
    return ManagementGuard(
        run,
        api_id="abcdef1234",
        region="us-east-1",
        account="123456789012",
        enforce_iam=enforce_iam,
        on_denied=denials.append,
    )


def check(target: ManagementGuard, request: tuple[str, str, str, dict[str, str], bytes]) -> str | None:
    method, path, query, headers, body = request
    return target.check(method, path, query, headers, body, stage="dev", connection_id=CONNECTION)


def test_the_admin_key_may_post_get_and_delete() -> None:
    run = RunCredentials()
    denials: list[Denial] = []
    for method in ("POST", "GET", "DELETE"):
        assert (
            check(guard(run, denials), signed(run.admin, method, b"" if method != "POST" else b"x")) is None
        )
    assert denials == []


def test_without_admin_only_a_functions_role_may_call() -> None:
    """The execute-api and custom-domain hosts (management_endpoints.py) answer the functions only."""
    run = RunCredentials()
    keys = run.issue_role(
        "NotifyFunction",
        principal({"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": ALLOWED}),
    )
    workers_only = ManagementGuard(
        run, api_id="abcdef1234", region="us-east-1", account="123456789012", admin=False
    )
    assert check(workers_only, signed(run.admin)) == "Forbidden"
    assert check(workers_only, signed(keys)) is None


def test_a_role_with_manage_connections_on_post_may_post_but_not_delete() -> None:
    run = RunCredentials()
    keys = run.issue_role(
        "NotifyFunction",
        principal({"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": ALLOWED}),
    )
    denials: list[Denial] = []
    assert check(guard(run, denials), signed(keys)) is None
    refused = check(guard(run, denials), signed(keys, "DELETE", b""))
    resource = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/DELETE/@connections/{connectionId}"
    assert refused == (
        "User: arn:aws:sts::123456789012:assumed-role/app-NotifyRole-1/NotifyFunction is not authorized "
        f"to perform: execute-api:ManageConnections on resource: {resource} because no identity-based "
        "policy allows the execute-api:ManageConnections action"
    )
    [denial] = denials
    assert denial.caller == "NotifyFunction"
    assert denial.line() == (
        "NotifyFunction: execute-api:ManageConnections on abcdef1234/dev/DELETE/@connections/{connectionId} "
        "denied — add it to the function's Policies"
    )


def test_a_role_without_the_grant_is_refused_and_an_explicit_deny_wins() -> None:
    run = RunCredentials()
    none = run.issue_role("Quiet", principal({"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}))
    denied = run.issue_role(
        "Denied",
        principal(
            {"Effect": "Allow", "Action": "execute-api:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "execute-api:ManageConnections", "Resource": ALLOWED},
        ),
    )
    denials: list[Denial] = []
    assert "because no identity-based policy allows" in str(check(guard(run, denials), signed(none)))
    assert "with an explicit deny" in str(check(guard(run, denials), signed(denied)))
    assert [d.caller for d in denials] == ["Quiet", "Denied"]


def test_without_iam_a_role_may_call_but_must_still_sign_with_a_run_key() -> None:
    run = RunCredentials()
    keys = run.issue_role("Quiet", principal({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}))
    denials: list[Denial] = []
    assert check(guard(run, denials, enforce_iam=False), signed(keys)) is None
    stranger = Credentials("AKIAFOREIGNFOREIGN00", "s" * 40)
    assert check(guard(run, denials, enforce_iam=False), signed(stranger)) == "Forbidden"
    assert denials == []


def test_unsigned_unknown_forged_stale_and_tampered_requests_are_forbidden() -> None:
    run = RunCredentials()
    target = guard(run, [])
    method, path, query, headers, body = signed(run.admin)
    unsigned = {"Host": headers["Host"]}
    assert (
        target.check(method, path, query, unsigned, body, stage="dev", connection_id=CONNECTION)
        == "Forbidden"
    )
    assert check(target, signed(Credentials("AKIALOCALLOCAL000000", "local"))) == "Forbidden"
    assert check(target, signed(Credentials(run.admin.access_key_id, "not-the-secret"))) == "Forbidden"
    tampered = target.check(method, path, query, headers, b'{"a":2}', stage="dev", connection_id=CONNECTION)
    assert tampered == "Forbidden"
    later = ManagementGuard(
        run,
        api_id="abcdef1234",
        region="us-east-1",
        account="123456789012",
        clock=lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=20),
    )
    assert check(later, signed(run.admin)) == "Forbidden"
    # a role's key without its session token is not the role's
    keys = run.issue_role("Any", principal({"Effect": "Allow", "Action": "*", "Resource": "*"}))
    assert check(target, signed(Credentials(keys.access_key_id, keys.secret_access_key))) == "Forbidden"


def test_the_resource_is_the_route_template_so_a_policy_naming_one_connection_id_never_matches() -> None:
    """API Gateway names `.../POST/@connections/{connectionId}` (braces and all) in its refusals:
    a policy with that literal resource allows every post, one with a real id allows none."""
    run = RunCredentials()
    template = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/dev/POST/@connections/{connectionId}"
    by_template = run.issue_role(
        "TemplateFunction",
        principal({"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": template}),
    )
    one_id = template.replace("{connectionId}", CONNECTION)
    by_id = run.issue_role(
        "IdFunction",
        principal({"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": one_id}),
    )
    assert check(guard(run, []), signed(by_template)) is None
    assert check(guard(run, []), signed(by_template, connection="OtherId0000000=")) is None
    refused = check(guard(run, []), signed(by_id))
    assert refused is not None and f"on resource: {template} " in refused


def test_a_role_sessions_decision_is_evaluated_once_per_stage_and_method_until_the_keys_change(
    monkeypatch: Any,
) -> None:
    from tidings.local import aws_guard

    evaluated: list[str] = []
    real = aws_guard.evaluate

    def counting(statements: Any, action: str, resource: str, context: Any = None, **kw: Any) -> Any:
        evaluated.append(resource)
        return real(statements, action, resource, context, **kw)

    monkeypatch.setattr(aws_guard, "evaluate", counting)
    run = RunCredentials()
    grant = {"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": ALLOWED}
    keys = run.issue_role("NotifyFunction", principal(grant))
    denials: list[Denial] = []
    target = guard(run, denials)
    for connection in ("AAAAAAAAAAAAAAA=", "BBBBBBBBBBBBBBB=", CONNECTION):
        assert check(target, signed(keys, connection=connection)) is None
    assert len(evaluated) == 1  # three posts, one evaluation: the resource names no connection
    for _ in range(2):  # a refusal is remembered too, and still reported every time
        assert "no identity-based policy" in str(check(target, signed(keys, "DELETE", b"")))
    assert len(evaluated) == 2 and len(denials) == 2
    # a template reload: the function's new session denies posts; the old key is gone
    deny = {"Effect": "Deny", "Action": "execute-api:ManageConnections", "Resource": ALLOWED}
    run.revoke([keys])
    again = run.issue_role("NotifyFunction", principal(grant, deny))
    assert check(target, signed(keys)) == "Forbidden"
    assert "with an explicit deny" in str(check(target, signed(again)))
    assert len(evaluated) == 3
