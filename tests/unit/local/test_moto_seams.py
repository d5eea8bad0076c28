"""The moto internals the local stack patches or reaches into, checked against the installed moto.

pyproject.toml pins moto to the minor versions these names were checked with. When an upgrade
moves one of them, these tests fail and name it, instead of the stack misbehaving at run time:

- aws.py wraps `moto.dynamodb.responses.DynamoHandler.call_action` and
  `moto.dynamodb.responses.DynamoResult.execute_result`, and caches the classmethod
  `moto.dynamodb.parsing.expressions.UpdateExpressionParser.make` (safe while moto's validator
  works on a deep copy of the tree it is given), and wraps `moto.dynamodb.models.table.Table.query`
  and `Table.all_items` so that a base-table Query's candidates are its hash key's own items
  (safe while that branch filters `all_items()` by hash key alone and moto keeps a table's
  items by hash key), and answers a base-table Query itself following `Table.query`'s steps
  (pinned by a digest of the moto code it follows), and replaces
  `moto.dynamodb.responses.dynamo_to_dict` by an equal, faster converter;
- bus.py replaces `moto.events.models.Rule.send_to_targets` and reads a rule's attributes;
- aws_process.py sets `FakeSecret.arn` in `moto.secretsmanager.models.secretsmanager_backends`.
- aws.py replaces `moto.core.common_models.BaseModel.__new__` so that each class's
  `instances_tracked` holds its live instances weakly (safe while moto only appends to and
  iterates those lists, and S3 closes the buffer of a key that leaves its bucket or is freed).

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


def _source(function: Any) -> str:
    return " ".join(inspect.getsource(inspect.unwrap(function)).split())


def test_base_table_query_filters_all_items_by_hash_key_kept_by_hash_key(aws: None) -> None:
    """aws.query_dynamodb_tables_by_hash_key: the base-table branch of `Table.query` is the only
    one of its `all_items()` calls it narrows, so that branch must still read `all_items()` once
    and keep exactly the items whose hash key equals the Query's; the items it stands in for must
    still be kept by hash key, in `all_items`'s order."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.models.table import Table

    for name in ("query", "all_items"):
        assert name in vars(Table), f"moto.dynamodb.models.table.Table.{name} moved (aws.py wraps it)"
    parameters = _parameters(Table.query)
    assert parameters[:2] == ["self", "hash_key"] and parameters[8] == "index_name", (
        f"moto's Table.query changed its parameters (aws.py reads hash_key and index_name): {parameters}"
    )
    query = _source(Table.query)
    base_branch = (
        "else: hash_attrs = [self.hash_key_attr] range_attrs = [self.range_key_attr] "
        "possible_results = [ item for item in self.all_items() "
        "if isinstance(item, Item) and item.hash_key == hash_key ]"
    )
    assert base_branch in query and query.count("self.all_items()") == 2, (
        "moto's Table.query no longer takes a base-table Query's candidates from all_items() "
        "filtered by hash key (aws.query_dynamodb_tables_by_hash_key narrows that call)"
    )
    assert query.index("if index_name:") < query.index("self.all_items()") < query.index(base_branch), (
        "moto's Table.query reorders its branches: the index branch's all_items() must come first"
    )
    for helper in ("_item_comes_before_dct", "_get_last_evaluated_key", "get_index", "sorted_items"):
        assert "all_items" not in _source(getattr(Table, helper)), f"Table.{helper} now calls all_items"
    assert "key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key" in _source(
        Table.all_items
    ), "moto's Table.all_items sorts by another key (aws.py sorts one hash key's items by range key)"

    client = boto3.client("dynamodb")
    for name, keys in (("ranged", ("pk", "sk")), ("plain", ("pk",))):
        client.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": k, "KeyType": t} for k, t in zip(keys, ("HASH", "RANGE"), strict=False)
            ],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "N"} for k in keys],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName=name, Item={k: {"N": "1.50"} for k in keys})
    from moto.dynamodb.models import dynamodb_backends

    tables = dynamodb_backends[ACCOUNT][REGION].tables
    one = DynamoType({"N": "1.5"})
    assert one == DynamoType({"N": "1.50"}) and hash(one) == hash(DynamoType({"N": "1.50"})), (
        "moto's DynamoType no longer hashes and compares by (type, value)"
    )
    ranged, plain = tables["ranged"].items.get(one), tables["plain"].items.get(one)
    assert isinstance(ranged, dict) and isinstance(ranged.get(one), Item), (
        "moto no longer keeps a ranged table's items as items[hash][range]"
    )
    assert isinstance(plain, Item) and plain.hash_key == one, (
        "moto no longer keeps a table's items as items[hash] without a range key"
    )


