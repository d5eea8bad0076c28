"""The moto internals the local stack patches or reaches into, checked against the installed moto.

pyproject.toml pins moto to the minor versions these names were checked with. When an upgrade
moves one of them, these tests fail and name it, instead of the stack misbehaving at run time:

- aws.py wraps `moto.dynamodb.responses.DynamoHandler.call_action` and
  `moto.dynamodb.responses.DynamoResult.execute_result`, and caches the classmethod
  `moto.dynamodb.parsing.expressions.UpdateExpressionParser.make` (safe while moto's validator
  works on a deep copy of the tree it is given);
- bus.py replaces `moto.events.models.Rule.send_to_targets` and reads a rule's attributes;
- aws_process.py sets `FakeSecret.arn` in `moto.secretsmanager.models.secretsmanager_backends`.

All of them in the AWS process (aws_process.py), which starts with moto's backends empty.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]
ACCOUNT = "123456789012"
REGION = "us-east-1"


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(inspect.unwrap(function)).parameters)


def _moto_requirement() -> Requirement:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for group in project.get("optional-dependencies", {}).values():
        declared += group
    (moto,) = [Requirement(spec) for spec in declared if Requirement(spec).name == "moto"]
    return moto


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def test_moto_is_pinned_to_a_minor_range_that_includes_the_installed_version() -> None:
    moto = _moto_requirement()
    upper = [spec for spec in moto.specifier if spec.operator in ("<", "<=", "~=", "==")]
    assert upper, f"moto is not pinned to a minor range in pyproject.toml: {moto}"
    assert moto.specifier.contains(version("moto")), f"installed moto {version('moto')} is outside {moto}"


def test_dynamodb_handler_call_action_takes_only_the_handler() -> None:
    from moto.dynamodb import responses

    handler = getattr(responses, "DynamoHandler", None)
    assert handler is not None, "moto.dynamodb.responses.DynamoHandler moved (patched by aws.py, faults.py)"
    assert "call_action" in vars(handler), (
        "moto.dynamodb.responses.DynamoHandler.call_action is no longer defined on DynamoHandler "
        "(aws.make_dynamodb_atomic and faults._hook_dynamodb wrap it)"
    )
    assert _parameters(handler.call_action) == ["self"], (
        "moto.dynamodb.responses.DynamoHandler.call_action changed its signature"
    )


def test_update_expression_parser_make_is_a_classmethod_whose_tree_the_validator_copies() -> None:
    from moto.dynamodb.parsing import expressions, validators

    make = vars(expressions.UpdateExpressionParser).get("make")
    assert isinstance(make, classmethod), (
        "moto's UpdateExpressionParser.make is no longer a classmethod "
        "(aws.cache_dynamodb_update_expressions caches it)"
    )
    assert _parameters(make.__func__) == ["cls", "expression_str"], (
        "UpdateExpressionParser.make changed its signature"
    )
    assert "deepcopy(expression)" in inspect.getsource(validators.Validator.__init__), (
        "moto's update validator no longer copies the tree it is given: a cached parse would change"
    )


def test_event_rule_send_to_targets_and_the_attributes_bus_py_reads(aws: None) -> None:
    from moto.events import models

    rule_class = getattr(models, "Rule", None)
    assert rule_class is not None, "moto.events.models.Rule moved (bus.py replaces send_to_targets)"
    assert _parameters(rule_class.send_to_targets) == ["self", "original_event", "transform_input"], (
        "moto.events.models.Rule.send_to_targets changed its signature (bus._send_to_targets replaces it)"
    )
    events = boto3.client("events")
    events.put_rule(Name="seam", EventPattern='{"source": ["seam.test"]}')
    events.put_targets(Rule="seam", Targets=[{"Id": "t", "Arn": "arn:aws:sqs:us-east-1:123456789012:q"}])
    rule = models.events_backends[ACCOUNT][REGION].event_buses["default"].rules["seam"]
    for attribute in ("state", "event_bus_name", "targets", "event_pattern", "arn", "name"):
        assert hasattr(rule, attribute), f"moto.events.models.Rule.{attribute} moved (read by bus.py)"
    assert rule.event_pattern.matches_event({"source": "seam.test"}), (
        "moto.events.models.Rule.event_pattern.matches_event changed (called by bus.py)"
    )
    assert rule.targets[0]["Arn"].endswith(":q"), (
        "moto.events.models.Rule.targets is no longer a list of dicts"
    )


def test_event_template_parser_parse_keeps_its_keywords() -> None:
    from moto.events.utils import EventTemplateParser

    assert {"input_template", "input_paths_map", "event"} <= set(_parameters(EventTemplateParser.parse)), (
        "moto.events.utils.EventTemplateParser.parse changed its keywords (bus.target_input calls it)"
    )


def test_a_secret_answers_to_the_arn_the_stack_gives_it(aws: None) -> None:
    from moto.secretsmanager.models import secretsmanager_backends

    client = boto3.client("secretsmanager")
    client.create_secret(Name="seam-secret", SecretString="value")
    stored = secretsmanager_backends[ACCOUNT][REGION].secrets["seam-secret"]
    assert hasattr(stored, "arn"), "moto.secretsmanager.models.FakeSecret.arn moved (set by aws.py)"
    stack_arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:seam-secret-AbCdEf"
    stored.arn = stack_arn
    assert client.get_secret_value(SecretId=stack_arn)["SecretString"] == "value", (
        "moto no longer finds a secret by the FakeSecret.arn that aws_process.py sets"
    )
