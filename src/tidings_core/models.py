"""pynamodb models of the four tables; keys, indexes and TTL match `template.yaml`.

The Jobs table holds two kinds of item: jobs (`JobState`) and each user's slots (`JobSlots`).

Table names come from the environment at run time (`bind_tables`), so the models carry
placeholders. The DynamoDB endpoint is botocore's: `AWS_ENDPOINT_URL` (and
`AWS_ENDPOINT_URL_DYNAMODB`) apply because no `host` is set here.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.exceptions import TableError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from .config import Settings


class Connection(Model):
    """One open WebSocket connection. Never holds tokens or headers."""

    class Meta:
        table_name = "Connections"
        billing_mode = "PAY_PER_REQUEST"

    connection_id = UnicodeAttribute(hash_key=True, attr_name="connectionId")
    user_id = UnicodeAttribute(attr_name="userId")
    connected_at = NumberAttribute(attr_name="connectedAt")  # epoch ms
    ttl = TTLAttribute(attr_name="ttl")  # epoch seconds
    # the per-connection token bucket of client frames (registry.take_frame_token)
    bucket_tokens = NumberAttribute(null=True, attr_name="bucketTokens")
    bucket_at = NumberAttribute(null=True, attr_name="bucketAt")  # epoch ms of the last refill


class ByConnectionIndex(GlobalSecondaryIndex["Subscription"]):  # type: ignore[no-untyped-call]
    """Every topic of one connection (used when it goes away)."""

    class Meta:
        index_name = "ByConnection"
        projection = KeysOnlyProjection()

    connection_id = UnicodeAttribute(hash_key=True, attr_name="connectionId")
    topic = UnicodeAttribute(range_key=True, attr_name="topic")


class Subscription(Model):
    """A connection listening to a topic; sorted by connection id within the topic."""

    class Meta:
        table_name = "Subscriptions"
        billing_mode = "PAY_PER_REQUEST"

    topic = UnicodeAttribute(hash_key=True, attr_name="topic")
    connection_id = UnicodeAttribute(range_key=True, attr_name="connectionId")
    user_id = UnicodeAttribute(attr_name="userId")
    created_at = NumberAttribute(attr_name="createdAt")  # epoch ms
    ttl = TTLAttribute(attr_name="ttl")
    by_connection = ByConnectionIndex()


class ByUserIndex(GlobalSecondaryIndex["JobState"]):  # type: ignore[no-untyped-call]
    """A user's jobs, most recently updated last (query backwards for newest first)."""

    class Meta:
        index_name = "ByUser"
        projection = AllProjection()

    user_id = UnicodeAttribute(hash_key=True, attr_name="userId")
    updated_at = NumberAttribute(range_key=True, attr_name="updatedAt")


class JobState(Model):
    """The latest state of one job, the fan-out checkpoint, and the workers' progress counters."""

    class Meta:
        table_name = "Jobs"
        billing_mode = "PAY_PER_REQUEST"

    job_id = UnicodeAttribute(hash_key=True, attr_name="jobId")
    user_id = UnicodeAttribute(attr_name="userId")
    updated_at = NumberAttribute(attr_name="updatedAt")  # epoch ms
    ttl = TTLAttribute(null=True, attr_name="ttl")
    # notify side: the last stored event and the snapshot message (JSON text)
    seq = NumberAttribute(default=0, attr_name="seq")
    stage = UnicodeAttribute(null=True, attr_name="stage")
    percent = NumberAttribute(null=True, attr_name="percent")
    message = UnicodeAttribute(null=True, attr_name="message")
    # how many shards this job's events are delivered in (shards.choose_layout; absent: not yet)
    fanout_shards = NumberAttribute(null=True, attr_name="fanoutShards")
    # worker side: the seq counter events are numbered from, and per-segment percents
    progress_seq = NumberAttribute(default=0, attr_name="progressSeq")
    segment_count = NumberAttribute(null=True, attr_name="segmentCount")
    # untyped constructor in pynamodb's stubs
    segment_percents = MapAttribute[str, Any](default=dict, attr_name="segmentPercents")  # type: ignore[no-untyped-call]
    input = MapAttribute[str, Any](null=True, attr_name="input")  # type: ignore[no-untyped-call]
    # the one transcode execution that owns this job (the plan step's conditional claim)
    transcode_execution = UnicodeAttribute(null=True, attr_name="transcodeExecution")
    by_user = ByUserIndex()


