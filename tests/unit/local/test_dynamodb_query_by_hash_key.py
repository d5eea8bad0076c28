"""aws.query_dynamodb_tables_by_hash_key: a base-table Query that reads only its hash key's
items (and does moto's work on them once) answers exactly what moto answers reading the whole
table (random tables and Queries: range conditions, both orders, Limit and the pages after it,
ExclusiveStartKey, filters, projections of every attribute type, top-level, nested and list
items, COUNT, ConsistentRead, the size limit, tables with and without a range key of S, N or B,
missing keys, index Queries, numbers moto cannot project), returns items that share nothing
mutable with the stored ones, and really reads only that key's items."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from tidings.local.aws import query_dynamodb_tables_by_hash_key

HASH_VALUES = {"S": ["a", "b", "missing"], "N": ["1", "-3.5", "1.0", "99"]}  # the last: no item
RANGE_VALUES: dict[str, list[Any]] = {
    "S": ["a", "ab", "abc", "b", "ba", "c", "zz"],
    "N": ["-1", "0", "1", "1.50", "1.5", "2", "10", "100"],
    "B": [b"\x00", b"\x00\x01", b"\x01", b"a", b"ab", b"\xff"],
}
# N values as stored: moto keeps the text it was given, and projects it through a Decimal of 38
# digits (1e2 -> 1E+2, 007 -> 7), raising for some (39 digits: Inexact, 0E-200: Clamped), even
# when another attribute is projected
NUMBERS = ["1", "-3.5", "1.50", "1e2", "007", "-0", "1" * 39, "0E-200", "1E-129"]
PAGES = 12  # follow LastEvaluatedKey this many times at most
VARIANTS = {"direct": {}, "narrow only": {"narrow_only": True}}
_tables = itertools.count()


@pytest.fixture
def client() -> Iterator[Any]:
    keys = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {name: os.environ.get(name) for name in keys}
    os.environ.update(keys)
    try:
        with mock_aws():
            yield boto3.client("dynamodb")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def create_table(client: Any, hash_type: str, range_type: str | None) -> str:
    """A table `t<n>` keyed (h, r), with an LSI (h, l) when it has a range key and a GSI (g, l)."""
    name = f"t{next(_tables)}"
    keys = [{"AttributeName": "h", "KeyType": "HASH"}]
    attributes = [
        {"AttributeName": "h", "AttributeType": hash_type},
        {"AttributeName": "l", "AttributeType": "N"},
        {"AttributeName": "g", "AttributeType": "S"},
    ]
    extra: dict[str, Any] = {}
    if range_type is not None:
        keys.append({"AttributeName": "r", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "r", "AttributeType": range_type})
        extra["LocalSecondaryIndexes"] = [
            {
                "IndexName": "lsi",
                "KeySchema": [
                    {"AttributeName": "h", "KeyType": "HASH"},
                    {"AttributeName": "l", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ]
    client.create_table(
        TableName=name,
        KeySchema=keys,
        AttributeDefinitions=attributes,
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi",
                "KeySchema": [
                    {"AttributeName": "g", "KeyType": "HASH"},
                    {"AttributeName": "l", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        **extra,
    )
    return name


def mostly(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An optional attribute's value, present three times in four."""
    return st.sampled_from([True, True, True, False]).flatmap(
        lambda present: values if present else st.none()
    )


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An optional attribute's value, present one time in three."""
    return st.sampled_from([True, False, False]).flatmap(lambda present: values if present else st.none())


