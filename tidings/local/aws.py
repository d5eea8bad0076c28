"""The embedded AWS services: moto's server in its own process, with the template's resources created.

Handlers reach it through `AWS_ENDPOINT_URL` (set by `functions.py`), so they use boto3 as they
would in AWS. Resources are created through boto3 against the server from the resolved
CloudFormation properties, so what the template says is what the handlers find.
"""

from __future__ import annotations

import base64
import contextvars
import copy
import functools
import inspect
import io
import itertools
import json
import logging
import re
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import boto3

from tidings.local.aws_guard import Denial, RunCredentials
from tidings.local.aws_process import Answer, AwsProcess
from tidings.local.aws_process import InterceptMatch as InterceptMatch
from tidings.local.hosts import HostPolicy
from tidings.local.iam_requests import Names
from tidings.local.model import ACCOUNT_ID, DEFAULT_REGION, LocalApp, SimpleResource, Table
from tidings.local.moto_server import bind

if TYPE_CHECKING:
    from tidings.local.bus import EventDelivery

log = logging.getLogger(__name__)

# A WSGI environ in, a WSGI application out when this interceptor answers the request itself
# (lambda_invoke.py runs Invoke of the template's own functions); None passes it on to moto.
# Interceptors sit behind the guard: their requests are signed and authorized like moto's.
Interceptor = Callable[[dict[str, Any]], Callable[..., Iterable[bytes]] | None]

# The requests the stack's own interceptors answer: Invoke (lambda_invoke.py) and the execution
# calls of Step Functions (stepfunctions_api.py)
LAMBDA_INVOKE = InterceptMatch(path_prefix="/2015-03-31/functions/")
STEP_FUNCTIONS_API = InterceptMatch(target_prefix="AWSStepFunctions.")

# For moto in tests without the guard only: the guarded endpoint refuses these.
LOCAL_CREDENTIALS: dict[str, Any] = {
    "aws_access_key_id": "local",
    "aws_secret_access_key": "local",
    "aws_session_token": "local",
}


def disable_moto_global_cors() -> None:
    """moto's server answers every origin with Access-Control-Allow-Origin (flask-cors on every
    backend) unless told not to; S3 buckets still apply their own CORS rules."""
    import moto.moto_server.werkzeug_app as werkzeug_app

    if not hasattr(werkzeug_app, "DISABLE_GLOBAL_CORS"):
        raise RuntimeError("moto moved DISABLE_GLOBAL_CORS: the AWS endpoint would answer any origin")
    werkzeug_app.DISABLE_GLOBAL_CORS = True


_DYNAMODB_CALLS = threading.RLock()
_dynamodb_atomic: type | None = None  # the handler class made atomic, once per process


def make_dynamodb_atomic() -> None:
    """Give the embedded DynamoDB the per-request atomicity DynamoDB has (idempotent, process-wide).

    moto's handler copies an item, checks the condition, writes, then serializes the live item,
    with no lock: concurrent UpdateItems on one item (parallel segment workers taking progress
    seqs) can interleave and lose or repeat an ADD. One lock around every DynamoDB call costs
    little, since moto's pure-Python work holds the GIL for nearly all of each call anyway.
    """
    global _dynamodb_atomic
    from moto.dynamodb.responses import DynamoHandler

    with _DYNAMODB_CALLS:
        # once per process: another wrapper (faults.py) may sit on top of this one by now
        if _dynamodb_atomic is DynamoHandler:
            return
        original = DynamoHandler.call_action

        @functools.wraps(original)  # the moto seam tests read the original's signature through it
        def call_action(handler: DynamoHandler) -> Any:
            with _DYNAMODB_CALLS:
                return original(handler)

        DynamoHandler.call_action = call_action  # type: ignore[method-assign]
        _dynamodb_atomic = DynamoHandler


# DynamoDB calls whose answer is items: moto's generic serializer walks every attribute of every
# item through its shape (1,000 subscriptions: ~80% of a Query's time; an UpdateItem with ALL_NEW
# ~15%, cProfile); their result is already DynamoDB JSON
_DIRECT_JSON_CALLS = frozenset(
    {"Query", "Scan", "GetItem", "BatchGetItem", "UpdateItem", "PutItem", "DeleteItem"}
)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):  # B and BS, as the serializer encodes them
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"not JSON: {type(value).__name__}")


def serialize_dynamodb_items_directly() -> Callable[[], None]:
    """Answer Query, Scan, GetItem, BatchGetItem and the single-item writes (UpdateItem, PutItem,
    DeleteItem) with `json.dumps` of moto's result (the same JSON its serializer writes,
    test_dynamodb_direct_json.py); returns what undoes it. Anything else, an error (a failed
    condition among them), or a result JSON cannot hold goes to moto's serializer as before.
    moto's `dynamo_to_dict`, which first turns every call's result into plain values, is replaced
    by a faster equal one (`_dynamo_to_dict`)."""
    from moto.dynamodb import responses
    from moto.dynamodb.responses import DynamoResult

    original = DynamoResult.execute_result

    @functools.wraps(original)
    def execute_result(result: DynamoResult, context: Any) -> Any:
        if context.operation_model.name in _DIRECT_JSON_CALLS and isinstance(result.result, dict):
            try:
                body = json.dumps(result.result, default=_json_default, separators=(",", ":"))
            except (TypeError, ValueError):
                return original(result, context)
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
        return original(result, context)

    DynamoResult.execute_result = execute_result  # type: ignore[method-assign,assignment]
    module: Any = responses  # its `dynamo_to_dict`, imported there, is what DynamoResult calls
    original_to_dict = module.dynamo_to_dict
    module.dynamo_to_dict = _dynamo_to_dict(original_to_dict)

    def undo() -> None:
        DynamoResult.execute_result = original  # type: ignore[method-assign]
        module.dynamo_to_dict = original_to_dict

    return undo


