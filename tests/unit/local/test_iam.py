"""iam.py against the evaluation rules of the IAM User Guide ("Policy evaluation logic",
"Condition operators", "IAM JSON policy elements: Action / Resource / NotAction")."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.local.iam import (
    Principal,
    UnsupportedPolicy,
    arn_matches,
    context_of,
    denial_message,
    evaluate,
    managed_policy,
    parse_document,
    role_statements,
)

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/Jobs"
BUCKET = "arn:aws:s3:::work-bucket"


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_no_statement_is_an_implicit_deny() -> None:
    decision = evaluate(parse_document(doc(allow("dynamodb:GetItem", TABLE)), "p"), "dynamodb:PutItem", TABLE)
    assert (decision.allowed, decision.reason) == (False, "implicit deny")


def test_explicit_deny_beats_any_allow_in_any_order() -> None:
    deny = {"Effect": "Deny", "Action": "dynamodb:*", "Resource": TABLE}
    for statements in ([allow("*", "*"), deny], [deny, allow("*", "*")]):
        decision = evaluate(parse_document(doc(*statements), "p"), "dynamodb:GetItem", TABLE)
        assert (decision.allowed, decision.reason) == (False, "explicit deny")


def test_actions_match_case_insensitively_with_wildcards() -> None:
    statements = parse_document(doc(allow(["DynamoDB:get*", "s3:?utObject"], "*")), "p")
    assert evaluate(statements, "dynamodb:GetItem", TABLE).allowed
    assert evaluate(statements, "s3:PutObject", BUCKET + "/k").allowed  # ? is one character
    assert not evaluate(statements, "s3:OutputObject", BUCKET + "/k").allowed
    assert not evaluate(statements, "dynamodb:PutItem", TABLE).allowed
    assert not evaluate(statements, "s3:PutObjectAcl", BUCKET + "/k").allowed


def test_resources_match_case_sensitively_and_an_index_is_its_own_arn() -> None:
    statements = parse_document(doc(allow("dynamodb:Query", TABLE)), "p")
    assert evaluate(statements, "dynamodb:Query", TABLE).allowed
    assert not evaluate(statements, "dynamodb:Query", TABLE + "/index/ByUser").allowed
    assert not evaluate(statements, "dynamodb:Query", TABLE.replace("Jobs", "jobs")).allowed
    indexes = parse_document(doc(allow("dynamodb:Query", TABLE + "/index/*")), "p")
    assert evaluate(indexes, "dynamodb:Query", TABLE + "/index/ByUser").allowed


def test_arn_segments_do_not_absorb_each_other_but_the_resource_part_spans_slashes() -> None:
    assert arn_matches("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b/c.mp4")
    assert arn_matches(
        "arn:aws:lambda:*:123456789012:function:f*", "arn:aws:lambda:eu-west-1:123456789012:function:f:live"
    )
    assert not arn_matches(
        "arn:aws:lambda:*:123456789012:function:f*", "arn:aws:lambda:eu-west-1:999999999999:function:f"
    )
    assert not arn_matches("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket2/x")


def test_not_action_and_not_resource_allow_everything_else() -> None:
    statements = parse_document(
        doc({"Effect": "Allow", "NotAction": "s3:DeleteObject", "NotResource": BUCKET + "/private/*"}), "p"
    )
    assert evaluate(statements, "s3:GetObject", BUCKET + "/public/a").allowed
    assert not evaluate(statements, "s3:DeleteObject", BUCKET + "/public/a").allowed
    assert not evaluate(statements, "s3:GetObject", BUCKET + "/private/a").allowed


def test_string_like_on_s3_prefix_and_a_missing_key_is_false() -> None:
    statements = parse_document(
        doc(allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": ["work/*"]}})), "p"
    )
    assert evaluate(statements, "s3:ListBucket", BUCKET, context_of({"s3:prefix": "work/job-1/"})).allowed
    assert not evaluate(statements, "s3:ListBucket", BUCKET, context_of({"s3:prefix": "outputs/"})).allowed
    assert not evaluate(statements, "s3:ListBucket", BUCKET, context_of({})).allowed


def test_negated_operators_hold_when_the_key_is_missing_if_exists_too() -> None:
    rule = "arn:aws:events:us-east-1:123456789012:rule/bus/r"
    negated = parse_document(doc(allow("sqs:*", "*", Condition={"ArnNotLike": {"aws:SourceArn": rule}})), "p")
    assert evaluate(negated, "sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:q").allowed
    assert not evaluate(negated, "sqs:SendMessage", "x", context_of({"aws:SourceArn": rule})).allowed
    if_exists = parse_document(
        doc(allow("sqs:*", "*", Condition={"StringEqualsIfExists": {"aws:SourceAccount": "123456789012"}})),
        "p",
    )
    assert evaluate(if_exists, "sqs:SendMessage", "x").allowed
    assert not evaluate(if_exists, "sqs:SendMessage", "x", context_of({"aws:SourceAccount": "1"})).allowed


def test_arn_equals_and_string_equals_with_conditions_anded_and_values_ored() -> None:
    rule = "arn:aws:events:us-east-1:123456789012:rule/bus/r"
    statements = parse_document(
        doc(
            allow(
                "sqs:SendMessage",
                "*",
                Condition={
                    "ArnEquals": {
                        "aws:SourceArn": ["arn:aws:events:us-east-1:123456789012:rule/other", rule]
                    },
                    "StringEquals": {"aws:SourceAccount": "123456789012"},
                },
            )
        ),
        "p",
    )
    both = context_of({"aws:SourceArn": rule, "aws:SourceAccount": "123456789012"})
    assert evaluate(statements, "sqs:SendMessage", "q", both).allowed
    assert not evaluate(statements, "sqs:SendMessage", "q", context_of({"aws:SourceArn": rule})).allowed


def test_null_checks_presence() -> None:
    statements = parse_document(
        doc(allow("s3:ListBucket", BUCKET, Condition={"Null": {"s3:prefix": "true"}})), "p"
    )
    assert evaluate(statements, "s3:ListBucket", BUCKET).allowed
    assert not evaluate(statements, "s3:ListBucket", BUCKET, context_of({"s3:prefix": "a"})).allowed


@pytest.mark.parametrize(
    ("condition", "named"),
    [
        ({"NumericLessThan": {"s3:max-keys": "10"}}, "NumericLessThan"),
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, "IpAddress"),
        ({"StringEquals": {"dynamodb:LeadingKeys": "u"}}, "dynamodb:LeadingKeys"),
        ({"StringEquals": {"aws:PrincipalTag/team": "a"}}, "aws:PrincipalTag/team"),
    ],
)
def test_an_unsupported_operator_or_key_is_refused_by_name(condition: dict[str, Any], named: str) -> None:
    with pytest.raises(UnsupportedPolicy, match=named):
        parse_document(doc(allow("s3:*", "*", Condition=condition)), "MyPolicy")


def test_unresolved_intrinsics_and_policy_variables_are_refused() -> None:
    with pytest.raises(UnsupportedPolicy, match="not a string"):
        parse_document(doc(allow("s3:*", {"Fn::GetAtt": ["B", "Arn"]})), "p")
    with pytest.raises(UnsupportedPolicy, match="policy variable"):
        parse_document(doc(allow("s3:*", "arn:aws:s3:::b/${aws:username}/*")), "p")


def test_aws_managed_policies_come_from_moto_by_arn() -> None:
    statements = managed_policy("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
    assert evaluate(statements, "logs:PutLogEvents", "arn:aws:logs:us-east-1:1:log-group:x").allowed
    assert not evaluate(statements, "dynamodb:GetItem", TABLE).allowed
    with pytest.raises(UnsupportedPolicy, match="NoSuchPolicy"):
        managed_policy("arn:aws:iam::aws:policy/NoSuchPolicy")


def test_role_statements_join_inline_documents_and_managed_policies() -> None:
    statements = role_statements(
        [("Inline", doc(allow("dynamodb:GetItem", TABLE)))],
        ["arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"],
    )
    assert evaluate(statements, "dynamodb:GetItem", TABLE).allowed
    assert evaluate(statements, "xray:PutTraceSegments", "*").allowed


def test_resource_policy_statements_apply_only_to_their_principal() -> None:
    statements = parse_document(
        doc(
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": "arn:aws:sqs:us-east-1:123456789012:dlq",
            }
        ),
        "QueuePolicy",
    )
    queue = "arn:aws:sqs:us-east-1:123456789012:dlq"
    assert evaluate(statements, "sqs:SendMessage", queue, principal="events.amazonaws.com").allowed
    assert not evaluate(statements, "sqs:SendMessage", queue, principal="sns.amazonaws.com").allowed


def test_denial_names_the_session_the_action_and_the_resource() -> None:
    principal = Principal(
        "arn:aws:iam::123456789012:role/stack-SubscribeFunctionRole", "stack-SubscribeFunction"
    )
    decision = evaluate((), "dynamodb:BatchGetItem", TABLE)
    message = denial_message(principal.arn, "dynamodb:BatchGetItem", TABLE, decision)
    assert message == (
        "User: arn:aws:sts::123456789012:assumed-role/stack-SubscribeFunctionRole/stack-SubscribeFunction "
        f"is not authorized to perform: dynamodb:BatchGetItem on resource: {TABLE} "
        "because no identity-based policy allows the dynamodb:BatchGetItem action"
    )