# aws._BaseTableQuery follows these step by step (or relies on what they compute), and an index
# Query's all_items() / sorted_items in aws.query_dynamodb_tables_by_hash_key: a change to
# any of them must be read against it, then the digest updated (whitespace-normalized source)
BASE_TABLE_QUERY_MIRRORS = {
    "Table.query": "c8f8639ef6cd31da",
    "Item.project": "12a07f552e66c29b",
    "Item.size": "bc25b7109397670b",
    "Item.__init__": "918db834dd8d3a09",
    "Item.to_regular_json": "04143f52bd272c5b",
    "DynamoType.size": "404cb49e61583fb1",
    "DynamoType.cast_value": "cdafc9ad6368ae15",
    "DynamoType.compare": "cf1eaf3efc4badde",
    "DynamoType.to_regular_json": "33527f3d9f44f81b",
    "DynamoType.__lt__": "742f98c51b55cb2a",
    "DynamoType.__init__": "421974fc36c52349",
    "DynamoType.__deepcopy__": "aba97b241192c855",
    "Item.__deepcopy__": "63e9e635aad36ab2",
    "LimitedSizeDict.__setitem__": "1fc7fc04dfe4f529",
    "LimitedSizeDict.__init__": "fa7389b5277c7ff3",
    "Table.sorted_items": "22984d79d78859c8",
}


def test_the_moto_code_the_direct_base_table_query_follows_is_unchanged() -> None:
    """aws._BaseTableQuery answers a base-table Query as moto's `Table.query` would, doing each
    step once: its equality rests on the code below (moto's Query steps, and what an item's size,
    order, comparison, copy and projection are)."""
    import hashlib

    from boto3.dynamodb import types
    from moto.dynamodb import comparisons
    from moto.dynamodb.models import dynamo_type
    from moto.dynamodb.models import table as table_module
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.table import Table

    functions = {
        "Table.query": Table.query,
        "Item.project": Item.project,
        "Item.size": Item.size,
        "Item.__init__": Item.__init__,
        "Item.to_regular_json": Item.to_regular_json,
        "DynamoType.size": DynamoType.size,
        "DynamoType.cast_value": vars(DynamoType)["cast_value"].fget,
        "DynamoType.compare": DynamoType.compare,
        "DynamoType.to_regular_json": DynamoType.to_regular_json,
        "DynamoType.__lt__": DynamoType.__lt__,
        "DynamoType.__init__": DynamoType.__init__,
        "DynamoType.__deepcopy__": DynamoType.__deepcopy__,
        "Item.__deepcopy__": Item.__deepcopy__,
        "LimitedSizeDict.__setitem__": LimitedSizeDict.__setitem__,
        "LimitedSizeDict.__init__": LimitedSizeDict.__init__,
        "Table.sorted_items": Table.sorted_items,
    }
    changed = [
        name
        for name, function in functions.items()
        if hashlib.sha256(_source(function).encode()).hexdigest()[:16] != BASE_TABLE_QUERY_MIRRORS[name]
    ]
    assert not changed, f"moto changed {changed}: check aws._BaseTableQuery against them"
    assert isinstance(table_module.RESULT_SIZE_LIMIT, int), "moto's Query size limit moved"
    assert callable(comparisons.get_comparison_func), "moto.dynamodb.comparisons.get_comparison_func moved"
    assert _parameters(Table._item_comes_before_dct)[1:] == [
        "item",
        "dct",
        "hash_key_attrs",
        "range_key_attrs",
        "scan_index_forward",
    ] and _parameters(Table._get_last_evaluated_key)[1:] == ["last_result", "index_name"], (
        "moto's Table._item_comes_before_dct or _get_last_evaluated_key changed (aws._BaseTableQuery "
        "calls them)"
    )
    assert isinstance(dynamo_type.serializer, types.TypeSerializer) and isinstance(
        dynamo_type.deserializer, types.TypeDeserializer
    ), "moto's dynamo_type no longer projects through boto3's (de)serializer"
    from tidings.local import aws

    assert f"> {aws._ITEM_SIZE_LIMIT}" in _source(LimitedSizeDict.__setitem__), (
        "moto's item size limit changed"
    )
    context = types.DYNAMODB_CONTEXT  # aws._regular_json_safe: a plain N of 38 digits is exact
    assert (context.prec, context.Emin, context.Emax) == (38, -128, 126), "boto3's DYNAMODB_CONTEXT changed"


def test_dynamo_result_converts_through_the_module_dynamo_to_dict_aws_py_replaces() -> None:
    """aws.serialize_dynamodb_items_directly replaces `moto.dynamodb.responses.dynamo_to_dict`
    (the name DynamoResult calls) by `aws._dynamo_to_dict`, which does moto's conversion inline
    for the common shapes: the replaced function must be the one pinned here."""
    import hashlib

    from moto.dynamodb import responses
    from moto.dynamodb.models.utilities import dynamo_to_dict

    assert "transformed_result = dynamo_to_dict(result)" in _source(responses.DynamoResult.__init__), (
        "moto's DynamoResult no longer converts its result through responses.dynamo_to_dict"
    )
    module: Any = responses
    assert module.dynamo_to_dict is dynamo_to_dict, "moto.dynamodb.responses.dynamo_to_dict moved"
    digest = hashlib.sha256(_source(dynamo_to_dict).encode()).hexdigest()[:16]
    assert digest == "4fcaefec29802c21", (
        f"moto's dynamo_to_dict changed ({digest}): check aws._dynamo_to_dict against it"
    )