# The scalar types moto's dynamo_to_dict returns as they are (no datetime, no `to_json`)
_PLAIN_SCALARS = (str, int, bool, float, type(None))
# DynamoType kinds whose dynamo_to_dict is `{type: dynamo_to_dict(value)}`, a scalar value
_SCALAR_KINDS = frozenset({"S", "N", "BOOL", "NULL"})


def _dynamo_to_dict(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """moto's `dynamo_to_dict` (what `DynamoResult` makes of a call's result: plain dicts of each
    item's attributes), with the common shapes inline: a dict or list (exact types, or an Item's
    LimitedSizeDict: none has `to_json`) converted member by member, an S, N, BOOL or NULL whose
    value is a str or bool as `{type: value}`, a str, int, bool, float or None as it is; anything
    else (B, sets, L, M, datetimes, objects with `to_json`) through moto's own (1,000 items of one
    attribute: 2.6 ms there)."""
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict

    mappings = (dict, LimitedSizeDict)

    def convert(value: Any) -> Any:
        kind = type(value)
        if kind is DynamoType:
            raw = value.value
            if value.type in _SCALAR_KINDS and (type(raw) is str or type(raw) is bool):
                return {value.type: raw}
            return original(value)
        if kind in mappings:
            return {key: convert(member) for key, member in value.items()}
        if kind is list:
            return [convert(member) for member in value]
        if kind in _PLAIN_SCALARS:
            return value
        return original(value)

    return convert


UPDATE_EXPRESSIONS_CACHED = 512


def cache_dynamodb_update_expressions() -> Callable[[], None]:
    """Parse each distinct UpdateExpression once (moto parses it twice per UpdateItem, 0.3 ms a
    parse, and an app sends the same few expressions with other values); returns what undoes it.

    The parsed tree depends on the expression's text alone (names and values are placeholders,
    resolved later) and nothing writes to it: moto's validator works on a deep copy. A text that
    does not parse raises as before, and is not cached.
    """
    from moto.dynamodb.parsing import expressions

    parser: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]
    original = vars(parser)["make"]
    cached: Any = functools.lru_cache(maxsize=UPDATE_EXPRESSIONS_CACHED)(original.__func__)
    parser.make = classmethod(cached)

    def undo() -> None:
        parser.make = original

    return undo


# The table and hash key of the base-table Query under way in this thread (context), whose first
# `all_items()` call takes only that key's items
_BASE_TABLE_QUERY: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "tidings_base_table_query", default=None
)

# The table of the index Query under way in this thread (context), whose `all_items()` comes
# unsorted and whose matches `sorted_items` first puts in `all_items`'s order
_INDEX_QUERY: contextvars.ContextVar[Any] = contextvars.ContextVar("tidings_index_query", default=None)
_SORT_AS_ALL_ITEMS: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "tidings_sort_as_all_items", default=None
)

# DynamoType kinds whose `cast_value` is the value itself (cast_value tests N, the sets, L, M and
# NULL first, then returns `value`)
_CAST_IS_VALUE = frozenset({"S", "B"})
# An N whose DynamoDB-context Decimal is exact: at most 38 digits, no exponent (so no rounding,
# overflow, underflow or clamping, the conditions boto3's DYNAMODB_CONTEXT traps)
_PLAIN_NUMBER = re.compile(r"-?(\d+)(?:\.(\d+))?")


def _cast_value(value: Any) -> Any:
    """`DynamoType.cast_value`, without its type tests for S and B."""
    return value.value if value.type in _CAST_IS_VALUE else value.cast_value


def _item_size(item: Any) -> int:
    """`Item.size()`: the sum of each attribute's name in UTF-8 and `DynamoType.size()`."""
    total = 0
    for name, value in item.attrs.items():
        raw = value.value
        if value.type == "S" and type(raw) is str and type(name) is str:  # the common case, inline
            total += len(name.encode("utf-8")) + len(raw.encode("utf-8"))
        else:
            total += (len(name.encode("utf-8")) if type(name) is str else _bytesize(name)) + _value_size(
                value
            )
    return total


def _value_size(value: Any) -> int:
    """`DynamoType.size()`, with S and B (a str: its length in UTF-8, bytes: its length) and N (a
    str: its length) inline."""
    kind, raw = value.type, value.value
    if kind == "S" or kind == "B":
        if type(raw) is str:
            return len(raw.encode("utf-8"))
        if type(raw) is bytes:
            return len(raw)
    elif kind == "N" and type(raw) is str:
        return len(raw)
    return int(value.size())


def _bytesize(value: Any) -> int:
    from moto.dynamodb.models.utilities import bytesize

    return bytesize(value)


@functools.lru_cache(maxsize=4096)  # an app's numbers repeat (timestamps, TTLs, counters)
def _plain_number(text: str) -> bool:
    """An N text whose Decimal in boto3's DYNAMODB_CONTEXT (38 digits) is exact: at most 38
    digits, no exponent (so no rounding, overflow, underflow or clamping: the signals it traps)."""
    plain = _PLAIN_NUMBER.fullmatch(text)
    return plain is not None and len(plain[1]) + len(plain[2] or "") <= 38


