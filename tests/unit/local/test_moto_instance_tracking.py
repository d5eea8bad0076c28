"""aws.track_moto_instances_weakly in this interpreter (the AWS process installs it): moto's
instance lists hold what its backends hold, and its readers (the dashboard's data, S3's reset)
still get every live instance. Through the real AWS process:
tests/integration/runtime/test_aws_model_tracking.py."""

from __future__ import annotations

import gc
import json
import warnings
import weakref
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from tidings.local.aws import LiveInstances, track_moto_instances_weakly

ACCOUNT = "123456789012"


@pytest.fixture
def weakly(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[warnings.WarningMessage]]:
    """moto mocked, instances tracked weakly; yields the warnings shown meanwhile."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with warnings.catch_warnings(record=True) as shown, mock_aws():
        warnings.simplefilter("always")
        undo = track_moto_instances_weakly()
        try:
            yield shown
        finally:
            undo()


def test_installing_twice_wraps_once_and_undo_restores_moto() -> None:
    from moto.core.common_models import BaseModel

    original = vars(BaseModel)["__new__"]
    with warnings.catch_warnings():
        undo = track_moto_instances_weakly()
        try:
            installed = vars(BaseModel)["__new__"]
            assert installed is not original
            track_moto_instances_weakly()()  # a second install, and its undo, change nothing
            assert vars(BaseModel)["__new__"] is installed
        finally:
            undo()
    assert vars(BaseModel)["__new__"] is original


def test_items_a_call_copied_are_freed_and_the_stored_one_stays_listed(
    weakly: list[warnings.WarningMessage],
) -> None:
    from moto.dynamodb.models.dynamo_type import Item
    from moto.moto_api._internal.responses import MotoAPIResponse

    client = boto3.client("dynamodb")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for number in range(50):
        client.update_item(
            TableName="t", Key={"pk": {"S": "a"}}, UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": str(number)}}, ReturnValues="ALL_NEW",
        )  # fmt: skip
        client.get_item(TableName="t", Key={"pk": {"S": "a"}})
    gc.collect()
    assert isinstance(Item.instances_tracked, LiveInstances)
    (stored,) = Item.instances_tracked  # moto kept 100 copies besides
    assert stored.attrs["n"].value == "49"
    status, _, body = MotoAPIResponse().model_data(None, "", {})  # the dashboard's data.json
    assert status == 200 and len(json.loads(body)["dynamodb"]["Item"]) == 1


def test_s3_reset_disposes_live_keys_and_freed_copies_close_without_a_warning(
    weakly: list[warnings.WarningMessage],
) -> None:
    from moto.s3.models import FakeKey, s3_backends

    client = boto3.client("s3")
    client.create_bucket(Bucket="versioned")
    client.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two"):
        client.put_object(Bucket="versioned", Key="k", Body=body)
    backend = s3_backends[ACCOUNT]["aws"]
    copies = backend.list_object_versions("versioned")[0]  # moto's deep copies of both versions
    buffers = [copy._value_buffer for copy in copies]
    assert len(FakeKey.instances_tracked) == 4
    del copies
    gc.collect()
    assert all(buffer.closed for buffer in buffers), "a freed copy's buffer stays open"
    assert len(FakeKey.instances_tracked) == 2
    shown = [str(w.message) for w in weakly if issubclass(w.category, ResourceWarning)]
    assert not shown, shown

    held = FakeKey("outside", b"held elsewhere", account_id=ACCOUNT, region_name="us-east-1")
    alive = weakref.ref(held)
    stored = list(backend.buckets["versioned"].keys.getlist("k"))
    backend.reset()  # disposes the buckets' keys, then every key the weak list yields
    assert held.disposed and alive() is held
    assert all(key.disposed for key in stored)


def test_live_instances_iterate_while_other_threads_add_and_free() -> None:
    """moto's dashboard or S3 reset may iterate a list while requests add instances and free
    others: iterating yields live instances and never fails."""
    import threading

    class Model:
        pass

    live = LiveInstances()
    kept = [Model() for _ in range(100)]
    for model in kept:
        live.append(model)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for _ in range(200):
                live.append(Model())  # freed at once: appended, then forgotten

    workers = [threading.Thread(target=churn) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(2000):
            seen = list(live)
            assert all(isinstance(model, Model) for model in seen) and len(seen) >= 100
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert sorted(map(id, live)) == sorted(map(id, kept))
