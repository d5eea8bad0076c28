"""IAM policy evaluation as AWS documents it, for one principal's statements: pure code, no I/O.

The rules (IAM User Guide, "Policy evaluation logic" and "Condition operators"):
- an explicit `Deny` whose Action, Resource and Condition match wins over everything;
- otherwise an `Allow` that matches allows; with no matching statement the call is implicitly denied;
- `Action`/`NotAction` match case-insensitively with `*` and `?`; `Resource`/`NotResource` match
  case-sensitively with `*` and `?`, the ARN's service, region and account segment by segment;
- every operator of a statement's `Condition` must hold (AND), any value of one key may match (OR);
  a key missing from the request makes a condition false, except for negated operators (true),
  `...IfExists` (true) and `Null`.

A policy with an operator or key this module cannot evaluate raises `UnsupportedPolicy` when it is
read, so the stack stops at start with one line naming it rather than allowing the call silently.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALLOW = "Allow"
DENY = "Deny"

# Condition keys a request context built by `iam_requests.py` can hold (lower case: keys are
# case-insensitive). Anything else in a policy is refused at start.
SUPPORTED_KEYS = frozenset(
    {
        "aws:sourcearn",
        "aws:sourceaccount",
        "aws:principalarn",
        "aws:principalaccount",
        "aws:principaltype",
        "aws:requestedregion",
        "aws:securetransport",
        "aws:calledvia",
        "s3:prefix",
        "s3:delimiter",
        "s3:max-keys",
    }
)
_STRING_OPERATORS = {
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "ArnEquals",
    "ArnNotEquals",
    "ArnLike",
    "ArnNotLike",
    "Bool",
}
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


class UnsupportedPolicy(ValueError):
    """A policy uses what the evaluator cannot evaluate; the message names it and where it is."""


@dataclass(frozen=True)
class Condition:
    operator: str  # base operator, e.g. StringLike
    key: str  # lower case
    values: tuple[str, ...]
    if_exists: bool = False
    qualifier: str = ""  # "" | "ForAnyValue" | "ForAllValues"


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_action: bool = False
    not_resource: bool = False
    conditions: tuple[Condition, ...] = ()
    principals: tuple[str, ...] | None = None  # resource policies only: "*" or service / ARN names
    not_principal: bool = False
    sid: str = ""
    source: str = ""  # the policy it came from, for messages


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # "allowed" | "explicit deny" | "implicit deny"
    statement: Statement | None = None


@dataclass(frozen=True)
class Principal:
    """Who calls: a role session (a function's or a state machine's execution role)."""

    role_arn: str
    session: str
    statements: tuple[Statement, ...] = field(default=(), repr=False)

    @property
    def arn(self) -> str:
        """The assumed-role ARN AWS names in its AccessDenied messages."""
        head, _, path_name = self.role_arn.partition(":role/")
        account = head.split(":")[4]
        partition = head.split(":")[1]
        return f"arn:{partition}:sts::{account}:assumed-role/{path_name.rsplit('/', 1)[-1]}/{self.session}"


# ---------------------------------------------------------------- reading policies
def _as_tuple(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, (str, int, float)):
            out.append(str(item))
        else:
            raise UnsupportedPolicy(f"{where}: {item!r} is not a string (an unresolved intrinsic?)")
    return tuple(out)


def _conditions(block: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(block, dict):
        raise UnsupportedPolicy(f"{where}.Condition: not a map")
    conditions = []
    for raw_operator, keys in block.items():
        qualifier, _, operator = str(raw_operator).rpartition(":")
        if qualifier not in ("", "ForAnyValue", "ForAllValues"):
            raise UnsupportedPolicy(f"{where}: condition operator {raw_operator} is not supported locally")
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists")
        if base not in _STRING_OPERATORS and base != "Null":
            raise UnsupportedPolicy(f"{where}: condition operator {raw_operator} is not supported locally")
        if not isinstance(keys, dict):
            raise UnsupportedPolicy(f"{where}: condition {raw_operator} is not a map of keys")
        for key, values in keys.items():
            lowered = str(key).lower()
            if lowered not in SUPPORTED_KEYS:
                raise UnsupportedPolicy(
                    f"{where}: condition key {key} ({raw_operator}) is not supported locally"
                )
            for value in _as_tuple(values, where):
                if "${" in value:
                    raise UnsupportedPolicy(f"{where}: policy variable in {value!r} is not supported locally")
            conditions.append(Condition(base, lowered, _as_tuple(values, where), if_exists, qualifier))
    return tuple(conditions)


def _principals(value: Any, where: str) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if not isinstance(value, dict):
        raise UnsupportedPolicy(f"{where}.Principal: {value!r} is not supported locally")
    names: list[str] = []
    for kind, entries in value.items():
        if kind not in ("AWS", "Service"):
            raise UnsupportedPolicy(f"{where}.Principal: {kind} principals are not supported locally")
        names.extend(_as_tuple(entries, where))
    return tuple(names)


def parse_document(document: Mapping[str, Any], source: str) -> tuple[Statement, ...]:
    """The statements of one policy document; `source` names it in messages and errors."""
    raw = document.get("Statement", [])
    items = raw if isinstance(raw, list) else [raw]
    statements = []
    for index, item in enumerate(items):
        where = f"{source} Statement[{index}]"
        if not isinstance(item, dict):
            raise UnsupportedPolicy(f"{where}: not a map")
        effect = item.get("Effect")
        if effect not in (ALLOW, DENY):
            raise UnsupportedPolicy(f"{where}: Effect must be Allow or Deny, not {effect!r}")
        not_action = "NotAction" in item
        not_resource = "NotResource" in item
        actions = _as_tuple(item.get("NotAction" if not_action else "Action", []), where)
        has_resource = "Resource" in item or not_resource
        resources = _as_tuple(item.get("NotResource" if not_resource else "Resource", "*"), where)
        for resource in resources:
            if "${" in resource:
                raise UnsupportedPolicy(f"{where}: policy variable in {resource!r} is not supported locally")
        principals = None
        not_principal = "NotPrincipal" in item
        if "Principal" in item or not_principal:
            principals = _principals(item.get("NotPrincipal" if not_principal else "Principal"), where)
        elif not has_resource:
            raise UnsupportedPolicy(f"{where}: no Resource")
        statements.append(
            Statement(
                effect=effect,
                actions=actions,
                resources=resources,
                not_action=not_action,
                not_resource=not_resource,
                conditions=_conditions(item.get("Condition", {}), where),
                principals=principals,
                not_principal=not_principal,
                sid=str(item.get("Sid", "")),
                source=source,
            )
        )
    return tuple(statements)


@functools.cache
def _managed_policies() -> dict[str, dict[str, Any]]:
    """AWS managed policies by ARN, from the copy moto ships (moto/iam/aws_managed_policies.py)."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    data: dict[str, dict[str, Any]] = json.loads(aws_managed_policies_data)
    return {
        f"arn:aws:iam::aws:policy{entry['Path']}{name}": entry["Document"] for name, entry in data.items()
    }