def _regular_json_safe(value: Any) -> bool:
    """Whether `value.to_regular_json()` deserialized by boto3 (what `Item.project` does to every
    attribute of the item) surely does not raise: S, BOOL, NULL, an N of at most 38 digits
    without exponent, a B of bytes or valid base64. Anything else: not known (False)."""
    kind, raw = value.type, value.value
    if kind == "S":
        return type(raw) is str
    if kind == "BOOL" or kind == "NULL":
        return type(raw) is bool
    if kind == "N":
        return type(raw) is str and len(raw) <= 40 and _plain_number(raw)
    if kind == "B":
        if type(raw) is bytes:
            return True
        if type(raw) is not str:
            return False
        try:
            base64.b64decode(raw)
        except ValueError:  # binascii.Error
            return False
        return True
    return False


# The kinds whose DynamoType.__deepcopy__ copies the value itself
_DEEP_KINDS = frozenset({"L", "M", "SS", "NS", "BS"})
# LimitedSizeDict.__setitem__'s limit: adding an attribute past it raises ItemSizeTooLarge
_ITEM_SIZE_LIMIT = 405000


def _attributes_size(attrs: dict[str, Any]) -> int:
    """What LimitedSizeDict sums: each name in UTF-8 and each value's `DynamoType.size()`."""
    total = 0
    for name, value in attrs.items():
        total += len(name.encode("utf-8")) + _value_size(value)
    return total