class JobSlots(Model):
    """One user's unfinished jobs, each holding one of their slots (`registry.create_job`).

    It lives in the Jobs table under the key `slots#<userId>`, which no job id (hex), event id or
    topic id (no `#`) can be. It has no `userId` or `updatedAt`, so the ByUser index never lists it.
    """

    class Meta:
        table_name = "Jobs"
        billing_mode = "PAY_PER_REQUEST"

    key = UnicodeAttribute(hash_key=True, attr_name="jobId")
    # job id -> its creation time (epoch ms); a job's entry is its slot
    held = MapAttribute[str, Any](default=dict, attr_name="held")  # type: ignore[no-untyped-call]
    ttl = TTLAttribute(null=True, attr_name="ttl")


class ShardCheckpoint(Model):
    """One shard of one job's delivery (`shards.py`): the newest state to deliver, the sweep in
    progress, and the lease of the invocation sweeping it. Small, so its writes stay 1 unit."""

    class Meta:
        table_name = "Fanout"
        billing_mode = "PAY_PER_REQUEST"

    shard = UnicodeAttribute(hash_key=True, attr_name="shard")  # <jobId>/<layout>/<index>
    seq = NumberAttribute(attr_name="seq")  # the newest seq to deliver to this shard
    message = UnicodeAttribute(attr_name="message")  # its server message (JSON text)
    sweep_seq = NumberAttribute(attr_name="sweepSeq")  # the seq being swept
    origin = UnicodeAttribute(null=True, attr_name="origin")
    wrapped = BooleanAttribute(default=False, attr_name="wrapped")
    cursor = UnicodeAttribute(null=True, attr_name="cursor")
    done = BooleanAttribute(default=False, attr_name="done")
    owner = UnicodeAttribute(null=True, attr_name="owner")  # the invocation holding the lease
    lease_until = NumberAttribute(default=0, attr_name="leaseUntil")  # epoch ms
    version = NumberAttribute(default=0, attr_name="version")  # every write raises it
    ttl = TTLAttribute(null=True, attr_name="ttl")


ALL_MODELS: tuple[type[Model], ...] = (Connection, Subscription, JobState, JobSlots, ShardCheckpoint)


def bind_tables(settings: Settings) -> None:
    """Point the models at the deployed table names (pynamodb reconnects when a name changes)."""
    Connection.Meta.table_name = settings.require("connections_table")
    Subscription.Meta.table_name = settings.require("subscriptions_table")
    JobState.Meta.table_name = settings.require("jobs_table")
    JobSlots.Meta.table_name = JobState.Meta.table_name  # its items share the Jobs table
    if settings.fanout_table:  # only notify and deliver have it (registry requires it there)
        ShardCheckpoint.Meta.table_name = settings.fanout_table


def share_one_connection() -> None:
    """Give every model the same pynamodb `Connection`, hence one botocore session and client.

    Each model otherwise builds its own on first use: a botocore session and a DynamoDB client
    each (60-80 ms of CPU apiece on a cold start, bench/coldstart.py), three in notify. The
    shared Connection holds every table's key schema, which it keys by table name.
    """
    shared = None
    for model in ALL_MODELS:
        if not model.Meta.table_name:
            continue
        table = model._get_connection()
        if shared is None:
            shared = table.connection
        elif table.connection is not shared:
            try:
                shared.get_meta_table(table.table_name)
            except TableError:  # JobSlots shares the Jobs table, hence its key schema
                shared.add_meta_table(table.connection.get_meta_table(table.table_name))
            table.connection = shared


def _key_schema(keys: Any) -> list[dict[str, str]]:
    """HASH first, as CloudFormation writes it."""
    ordered = sorted(keys, key=lambda k: k["KeyType"])
    return [{"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]} for k in ordered]


def table_properties(model: type[Model]) -> dict[str, Any]:
    """The model's keys, indexes and TTL in `AWS::DynamoDB::Table` property form (for template checks)."""
    schema = model._get_schema()
    attributes = sorted(schema["attribute_definitions"], key=lambda a: a["AttributeName"])
    props: dict[str, Any] = {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": attributes,
        "KeySchema": _key_schema(schema["key_schema"]),
    }
    indexes = [
        {
            "IndexName": index["index_name"],
            "KeySchema": _key_schema(index["key_schema"]),
            "Projection": index["projection"],
        }
        for index in schema["global_secondary_indexes"]
    ]
    if indexes:
        props["GlobalSecondaryIndexes"] = indexes
    ttl_name = next(
        (attr.attr_name for attr in model.get_attributes().values() if isinstance(attr, TTLAttribute)), None
    )
    if ttl_name:
        props["TimeToLiveSpecification"] = {"AttributeName": ttl_name, "Enabled": True}
    return props


def create_tables(settings: Settings) -> None:
    """Create the tables with their indexes and TTL (tests and local tools; never in a Lambda)."""
    bind_tables(settings)
    for model in ALL_MODELS:
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