@st.composite
def tables(draw: st.DrawFn) -> dict[str, Any]:
    """A table's key types and its items (as PutItems: a later one with the same key replaces)."""
    hash_type = draw(st.sampled_from(["S", "N"]))
    range_type = draw(st.sampled_from([None, "S", "N", "B"]))
    item = {
        "h": st.sampled_from(HASH_VALUES[hash_type][:-1]).map(lambda v: {hash_type: v}),
        "a": mostly(st.integers(-2, 2).map(lambda n: {"N": str(n)})),
        "l": mostly(st.integers(0, 3).map(lambda n: {"N": str(n)})),
        "g": mostly(st.sampled_from(["x", "y"]).map(lambda s: {"S": s})),
        "w": mostly(st.integers(0, 300).map(lambda n: {"S": "p" * n})),
        # every attribute type, for projections (and what moto cannot project)
        "n": maybe(st.sampled_from(NUMBERS).map(lambda v: {"N": v})),
        "b": maybe(st.sampled_from(RANGE_VALUES["B"]).map(lambda v: {"B": v})),
        "t": maybe(st.booleans().map(lambda v: {"BOOL": v})),
        "z": maybe(st.just({"NULL": True})),
        "s": maybe(st.sampled_from([{"SS": ["x", "y"]}, {"NS": ["1", "2.5"]}, {"BS": [b"\x01"]}])),
        "m": maybe(st.just({"M": {"x": {"S": "in"}, "y": {"L": [{"N": "1"}, {"S": "two"}]}}})),
        "lst": maybe(st.just({"L": [{"S": "first"}, {"M": {"k": {"N": "2"}}}]})),
    }
    if range_type is not None:
        item["r"] = st.sampled_from(RANGE_VALUES[range_type]).map(lambda v: {range_type: v})
    items = draw(st.lists(st.fixed_dictionaries(item), min_size=5, max_size=40))
    return {
        "hash_type": hash_type,
        "range_type": range_type,
        "items": [{k: v for k, v in i.items() if v is not None} for i in items],
    }


PROJECTIONS = [
    None,
    "#h",
    "#h, a, w",
    "a",
    "n",
    "b, t, z",
    "#h, n, s",
    "r, w",
    "m, lst",
    "m.x, a",
    "m.y[1], lst[0]",
    "lst[1].k, n",
    "nothing",
]


@st.composite
def queries(draw: st.DrawFn, table: dict[str, Any]) -> dict[str, Any]:
    """One Query's parameters (the table's name added later), mostly on the base table."""
    hash_type, range_type = table["hash_type"], table["range_type"]
    index = draw(st.sampled_from([None, None, None, "gsi"] + (["lsi"] if range_type else [])))
    names = {"#h": "g" if index == "gsi" else "h"}
    values: dict[str, Any] = {
        ":h": {"S": draw(st.sampled_from(["x", "y", "z"]))}
        if index == "gsi"
        else {
            hash_type: draw(
                st.sampled_from([*{i["h"][hash_type] for i in table["items"]}, HASH_VALUES[hash_type][-1]])
            )
        }
    }
    condition = "#h = :h"
    sort_key, sort_type = ("l", "N") if index else ("r", range_type)
    operator = draw(st.sampled_from([None, "=", "<", "<=", ">", ">=", "BETWEEN", "begins_with"]))
    if (
        sort_type is not None
        and operator is not None
        and not (operator == "begins_with" and sort_type == "N")
    ):
        pool = RANGE_VALUES[sort_type] if sort_type != "N" or not index else ["0", "1", "2", "3", "-1"]
        names["#r"] = sort_key
        values[":r1"] = {sort_type: draw(st.sampled_from(pool))}
        if operator == "BETWEEN":
            values[":r2"] = {sort_type: draw(st.sampled_from(pool))}
            condition += " AND #r BETWEEN :r1 AND :r2"
        elif operator == "begins_with":
            condition += " AND begins_with(#r, :r1)"
        else:
            condition += f" AND #r {operator} :r1"
    parameters: dict[str, Any] = {"KeyConditionExpression": condition}
    if index:
        parameters["IndexName"] = index
    if draw(st.booleans()):
        parameters["ScanIndexForward"] = False
    if limit := draw(st.none() | st.integers(1, 4)):
        parameters["Limit"] = limit
    filter_expression = draw(
        st.sampled_from([None, None, None, "a > :f", "attribute_not_exists(a)", "size(w) > :f"])
    )
    if filter_expression:
        parameters["FilterExpression"] = filter_expression
        if ":f" in filter_expression:
            values[":f"] = {"N": "0"}
    projection = draw(st.sampled_from(PROJECTIONS))
    if projection and draw(st.integers(0, 3)) > 0:
        parameters["ProjectionExpression"] = projection
    elif draw(st.integers(0, 3)) == 0:
        parameters["Select"] = "COUNT"
    if draw(st.integers(0, 3)) == 0:
        parameters["ConsistentRead"] = draw(st.booleans())
    if not index and draw(st.integers(0, 3)) == 0:  # a start key that need not be an item's
        start = {"h": values[":h"]}
        if range_type:
            start["r"] = {range_type: draw(st.sampled_from(RANGE_VALUES[range_type]))}
        parameters["ExclusiveStartKey"] = start
    used = " ".join(str(parameters.get(key, "")) for key in ("KeyConditionExpression", "FilterExpression"))
    used += " " + str(parameters.get("ProjectionExpression", ""))
    parameters["ExpressionAttributeNames"] = {k: v for k, v in names.items() if k in used}
    parameters["ExpressionAttributeValues"] = values
    return parameters