def managed_policy(arn: str) -> tuple[Statement, ...]:
    """An AWS managed policy's statements by ARN (any partition); unknown ARNs are refused."""
    normalized = re.sub(r"^arn:[^:]+:", "arn:aws:", arn)
    document = _managed_policies().get(normalized)
    if document is None:
        raise UnsupportedPolicy(f"managed policy {arn}: not an AWS managed policy known locally")
    return parse_document(document, arn.rsplit("/", 1)[-1])


# ---------------------------------------------------------------- matching
@functools.lru_cache(maxsize=4096)
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # fnmatch.translate knows [...] classes, IAM does not: escape them first
    escaped = pattern.replace("[", "[[]")
    return re.compile(fnmatch.translate(escaped), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's `*` (any run, also empty) and `?` (one character) matching of the whole value."""
    if pattern == "*":
        return True
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == value.lower() if ignore_case else pattern == value
    return _pattern(pattern, ignore_case).match(value) is not None


def action_matches(pattern: str, action: str) -> bool:
    return wildcard_match(pattern, action, ignore_case=True)


def arn_matches(pattern: str, arn: str) -> bool:
    """Resource and ArnLike matching: partition, service, region and account each on their own,
    then the resource part (which may itself hold `:` and `/`) as one string."""
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return wildcard_match(pattern, arn)
    return all(wildcard_match(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def _value_matches(operator: str, pattern: str, value: str) -> bool:
    if operator in ("StringEquals", "StringNotEquals"):
        return pattern == value
    if operator in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return pattern.lower() == value.lower()
    if operator in ("StringLike", "StringNotLike"):
        return wildcard_match(pattern, value)
    if operator == "Bool":
        return pattern.lower() == value.lower()
    return arn_matches(pattern, value)  # ArnEquals/ArnLike and their negations: the same matching


def condition_holds(condition: Condition, context: Mapping[str, Sequence[str]]) -> bool:
    values = context.get(condition.key)
    present = values is not None and len(values) > 0
    if condition.operator == "Null":
        wants_absent = any(v.lower() == "true" for v in condition.values)
        return wants_absent != present
    if not present:
        if condition.if_exists:
            return True
        if condition.qualifier == "ForAllValues":
            return True  # every value of an empty set matches
        return condition.operator in _NEGATED
    assert values is not None
    negated = condition.operator in _NEGATED

    def one(value: str) -> bool:
        matched = any(_value_matches(condition.operator, pattern, value) for pattern in condition.values)
        return not matched if negated else matched

    if condition.qualifier == "ForAllValues":
        return all(one(value) for value in values)
    return any(one(value) for value in values)


def _matches(statement: Statement, action: str, resource: str, context: Mapping[str, Sequence[str]]) -> bool:
    action_hit = any(action_matches(pattern, action) for pattern in statement.actions)
    if action_hit == statement.not_action:
        return False
    resource_hit = any(arn_matches(pattern, resource) for pattern in statement.resources)
    if resource_hit == statement.not_resource:
        return False
    return all(condition_holds(condition, context) for condition in statement.conditions)


def principal_matches(statement: Statement, principal: str) -> bool:
    """Resource policies: does the statement's Principal name the caller (a service or an ARN)?"""
    if statement.principals is None:
        return True
    hit = any(
        name == "*" or name == principal or (name.endswith(":root") and principal.startswith(name[:-4]))
        for name in statement.principals
    )
    return hit != statement.not_principal


def evaluate(
    statements: Iterable[Statement],
    action: str,
    resource: str,
    context: Mapping[str, Sequence[str]] | None = None,
    *,
    principal: str | None = None,
) -> Decision:
    """Deny beats Allow beats the implicit deny. `context` keys are lower case.

    `principal` is given when `statements` form a resource policy (their Principal must name it).
    """
    context = context or {}
    allowing: Statement | None = None
    for statement in statements:
        if principal is not None and not principal_matches(statement, principal):
            continue
        if not _matches(statement, action, resource, context):
            continue
        if statement.effect == DENY:
            return Decision(False, "explicit deny", statement)
        allowing = allowing or statement
    if allowing is not None:
        return Decision(True, "allowed", allowing)
    return Decision(False, "implicit deny")


def context_of(values: Mapping[str, str | Sequence[str] | None]) -> dict[str, tuple[str, ...]]:
    """A request context from key -> value(s); None values are left out (the key is absent)."""
    out: dict[str, tuple[str, ...]] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key.lower()] = (value,) if isinstance(value, str) else tuple(value)
    return out


def denial_message(principal_arn: str, action: str, resource: str, decision: Decision) -> str:
    """AWS's wording: `User: ARN is not authorized to perform: ACTION on resource: RES because ...`."""
    if decision.reason == "explicit deny":
        because = "with an explicit deny in an identity-based policy"
    else:
        because = "because no identity-based policy allows the " + action + " action"
    return f"User: {principal_arn} is not authorized to perform: {action} on resource: {resource} {because}"


def short_resource(arn: str) -> str:
    """`table/JobsTable` out of a DynamoDB table ARN, `bucket/key` out of an S3 ARN: for terminal lines."""
    parts = arn.split(":", 5)
    return parts[5] if len(parts) == 6 else arn


def role_statements(
    documents: Iterable[tuple[str, Mapping[str, Any]]], managed_arns: Iterable[str]
) -> tuple[Statement, ...]:
    """Every statement of a role: its documents (name, document) and its AWS managed policies."""
    statements: list[Statement] = []
    for name, document in documents:
        statements.extend(parse_document(document, name))
    for arn in managed_arns:
        statements.extend(managed_policy(arn))
    return tuple(statements)