def test_every_model_instance_is_appended_to_its_own_classes_list() -> None:
    """aws.track_moto_instances_weakly replaces `BaseModel.__new__` (moto's one place that adds
    to `instances_tracked`) and swaps each class's list for a weak one at its first instance."""
    from moto.core import model_instances
    from moto.core.base_backend import InstanceTrackerMeta
    from moto.core.common_models import BaseModel
    from moto.dynamodb.models.dynamo_type import Item
    from moto.s3.models import FakeKey, FakeMultipart
    from moto.sqs.models import Message

    new = vars(BaseModel).get("__new__")
    assert isinstance(new, staticmethod), "moto's BaseModel.__new__ moved (aws.py replaces it)"
    assert _source(new.__func__).endswith(
        "instance = super().__new__(cls) cls.instances_tracked.append(instance) # type: ignore[attr-defined] "
        "return instance"
    ), "moto's BaseModel.__new__ changed: check aws.track_moto_instances_weakly against it"
    assert "cls.instances_tracked: ClassVar[list[BaseModel]] = []" in _source(InstanceTrackerMeta.__new__), (
        "moto's InstanceTrackerMeta no longer gives each model class its own instances_tracked list"
    )
    assert "model.instances_tracked = []" in _source(model_instances.reset_model_data), (
        "moto's reset_model_data no longer puts back a list in each class (aws.py swaps it again)"
    )
    for model in (Item, FakeKey, FakeMultipart, Message):
        assert isinstance(vars(model).get("instances_tracked"), list), f"{model.__name__}: no list of its own"
        assert "__slots__" not in vars(model), f"{model.__name__} has slots: can it be weakly referenced?"


def test_moto_reads_instances_tracked_only_by_iterating_it() -> None:
    """aws.LiveInstances stands in for moto's lists: it can be appended to and iterated, nothing
    else. Every use of `instances_tracked` in moto must be one of these (a new one: check it)."""
    import re

    import moto

    uses = {
        r"cls\.instances_tracked\.append\(instance\)",  # BaseModel.__new__
        r"cls\.instances_tracked: ClassVar\[list\[BaseModel\]\] = \[\]",  # InstanceTrackerMeta
        r"model\.instances_tracked = \[\]",  # reset_model_data
        r"for \w+ in (FakeMultipart|FakeKey|model)\.instances_tracked:",  # S3 reset, data.json
    }
    found: list[str] = []
    unknown: list[str] = []
    root = Path(moto.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "instances_tracked" not in line:
                continue
            code = line.split("#")[0].strip()
            where = f"{path.relative_to(root)}:{number}: {code}"
            (found if any(re.fullmatch(use, code) for use in uses) else unknown).append(where)
    assert not unknown, f"moto uses instances_tracked in a new way (aws.LiveInstances): {unknown}"
    readers = {where.split(":")[0] for where in found if where.split(": ", 1)[1].startswith("for ")}
    assert readers == {"s3/models.py", "moto_api/_internal/responses.py"}, readers


def test_s3_disposes_the_keys_that_leave_a_bucket_and_a_freed_key_closes_its_buffer(aws: None) -> None:
    """Untracked, an S3 object's buffer is closed by moto when it leaves its bucket (overwritten or
    deleted), or by `FakeKey.__del__` when a copy moto made is freed; aws.py hides the
    ResourceWarning the latter gives by its message."""
    import weakref

    from moto.s3.models import FakeKey, s3_backends

    assert _source(FakeKey.__del__).endswith("self.dispose(garbage=True)"), (
        "moto's FakeKey.__del__ no longer disposes of the key: a freed key's buffer may stay open"
    )
    dispose = _source(FakeKey.dispose)
    assert '"S3 key was not disposed of in time", ResourceWarning' in dispose, (
        "moto's FakeKey.dispose warns otherwise (aws.track_moto_instances_weakly filters its message)"
    )
    assert dispose.index("warnings.warn(") < dispose.index("self._value_buffer.close()"), dispose
    client = boto3.client("s3")
    client.create_bucket(Bucket="seam-bucket")
    bucket = s3_backends[ACCOUNT]["aws"].buckets["seam-bucket"]
    client.put_object(Bucket="seam-bucket", Key="k", Body=b"first")
    first = bucket.keys["k"]
    assert isinstance(first, FakeKey) and weakref.ref(first)() is first
    client.put_object(Bucket="seam-bucket", Key="k", Body=b"second")
    assert first.disposed and first._value_buffer.closed, "moto no longer disposes an overwritten key"
    second = bucket.keys["k"]
    client.delete_object(Bucket="seam-bucket", Key="k")
    assert second.disposed and second._value_buffer.closed, "moto no longer disposes a deleted key"