def answers(client: Any, table: str, query: dict[str, Any]) -> list[Any]:
    """Each page's answer (response metadata aside) following LastEvaluatedKey, or the error
    (moto's own exceptions too: in the AWS process they are its 500 answers)."""
    pages: list[Any] = []
    parameters = {"TableName": table, **query}
    for _ in range(PAGES):
        try:
            page = client.query(**parameters)
        except client.exceptions.ClientError as error:
            pages.append((error.response["Error"]["Code"], error.response["Error"]["Message"]))
            break
        except Exception as error:  # moto's own failures (size() of a missing attribute) alike
            pages.append((type(error).__name__, str(error)))
            break
        page.pop("ResponseMetadata")
        pages.append(page)
        if "LastEvaluatedKey" not in page:
            break
        parameters["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return pages


def put_items(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for item in items:
        client.put_item(TableName=table, Item=item)


def snapshot(item: Any) -> Any:
    """An Item as moto's Query returns it, exactly: its keys' and attributes' types and values (the
    text of each number, bytes or base64), in order."""

    def value(dynamo: Any) -> Any:
        return None if dynamo is None else (dynamo.type, repr(dynamo.value))

    return value(item.hash_key), value(item.range_key), [(k, *value(v)) for k, v in item.attrs.items()]


@contextlib.contextmanager
def recording(returned: list[Any]) -> Iterator[None]:
    """Each `Table.query` call's returned Items (snapshots), ScannedCount and LastEvaluatedKey."""
    from moto.dynamodb.models.table import Table

    current = vars(Table)["query"]

    def query(table: Any, *args: Any, **kwargs: Any) -> Any:
        items, scanned, last = current(table, *args, **kwargs)
        returned.append(([snapshot(i) for i in items], scanned, last))
        return items, scanned, last

    with mock.patch.object(Table, "query", query):
        yield


def ask_all(client: Any, name: str, asked: list[dict[str, Any]], patch: dict[str, Any] | None) -> Any:
    """Every Query's pages, and what each `Table.query` call returned; `patch`: the patch's
    options, or None for moto alone."""
    returned: list[Any] = []
    undo = query_dynamodb_tables_by_hash_key(**patch) if patch is not None else None
    try:
        with recording(returned):
            pages = [answers(client, name, query) for query in asked]
    finally:
        if undo:
            undo()
    return pages, returned


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_base_table_query_by_hash_key_answers_what_moto_answers(client: Any, data: st.DataObject) -> None:
    from moto.dynamodb.models import table as table_module

    table = data.draw(tables())
    name = create_table(client, table["hash_type"], table["range_type"])
    put_items(client, name, table["items"])
    asked = data.draw(st.lists(queries(table), min_size=1, max_size=4))
    # moto's 1 MB page limit, lowered to reach it with these items (moto reads it at each Query)
    size_limit = data.draw(st.sampled_from([table_module.RESULT_SIZE_LIMIT, 2000, 300, 60]))
    with mock.patch.object(table_module, "RESULT_SIZE_LIMIT", size_limit):
        expected = ask_all(client, name, asked, patch=None)
        for options in VARIANTS.values():
            assert ask_all(client, name, asked, patch=options) == expected, options
    for pages in expected[0]:
        event(f"pages={len(pages)}")
        event(str(pages[-1])[:90] if isinstance(pages[-1], tuple) else "ok")
        event("items" if any(isinstance(p, dict) and p.get("Items") for p in pages) else "no items")
    event(f"size limit {size_limit}")
    client.delete_table(TableName=name)


def test_the_random_cases_are_real(client: Any) -> None:
    """The generated Queries reach what the comparison must cover: several pages, items in both
    orders, a range condition and a filter that keep some items."""
    name = create_table(client, "S", "N")
    put_items(
        client,
        name,
        [{"h": {"S": h}, "r": {"N": str(r)}, "a": {"N": str(r % 3 - 1)}} for h in "abc" for r in range(9)],
    )

    def ask(**query: Any) -> list[Any]:
        undo = query_dynamodb_tables_by_hash_key()
        try:
            return answers(client, name, {"ExpressionAttributeValues": {":h": {"S": "b"}}, **query})
        finally:
            undo()

    pages = ask(KeyConditionExpression="h = :h", Limit=4, ScanIndexForward=False)
    assert [[i["r"]["N"] for i in page["Items"]] for page in pages] == [
        ["8", "7", "6", "5"],
        ["4", "3", "2", "1"],
        ["0"],
    ]
    (page,) = ask(
        KeyConditionExpression="h = :h AND r BETWEEN :lo AND :hi",
        FilterExpression="a > :zero",
        ExpressionAttributeValues={
            ":h": {"S": "b"},
            ":lo": {"N": "2"},
            ":hi": {"N": "6"},
            ":zero": {"N": "0"},
        },
    )
    assert [i["r"]["N"] for i in page["Items"]] == ["2", "5"] and page["ScannedCount"] == 5


def spy_all_items(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of each list `Table.all_items` returns from now on."""
    from moto.dynamodb.models.table import Table

    lengths: list[int] = []
    current: Callable[[Any], list[Any]] = Table.all_items

    def all_items(table: Any) -> list[Any]:
        items = current(table)
        lengths.append(len(items))
        return items

    monkeypatch.setattr(Table, "all_items", all_items)
    return lengths


@pytest.mark.parametrize("narrow_only", [True, False])
@pytest.mark.parametrize("range_type", ["S", None])
def test_a_base_table_query_reads_its_hash_keys_items_and_an_index_query_its_matches(
    client: Any, monkeypatch: pytest.MonkeyPatch, range_type: str | None, narrow_only: bool
) -> None:
    """moto's path (narrow_only, and a legacy QueryFilter) reads the key's items through
    `all_items()`; the direct path reads them from `table.items` without calling it; an index
    Query's `all_items()` is the whole table with narrow_only, its matches otherwise."""
    name = create_table(client, "S", range_type)
    rows = [(h, r) for h in ("a", "b", "c") for r in (("1", "2", "3") if range_type else ("",))]
    put_items(
        client,
        name,
        [
            {
                "h": {"S": h},
                **({"r": {"S": r}} if r else {}),
                "g": {"S": "y" if h == "c" else "x"},
                "l": {"N": "1"},
            }
            for h, r in rows
        ],
    )
    undo = query_dynamodb_tables_by_hash_key(narrow_only=narrow_only)
    try:
        lengths = spy_all_items(monkeypatch)
        found = [
            len(
                client.query(TableName=name, KeyConditionExpression="h = :v", ExpressionAttributeValues=v)[
                    "Items"
                ]
            )
            for v in ({":v": {"S": "b"}}, {":v": {"S": "missing"}})
        ]
        filtered = client.query(
            TableName=name,
            KeyConditions={"h": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "b"}]}},
            QueryFilter={"l": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "1"}]}},
        )["Items"]
        by_index = client.query(
            TableName=name,
            IndexName="gsi",
            KeyConditionExpression="g = :v",
            ExpressionAttributeValues={":v": {"S": "x"}},
        )["Items"]
        client.scan(TableName=name)
    finally:
        undo()
    one_key = 3 if range_type else 1
    assert found == [one_key, 0] and len(filtered) == one_key and len(by_index) == 2 * one_key
    by_hash_key = [one_key, 0] if narrow_only else []
    assert lengths == [*by_hash_key, one_key, len(rows) if narrow_only else 2 * one_key, len(rows)]