class _BaseTableQuery:
    """moto's `Table.query` for a base-table Query (its `else` branch, then its SORT, FILTER and
    projection, step by step; test_moto_seams.py pins that code), doing the same work less often.

    Only the hash key's items are read (`table.items[hash_key]`); they are sorted by their range
    key's `cast_value` (what `DynamoType.__lt__` compares, so the same comparisons give the same
    order); each item's size is computed once, not twice; the range condition's function and
    bounds are looked up once, not per item; and only what is returned is copied: the
    FilterExpression (which only reads) runs on the stored items, then the kept ones are deep
    copied, or, with a projection, projected without a copy of the whole item (`project_names`).

    The Items it returns are made without moto's BaseModel.__new__, which appends every instance
    to `Item.instances_tracked` (for moto's dashboard): as moto ships it each Item a Query returns
    stays alive for good (moto's Query of 1,000 subscriptions keeps 2,000 Items, 1.3 MB); in the
    AWS process, where that list holds them weakly (`track_moto_instances_weakly`), each would
    still cost a weak reference.
    """

    def __init__(self) -> None:
        from moto.dynamodb.comparisons import get_comparison_func
        from moto.dynamodb.models import dynamo_type
        from moto.dynamodb.models import table as table_module

        self.comparison = get_comparison_func
        self.table_module = table_module
        self.item_class = dynamo_type.Item
        self.dynamo_class = dynamo_type.DynamoType
        self.attributes_class = dynamo_type.LimitedSizeDict
        self.serializer, self.deserializer = dynamo_type.serializer, dynamo_type.deserializer

    def answer(self, table: Any, call: inspect.BoundArguments) -> Any:
        """`table.query(...)`'s answer, or None when this Query is not one it answers (a legacy
        QueryFilter, several range conditions, an unknown comparison, a key that cannot be looked
        up): moto's own path answers it."""
        arguments = call.arguments
        if arguments.get("filter_kwargs"):
            return None
        range_comparison = arguments.get("range_comparison")
        range_key_conditions = arguments.get("range_key_conditions")
        if range_key_conditions and len(range_key_conditions) > 1:
            return None
        compare: Any = None
        bounds: list[Any] = []
        range_name = range_key_conditions[-1][0] if range_key_conditions else None
        if range_comparison:
            compare = self.comparison(range_comparison)
            if compare is None:
                return None
            try:
                bounds = [bound.cast_value for bound in arguments.get("range_objs") or []]
            except Exception:  # moto raises it when the first item is compared: let it
                return None
        try:
            entry = table.items.get(arguments["hash_key"])  # .get: `items` is a defaultdict
        except (TypeError, ArithmeticError):  # unhashable (a set, a map), or N not a number
            return None
        item_class = self.item_class
        if entry is None:
            candidates: list[Any] = []
        elif not table.range_key_attr:
            candidates = [entry] if isinstance(entry, item_class) else []
        else:
            candidates = [item for item in entry.values() if isinstance(item, item_class)]
            candidates.sort(key=lambda item: _cast_value(item.range_key))
        scan_index_forward = arguments.get("scan_index_forward")
        if scan_index_forward is False:
            candidates.reverse()

        limit = arguments.get("limit")
        exclusive_start_key = arguments.get("exclusive_start_key")
        size_limit = self.table_module.RESULT_SIZE_LIMIT
        hash_attrs, range_attrs = [table.hash_key_attr], [table.range_key_attr]
        results: list[Any] = []
        result_size = 0
        scanned_count = 0
        last_evaluated_key = None
        processing_previous_page = exclusive_start_key is not None
        for result in candidates:
            if processing_previous_page:
                if table._item_comes_before_dct(
                    result, exclusive_start_key, hash_attrs, range_attrs, scan_index_forward
                ):
                    continue
                processing_previous_page = False
            size = _item_size(result)
            if len(results) == limit or result_size + size > size_limit:
                last_evaluated_key = table._get_last_evaluated_key(results[-1], None)
                break
            if compare is None:
                results.append(result)
                result_size += size
                scanned_count += 1
                continue
            key = result.attrs.get(range_name) if range_name else None
            if key is None:  # moto's `elif not index_name:` (never for a stored item: it has its key)
                matched = result.range_key.compare(range_comparison, arguments.get("range_objs"))
            else:
                matched = compare(_cast_value(key), *bounds)
            if matched:
                results.append(result)
                result_size += size
                scanned_count += 1

        filter_expression = arguments.get("filter_expression")
        if filter_expression is not None:
            results = [item for item in results if filter_expression.expr(item)]
        projection = arguments.get("projection_expressions")
        if projection:
            project = self.projector(projection)
            return [project(item) for item in results], scanned_count, last_evaluated_key
        return [self.copy_item(item) for item in results], scanned_count, last_evaluated_key

    def new_item(self, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> Any:
        """`Item(hash_key, range_key, attrs)` (moto's own __init__), not kept by moto."""
        item = object.__new__(self.item_class)
        self.item_class.__init__(item, hash_key, range_key, attrs)
        return item

    def copy_item(self, item: Any) -> Any:
        """`copy.deepcopy(item)`, not kept by moto: what `Item.__deepcopy__` makes (the keys and
        each attribute's value deep-copied, the attributes set without LimitedSizeDict's size
        check, as the stored item passed it). `DynamoType.__deepcopy__` of a value that is no
        list, map or set is a new DynamoType with the same `type` and `value`: made inline."""
        copied = self.new_item(self.copy_value(item.hash_key), self.copy_value(item.range_key), {})
        attrs = copied.attrs
        for name, value in item.attrs.items():
            dict.__setitem__(attrs, name, self.copy_value(value))
        return copied

    def copy_value(self, value: Any) -> Any:
        """`copy.deepcopy(value)` of a DynamoType (or None)."""
        if value is None or value.type in _DEEP_KINDS:
            return copy.deepcopy(value)
        copied = object.__new__(self.dynamo_class)
        copied.type, copied.value = value.type, value.value
        return copied

    def projector(self, paths: list[list[str]]) -> Callable[[Any], Any]:
        """What `copy.deepcopy(item).project(paths)` returns (moto's Query projects copies), made
        without copying the item when every path is one top-level name and every attribute of
        the item is `_regular_json_safe`: `project` turns the whole item into plain values
        (boto3's deserializer), takes each named attribute present, and serializes them back into
        a new Item with the item's keys (`Item.__init__`: a DynamoType per attribute, added
        through LimitedSizeDict, which raises past 405,000 bytes); a named S or BOOL comes back as
        it was, any other through boto3 as there. The new Item shares nothing mutable with the
        stored one (its keys are new DynamoTypes, whose S, N or B value is immutable)."""

        def project(item: Any) -> Any:
            return self.copy_item(item).project(paths)

        if not all(len(path) == 1 and "[" not in path[0] for path in paths):  # nested, a list item
            return project
        names = [path[0] for path in paths]
        item_class, dynamo_class, attributes_class = self.item_class, self.dynamo_class, self.attributes_class
        new = object.__new__

        def dynamo(kind: str, raw: Any) -> Any:
            """`DynamoType({kind: raw})` for a kind that is not L or M (its __init__ only sets
            `type` and `value` then)."""
            value = new(dynamo_class)
            value.type, value.value = kind, raw
            return value

        def copy_key(key: Any) -> Any:
            """A new DynamoType equal to a stored item's key (S, N or B: its value is immutable)."""
            if key is None:
                return None
            if type(key.value) is str or type(key.value) is bytes:
                return dynamo(key.type, key.value)
            return dynamo_class(key)

        def project_names(item: Any) -> Any:
            attrs = item.attrs
            for value in attrs.values():
                if value.type == "S":  # the common case, inline
                    if type(value.value) is not str:
                        return project(item)
                elif not _regular_json_safe(value):
                    return project(item)
            serialized: dict[str, Any] = {}  # what `project` gives Item.__init__
            projected: dict[str, Any] = {}  # the DynamoTypes Item.__init__ makes of them
            for name in names:
                value = attrs.get(name)
                if value is None:
                    continue
                kind = value.type
                if kind == "S" or kind == "BOOL":
                    serialized[name] = {kind: value.value}
                    projected[name] = dynamo(kind, value.value)
                else:
                    regular = self.deserializer.deserialize(value.to_regular_json())
                    serialized[name] = dict(self.serializer.serialize(regular))
                    projected[name] = dynamo_class(serialized[name])
            hash_key, range_key = copy_key(item.hash_key), copy_key(item.range_key)
            if _attributes_size(projected) > _ITEM_SIZE_LIMIT:  # Item.__init__ raises: let it
                return self.new_item(hash_key, range_key, serialized)
            # what Item.__init__ makes, without LimitedSizeDict's check per attribute (passed
            # above: it compares the running sum of the same sizes with the same limit)
            copied = attributes_class()
            for name, value in projected.items():
                dict.__setitem__(copied, name, value)
            made = new(item_class)
            made.hash_key, made.range_key, made.attrs = hash_key, range_key, copied
            return made

        return project_names


def query_dynamodb_tables_by_hash_key(*, narrow_only: bool = False) -> Callable[[], None]:
    """Let a base-table Query read only its hash key's items, and do moto's work on them once;
    returns what undoes it. `narrow_only`: the first step alone (bench.moto_query compares).

    moto's `Table.query` takes a base-table Query's candidates from `self.all_items()`: every item
    of the table, sorted by (hash, range), then kept when `item.hash_key == hash_key` (a Query of
    1,000 subscriptions in a table of many topics pays for the whole table, every page). moto
    stores a table's items by hash key (`table.items[hash] -> {range: Item}`, or the Item itself
    without a range key), and a DynamoType's hash and equality are both (type, value), so the
    items that filter keeps are exactly that key's entry. Then moto sorts them again through
    `DynamoType.__lt__`, computes each one's size twice, deep-copies every item it returns, then
    projects the copies, and tracks every Item it made (moto's instance tracking): for
    1,000 subscriptions with connectionId projected, ~40 ms of CPU even when it reads only that
    key's items.

    A base-table Query is answered by `_BaseTableQuery`: moto's steps on that key's entry, each
    done once, copying only what it returns, keeping nothing (~3.5 ms for those 1,000; pinned to
    the moto code it follows in test_moto_seams.py). Whatever it does not answer (a legacy
    QueryFilter, a key value that cannot be looked up: a set, an N that is no number) goes to moto's
    `Table.query`, whose first `all_items()` then returns that key's entry alone, in moto's own
    order (with `narrow_only`, every base-table Query does). An index Query's `all_items()` is the
    items that can match its hash key conditions, unsorted, sorted alone in `all_items`'s order
    before moto's `sorted_items` (`unsorted_items`; with `narrow_only`, moto's path). A Query with
    no hash key takes moto's path.
    test_dynamodb_query_by_hash_key.py compares the answers with moto's on random tables.
    """
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    original_query = vars(Table)["query"]
    original_all_items = vars(Table)["all_items"]
    original_sorted_items = vars(Table)["sorted_items"]
    signature = inspect.signature(original_query)
    positions = list(signature.parameters)
    hash_key_at, index_name_at = positions.index("hash_key") - 1, positions.index("index_name") - 1
    conditions_at = positions.index("hash_key_conditions") - 1
    direct = None if narrow_only else _BaseTableQuery()

    def range_key(item: Any) -> Any:
        return item.range_key

    def argument(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, at: int) -> Any:
        return kwargs[name] if name in kwargs else (args[at] if len(args) > at else None)

    @functools.wraps(original_query)
    def query(table: Any, *args: Any, **kwargs: Any) -> Any:
        hash_key = argument(args, kwargs, "hash_key", hash_key_at)
        if argument(args, kwargs, "index_name", index_name_at):
            if direct is None:
                return original_query(table, *args, **kwargs)
            conditions = argument(args, kwargs, "hash_key_conditions", conditions_at)
            token = _INDEX_QUERY.set((table, list(conditions or [])))
            sort_token = _SORT_AS_ALL_ITEMS.set(None)  # set by all_items(), this Query's only
            try:
                return original_query(table, *args, **kwargs)
            finally:
                _INDEX_QUERY.reset(token)
                _SORT_AS_ALL_ITEMS.reset(sort_token)
        if hash_key is None:
            return original_query(table, *args, **kwargs)
        if direct is not None:
            answer = direct.answer(table, signature.bind(table, *args, **kwargs))
            if answer is not None:
                return answer
        token = _BASE_TABLE_QUERY.set((table, hash_key))
        try:
            return original_query(table, *args, **kwargs)
        finally:
            _BASE_TABLE_QUERY.reset(token)

    @functools.wraps(original_all_items)
    def all_items(table: Any) -> Any:
        index_query = _INDEX_QUERY.get()
        if index_query is not None and index_query[0] is table:
            return unsorted_items(table, index_query[1])
        under_way = _BASE_TABLE_QUERY.get()
        if under_way is None or under_way[0] is not table:
            return original_all_items(table)
        _BASE_TABLE_QUERY.set(None)  # the Query's candidates only: any later call reads the table
        try:
            entry = table.items.get(under_way[1])  # .get: `items` is a defaultdict
        except (TypeError, ArithmeticError):  # unhashable (a set, a map), or N not a number:
            # moto's own path decides (its filter compares the type first)
            return original_all_items(table)
        if entry is None:
            return []
        if not table.range_key_attr:
            return [entry] if isinstance(entry, Item) else []
        # all_items's order (hash, then range: test_moto_seams.py pins it) within one hash key
        return sorted((item for item in entry.values() if isinstance(item, Item)), key=range_key)

    def unsorted_items(table: Any, conditions: list[tuple[str, Any]]) -> Any:
        """An index Query's `all_items()`: the table's items that can match its index hash key
        conditions, unsorted, marked so that `sorted_items` first sorts the ones the Query keeps
        in `all_items`'s order. moto sorts the whole table by (hash, range) (14 of a GSI Query's
        21 ms at 5,000 items), then keeps the items whose attributes equal the conditions'
        (`not value or value != expected`: type, then cast value) in that order. Kept here: those
        of equal type and cast value (moto's loop checks them again). With one Python type per
        key of the table (moto checks each key's type on writes, and its values are distinct),
        `all_items`'s order is a total one, so the matches sorted alone come in the same order.
        Otherwise moto's sorted list, unmarked."""
        _INDEX_QUERY.set(None)  # this call only
        try:
            expected = [(name, value.type, _cast_value(value)) for name, value in conditions]
        except Exception:  # moto raises it comparing an item of that type, if any: let it
            return original_all_items(table)
        kinds: set[tuple[Any, ...]] = set()
        items: list[Any] = []
        for entry in table.items.values():
            for item in entry.values() if table.range_key_attr else (entry,):
                if not isinstance(item, Item):
                    return original_all_items(table)
                hash_key, range_key = item.hash_key, item.range_key
                kinds.add(
                    (hash_key.type, type(hash_key.value))
                    if range_key is None
                    else (hash_key.type, type(hash_key.value), range_key.type, type(range_key.value))
                )
                attrs = item.attrs
                for name, kind, cast in expected:
                    value = attrs.get(name)
                    if value is None or value.type != kind or _cast_value(value) != cast:
                        break
                else:
                    items.append(item)
        if len(kinds) > 1:
            return original_all_items(table)
        _SORT_AS_ALL_ITEMS.set(table)
        return items

    @functools.wraps(original_sorted_items)
    def sorted_items(table: Any, hash_key_attrs: Any, range_key_attrs: Any, items: list[Any]) -> Any:
        if _SORT_AS_ALL_ITEMS.get() is table:
            _SORT_AS_ALL_ITEMS.set(None)
            items.sort(key=all_items_order)
        return original_sorted_items(table, hash_key_attrs, range_key_attrs, items)

    def all_items_order(item: Any) -> Any:
        """`all_items`'s sort key (`(x.hash_key, x.range_key) if x.range_key else x.hash_key`),
        as the cast values its DynamoTypes compare (one type per key: equal types, so `==` and
        `<` on them are the cast values')."""
        if item.range_key is None:
            return _cast_value(item.hash_key)
        return _cast_value(item.hash_key), _cast_value(item.range_key)

    table_class: Any = Table
    replaced = {"query": query, "all_items": all_items, "sorted_items": sorted_items}
    originals = {name: vars(Table)[name] for name in replaced}
    for name, function in replaced.items():
        setattr(table_class, name, function)

    def undo() -> None:
        for name, function in originals.items():
            setattr(table_class, name, function)

    return undo


class LiveInstances:
    """A moto model class's `instances_tracked` in the AWS process: its instances still alive,
    held by weak reference. moto appends every instance it makes (`BaseModel.__new__`) and
    iterates the list in two places only: S3's `reset` disposes each FakeKey and FakeMultipart
    it yields, the dashboard's `/moto-api/data.json` lists them. Both get the live instances;
    what nothing else holds any more (an Item a call copied, a deleted message) is freed."""

    def __init__(self) -> None:
        refs: dict[int, weakref.KeyedRef[int, Any]] = {}
        self._refs = refs
        self._ids = itertools.count()

        def forget(ref: weakref.KeyedRef[int, Any]) -> None:  # the instance was freed
            refs.pop(ref.key, None)

        self._forget = forget

    def append(self, instance: Any) -> None:
        key = next(self._ids)
        self._refs[key] = weakref.KeyedRef(instance, self._forget, key)

    def __iter__(self) -> Iterator[Any]:
        # the references copied at once (`list` of a dict's values runs no Python code, so no
        # other thread adds or forgets one meanwhile; WeakValueDictionary's iteration would fail
        # with "dictionary changed size")
        refs = list(self._refs.values())
        return iter([instance for ref in refs if (instance := ref()) is not None])

    def __len__(self) -> int:
        return len(self._refs)


def track_moto_instances_weakly() -> Callable[[], None]:
    """Let moto's models be freed when its backends drop them (idempotent); returns what undoes it.

    moto's `BaseModel.__new__` appends every instance it ever makes to its class's
    `instances_tracked` list, for good: in a long `tidings dev` every Item an UpdateItem, GetItem
    or Scan copied, every SQS message, every S3 object version stayed referenced, and so did the
    copy ListObjectVersions makes of every version, with its bytes (in memory up to 5 MiB an
    object). In the AWS process, 20,000 UpdateItems kept 44 MiB and 60 ListObjectVersions of three
    256 KiB versions 46 MiB; now 1.5 and 0.3 (docs/benchmarks.md). Here each class's list becomes
    a `LiveInstances` (at its first instance, and again after moto's `reset_model_data` puts back
    a list), which moto's readers iterate as before.

    An overwritten or deleted S3 object is disposed by moto when it leaves its bucket
    (`_VersionedKeyStore.setlist` and `pop` close its buffer); a copy moto made and dropped is
    closed by `FakeKey.__del__` when it is freed, which warns that it was "not disposed of in
    time": in this process that is how such a copy is released, so that ResourceWarning is not
    shown. test_moto_seams.py pins all of it.
    """
    from moto.core.common_models import BaseModel

    original = vars(BaseModel)["__new__"]
    if getattr(original, "__func__", original).__name__ == "_new_tracked_weakly":
        return lambda: None
    converting = threading.Lock()
    base_model: Any = BaseModel

    def _new_tracked_weakly(cls: Any, *args: Any, **kwargs: Any) -> Any:
        instance = super(base_model, cls).__new__(cls)
        tracked = cls.instances_tracked
        if type(tracked) is not LiveInstances:
            with converting:  # two threads' first instances of a class: one list, both kept
                tracked = cls.instances_tracked
                if type(tracked) is not LiveInstances:
                    live = LiveInstances()
                    for earlier in tracked:
                        live.append(earlier)
                    cls.instances_tracked = tracked = live
        try:  # noqa: SIM105 - per model instance: no context manager
            tracked.append(instance)
        except TypeError:  # no weak reference to it (slots without __weakref__): not tracked
            pass
        return instance

    base_model.__new__ = staticmethod(_new_tracked_weakly)
    warnings.filterwarnings("ignore", message="S3 key was not disposed of in time", category=ResourceWarning)

    def undo() -> None:
        base_model.__new__ = original

    return undo


class AwsServices:
    """moto on `host:port` (0: a free port) with the app's tables, buckets, queues, buses, rules,
    parameters, secrets and state machines; served by its own process (aws_process.py)."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        hosts: Callable[[int], HostPolicy] | None = None,
        *,
        enforce_iam: bool = True,
        on_denied: Any = None,
    ) -> None:
        self._app: LocalApp | None = None  # set by create_resources
        self.host = host
        self.port = port
        self.hosts = hosts  # the Host policy for the bound port (hosts.py); None: any Host
        self._process: AwsProcess | None = None
        self._address: tuple[str, int] = (host, port)
        self._interceptors: list[tuple[Interceptor, InterceptMatch]] = []
        self._events: EventDelivery | None = None
        # this run's keys: admin (the stack, CLI, tests), then one per function / rule; the AWS
        # process gets each change before the call that made it returns
        self.credentials = RunCredentials()
        self.credentials.on_change(self._send_keys)
        self.enforce_iam = enforce_iam
        self._on_denied = on_denied

    def add_interceptor(self, interceptor: Interceptor, match: InterceptMatch) -> None:
        """Answer the requests `match` takes before moto does (the first interceptor that answers
        wins). `match` is decided in the AWS process: only those requests come to this one."""
        self._interceptors.append((interceptor, match))
        self._call("matches", [match for _, match in self._interceptors])

    def route_events(self, delivery: EventDelivery) -> None:
        """Rule matches with Lambda or Step Functions targets go to `delivery` (on this loop)."""
        delivery.install()
        self._events = delivery

    def _call(self, kind: str, *args: Any) -> Any:
        if self._process is None:
            return None  # sent whole when the process starts
        return self._process.link.call(kind, *args, timeout_s=60)

    def _send_keys(self) -> None:
        self._call("keys", self.credentials.table())

    def _intercept(self, fields: dict[str, str], body: bytes) -> Answer | None:
        """A request the AWS process sent here: the first interceptor that answers it, or None."""
        environ: dict[str, Any] = dict(fields)
        for interceptor, match in list(self._interceptors):
            if not match.matches(environ):
                continue
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            answer = interceptor(environ)
            if answer is not None:
                return _run_wsgi(answer, environ)
        return None

    def _deliver_events(
        self, rule_arn: str, rule_name: str, targets: list[dict[str, Any]], event: dict[str, Any]
    ) -> None:
        delivery = self._events
        if delivery is None:
            log.warning("event %s for rule %s dropped: delivery is not running", event.get("id"), rule_name)
            return
        delivery.schedule(rule_arn, rule_name, targets, event)

    def _names(self) -> Names:
        if self._app is None:
            return Names()
        return Names(secret_arns={r.name: r.arn for r in self._app.resources if r.kind == "secret"})

    def _denied(self, denial: Denial) -> None:
        if self._on_denied is not None:
            self._on_denied(denial)

    @property
    def app(self) -> LocalApp:
        if self._app is None:
            raise RuntimeError("AwsServices has no app yet: call create_resources(app) first")
        return self._app

    @property
    def endpoint(self) -> str:
        if self._process is None:
            raise RuntimeError("AwsServices is not started")
        host, port = self._address
        return f"http://{host}:{port}"

    @property
    def pid(self) -> int | None:
        """The AWS process's id while it runs."""
        return self._process.pid if self._process is not None else None

    def client(self, service: str) -> Any:
        """A boto3 client for the embedded services (never the developer's real account)."""
        factory: Any = boto3.client  # its overloads want a literal service name
        region = self._app.region if self._app is not None else DEFAULT_REGION
        return factory(
            service, endpoint_url=self.endpoint, region_name=region, **self.credentials.admin.boto()
        )

    def start_server(self) -> str:
        """Listen without creating resources; returns the endpoint.

        With port 0 the endpoint is known only now, and the template's queue URLs contain it:
        start the server, load the app with this endpoint, then `create_resources(app)`.
        """
        if self._process is None:
            # bound here: a taken port raises OSError at once (moto_server.bind); the AWS process
            # serves this socket behind the host check, the guard and the interceptors
            with bind(self.host, self.port) as listening:
                address = listening.getsockname()
                self._address = (str(address[0]), int(address[1]))
                self._process = AwsProcess(
                    listening,
                    self.hosts(self._address[1]) if self.hosts is not None else None,
                    self.credentials.table(),
                    enforce_iam=self.enforce_iam,
                    account=ACCOUNT_ID,
                    handlers={
                        "intercept": self._intercept,
                        "denied": self._denied,
                        "events": self._deliver_events,
                    },
                )
            if self._interceptors:
                self._call("matches", [match for _, match in self._interceptors])
        return self.endpoint

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    # ---------------------------------------------------------------- resources
    def create_resources(self, app: LocalApp, *, previous: LocalApp | None = None) -> None:
        """Create what the app's template declares; the app is kept for `client()`'s region.

        With `previous` (a reloaded template), what `previous` declared is left as it is, data
        included: only resources with new names are created, and the rules are put again.
        """
        self._app = app
        self._call("names", self._names())
        had = {(r.kind, r.name) for r in previous.resources} if previous else set()
        had_tables = {t.name for t in previous.tables} if previous else set()
        had_machines = {m.name for m in previous.state_machines.values()} if previous else set()
        by_kind: dict[str, list[SimpleResource]] = {}
        for resource in self.app.resources:
            if (resource.kind, resource.name) not in had:
                by_kind.setdefault(resource.kind, []).append(resource)
        # queues and buses first: bucket notifications and rule targets point at them
        for resource in by_kind.get("queue", []):
            self.create_queue(resource)
        for resource in by_kind.get("topic", []):  # publishers (an SNS service integration) need it
            self.client("sns").create_topic(Name=resource.name)
        for resource in by_kind.get("bus", []):
            self.client("events").create_event_bus(Name=resource.name)
        for table in self.app.tables:
            if table.name not in had_tables:
                self.create_table(table)
        for resource in by_kind.get("bucket", []):
            self.create_bucket(resource)
        for resource in by_kind.get("ssm", []):
            self.create_parameter(resource)
        for resource in by_kind.get("secret", []):
            self.create_secret(resource)
        for machine in self.app.state_machines.values():
            if machine.name in had_machines:
                continue
            self.client("stepfunctions").create_state_machine(
                name=machine.name,
                definition=json.dumps(machine.definition),
                roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{machine.name}-role",
            )
        self.create_rules()

    def create_table(self, table: Table) -> None:
        props = table.properties
        request: dict[str, Any] = {
            "TableName": table.name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        on_demand = request["BillingMode"] == "PAY_PER_REQUEST"
        throughput = props.get("ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
        if not on_demand:
            request["ProvisionedThroughput"] = throughput
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(key):
                indexes = [dict(index) for index in props[key]]
                for index in indexes:
                    if on_demand:
                        index.pop("ProvisionedThroughput", None)
                    elif key == "GlobalSecondaryIndexes":
                        index.setdefault("ProvisionedThroughput", throughput)
                request[key] = indexes
        stream = props.get("StreamSpecification")
        if stream:
            request["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream["StreamViewType"],
            }
        if props.get("SSESpecification"):
            # CloudFormation says SSEEnabled, the DynamoDB API says Enabled
            sse = props["SSESpecification"]
            request["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled", False))}
            for key in ("SSEType", "KMSMasterKeyId"):
                if key in sse:
                    request["SSESpecification"][key] = sse[key]
        if props.get("Tags"):
            request["Tags"] = props["Tags"]
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(**request)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=table.name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )

    def create_queue(self, resource: SimpleResource) -> None:
        props = resource.properties
        names = (
            "DelaySeconds",
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "VisibilityTimeout",
            "FifoQueue",
            "ContentBasedDeduplication",
            "SqsManagedSseEnabled",
        )
        attributes = {name: _attribute_text(props[name]) for name in names if name in props}
        for name in ("RedrivePolicy", "RedriveAllowPolicy"):
            if name in props:
                attributes[name] = props[name] if isinstance(props[name], str) else json.dumps(props[name])
        self.client("sqs").create_queue(QueueName=resource.name, Attributes=attributes)

    def create_bucket(self, resource: SimpleResource) -> None:
        s3 = self.client("s3")
        if self.app.region == "us-east-1":
            s3.create_bucket(Bucket=resource.name)
        else:
            s3.create_bucket(
                Bucket=resource.name, CreateBucketConfiguration={"LocationConstraint": self.app.region}
            )
        props = resource.properties
        cors_rules = props.get("CorsConfiguration", {}).get("CorsRules")
        if cors_rules:
            renamed = {"ExposedHeaders": "ExposeHeaders", "Id": "ID", "MaxAge": "MaxAgeSeconds"}
            rules = [{renamed.get(key, key): value for key, value in rule.items()} for rule in cors_rules]
            s3.put_bucket_cors(Bucket=resource.name, CORSConfiguration={"CORSRules": rules})
        notifications = props.get("NotificationConfiguration", {})
        if notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled", True) and (
            "EventBridgeConfiguration" in notifications
        ):
            # moto then emits "Object Created"/"Object Deleted" events to the event buses itself
            s3.put_bucket_notification_configuration(
                Bucket=resource.name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )

    def create_parameter(self, resource: SimpleResource) -> None:
        props = resource.properties
        request = {
            "Name": resource.name,
            "Type": props.get("Type", "String"),
            "Value": _attribute_text(props["Value"]),
        }
        if props.get("Description"):
            request["Description"] = props["Description"]
        self.client("ssm").put_parameter(**request)

    def create_secret(self, resource: SimpleResource) -> None:
        props = resource.properties
        secretsmanager = self.client("secretsmanager")
        if "SecretString" in props:
            value = str(props["SecretString"])
        else:
            value = self.generate_secret_string(props.get("GenerateSecretString", {}))
        request = {"Name": resource.name, "SecretString": value}
        if props.get("Description"):
            request["Description"] = props["Description"]
        secretsmanager.create_secret(**request)
        # the stack's ARN for the stored secret (moto picks its own random suffix)
        self._call("secret_arn", self.app.region, ACCOUNT_ID, resource.name, resource.arn)

    def generate_secret_string(self, spec: dict[str, Any]) -> str:
        """GenerateSecretString, generated here (moto's GetRandomPassword), never from the template."""
        options = {
            key: spec[key]
            for key in (
                "PasswordLength",
                "ExcludeCharacters",
                "ExcludeNumbers",
                "ExcludePunctuation",
                "ExcludeUppercase",
                "ExcludeLowercase",
                "IncludeSpace",
                "RequireEachIncludedType",
            )
            if key in spec
        }
        password: str = self.client("secretsmanager").get_random_password(**options)["RandomPassword"]
        template = spec.get("SecretStringTemplate")
        key = spec.get("GenerateStringKey")
        if template and key:
            document = json.loads(template)
            document[key] = password
            return json.dumps(document)
        return password

    def create_rules(self) -> None:
        events = self.client("events")
        for rule in self.app.rules:
            events.put_rule(Name=rule.name, EventBusName=rule.bus_name, EventPattern=json.dumps(rule.pattern))
            targets: list[dict[str, Any]] = []
            for target in rule.targets:
                entry: dict[str, Any] = {
                    "Id": target.target_id,
                    "Arn": target.arn,
                    "RetryPolicy": {
                        "MaximumRetryAttempts": target.retry_attempts,
                        "MaximumEventAgeInSeconds": target.max_event_age_s,
                    },
                }
                if target.dead_letter_arn:
                    entry["DeadLetterConfig"] = {"Arn": target.dead_letter_arn}
                if target.input is not None:
                    entry["Input"] = target.input
                if target.input_path is not None:
                    entry["InputPath"] = target.input_path
                targets.append(entry)
            if targets:
                events.put_targets(Rule=rule.name, EventBusName=rule.bus_name, Targets=targets)


def _run_wsgi(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> Answer:
    """A WSGI application's whole answer: status line, headers, body."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        started.append((status, list(headers)))

    chunks = app(environ, start_response)
    try:
        data = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, headers = started[-1]
    return status, headers, data


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
