"""dynamic_refs.py, parameters.py and cfn_types.py: pure pieces of template reading."""

from __future__ import annotations

import pytest

from tidings.local.cfn_types import coerce_properties
from tidings.local.dynamic_refs import DynamicReferenceError, Reference, parse
from tidings.local.parameters import ParameterError, parameter_value

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"


@pytest.mark.parametrize(
    ("service", "body", "expected"),
    [
        ("ssm", "/app/name", Reference("ssm", "/app/name")),
        ("ssm", "/app/name:3", Reference("ssm", "/app/name", version="3")),
        (
            "ssm",
            "arn:aws:ssm:us-east-1:123456789012:parameter/app/name:2",
            Reference("ssm", "arn:aws:ssm:us-east-1:123456789012:parameter/app/name", version="2"),
        ),
        ("secretsmanager", "db", Reference("secretsmanager", "db")),
        (
            "secretsmanager",
            f"{SECRET_ARN}:SecretString:password::v-1",
            Reference("secretsmanager", SECRET_ARN, None, "SecretString", "password", None, "v-1"),
        ),
        (
            "secretsmanager",
            "db::user:AWSPREVIOUS",
            Reference("secretsmanager", "db", None, None, "user", "AWSPREVIOUS"),
        ),
    ],
)
def test_dynamic_reference_forms(service: str, body: str, expected: Reference) -> None:
    assert parse(service, body) == expected


@pytest.mark.parametrize(
    ("service", "body"), [("ssm", "a:1:2"), ("secretsmanager", "db:SecretBinary"), ("ssm", ":1")]
)
def test_malformed_dynamic_references_are_refused(service: str, body: str) -> None:
    with pytest.raises(DynamicReferenceError):
        parse(service, body)


def test_parameter_types() -> None:
    def no_ssm(name: str) -> str | None:
        return None

    assert parameter_value("P", {"Type": "Number"}, 5, no_ssm) == "5"
    assert parameter_value("P", {"Type": "CommaDelimitedList"}, " a, b ,c", no_ssm) == ["a", "b", "c"]
    assert parameter_value("P", {"Type": "CommaDelimitedList"}, "", no_ssm) == []
    assert parameter_value("P", {"Type": "List<AWS::EC2::Subnet::Id>"}, ["s-1", "s-2"], no_ssm) == [
        "s-1",
        "s-2",
    ]
    kind = {"Type": "AWS::SSM::Parameter::Value<CommaDelimitedList>"}
    assert parameter_value("P", kind, "/x", lambda name: "1,2") == ["1", "2"]
    with pytest.raises(ParameterError, match=r"parameter P .*'/x' does not exist in the embedded SSM"):
        parameter_value("P", kind, "/x", no_ssm)


def test_properties_take_the_types_of_the_resource_schema() -> None:
    assert coerce_properties(
        "AWS::SQS::Queue", {"DelaySeconds": "5", "FifoQueue": "true", "QueueName": 7}
    ) == {"DelaySeconds": 5, "FifoQueue": True, "QueueName": "7"}
    # a value that does not convert is left for the service to refuse with its own message
    assert coerce_properties("AWS::SQS::Queue", {"DelaySeconds": "soon"}) == {"DelaySeconds": "soon"}
    # a type cfn-lint has no schema for is left as it is
    assert coerce_properties("Custom::Thing", {"Size": "5"}) == {"Size": "5"}