def test_the_size_limit_with_items_of_300_kb(client: Any) -> None:
    """moto's 1 MB page: three items of ~300 KB a page (a fourth would pass 1,000,000 bytes)."""
    name = create_table(client, "S", "N")
    put_items(
        client,
        name,
        [{"h": {"S": "a"}, "r": {"N": str(r)}, "w": {"S": "p" * 300_000}, "a": {"N": "1"}} for r in range(8)],
    )
    asked = [
        {"KeyConditionExpression": "h = :h", "ExpressionAttributeValues": {":h": {"S": "a"}}, **extra}
        for extra in (
            {},
            {"ProjectionExpression": "r"},
            {"ScanIndexForward": False, "ProjectionExpression": "a, r"},
            {"Select": "COUNT"},
        )
    ]
    expected = ask_all(client, name, asked, None)
    assert [[len(page["Items"]) for page in pages] for pages in expected[0][:3]] == [[3, 3, 2]] * 3
    for options in VARIANTS.values():
        assert ask_all(client, name, asked, options) == expected


SIMPLE = {"a": {"S": "x"}, "n": {"N": "1.50"}, "b": {"B": b"\x01"}, "t": {"BOOL": True}, "z": {"NULL": True}}
NESTED = {
    "m": {"M": {"x": {"S": "in"}, "y": {"L": [{"N": "1"}]}}},
    "lst": {"L": [{"S": "first"}]},
    "s": {"SS": ["p", "q"]},
}


@pytest.mark.parametrize("attributes", [SIMPLE, {**SIMPLE, **NESTED}], ids=["simple", "nested"])
@pytest.mark.parametrize("projection", [None, [["a"]], [["a"], ["t"], ["n"]], [["m", "x"]], [["lst"], ["s"]]])
def test_the_returned_items_share_nothing_mutable_with_the_stored_ones(
    client: Any, projection: list[list[str]] | None, attributes: dict[str, Any]
) -> None:
    """moto copies what its Query returns: a caller that changes the returned Items (their keys,
    attributes, values, nested values) leaves the table as it was."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    name = create_table(client, "S", "N")
    put_items(client, name, [{"h": {"S": "a"}, "r": {"N": str(r)}, **attributes} for r in range(3)])
    table = dynamodb_backends["123456789012"]["us-east-1"].tables[name]

    def stored() -> list[Any]:
        return [snapshot(item) for entry in table.items.values() for item in entry.values()]

    before = stored()
    tracked = len(Item.instances_tracked)
    undo = query_dynamodb_tables_by_hash_key()
    try:
        items, _, _ = table.query(DynamoType({"S": "a"}), None, [], None, None, True, projection)
    finally:
        undo()
    assert len(items) == 3
    # moto keeps every Item made by Item(...) or copy.deepcopy for good; these are not kept, but
    # where moto's Item.project makes them (a nested path, or an item with nested attributes)
    by_moto = projection is not None and (len(projection[0]) > 1 or attributes is not SIMPLE)
    assert len(Item.instances_tracked) - tracked == (3 if by_moto else 0)
    for item in items:
        item.attrs["new"] = DynamoType({"S": "added"})
        for key in (item.hash_key, item.range_key):
            key.value = "changed"
        for value in list(item.attrs.values()):
            if isinstance(value.value, list):
                value.value.append(DynamoType({"S": "added"}))
            elif isinstance(value.value, dict):
                value.value["added"] = DynamoType({"S": "added"})
                for nested in value.value.values():
                    if isinstance(nested.value, list):
                        nested.value.clear()
            value.value = "changed"
    assert stored() == before
