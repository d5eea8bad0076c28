"""The AWS process keeps only the moto models its backends hold (aws.track_moto_instances_weakly):
moto's own instance lists used to keep every Item a call copied, every S3 object version and every
SQS message for good. Counted through moto's dashboard data (`/moto-api/data.json`, which lists
each model class's `instances_tracked`), so the same lists moto's S3 reset reads."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tidings.local.aws import AwsServices

MIB = 1 << 20


@pytest.fixture
def aws() -> Iterator[AwsServices]:
    services = AwsServices(port=0)
    services.start_server()
    yield services
    services.stop()


def moto_api(aws: AwsServices, path: str, method: str = "GET") -> bytes:
    keys = aws.credentials.admin.boto()
    url = aws.endpoint + path
    request = AWSRequest(method, url)
    credentials = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
    SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(url, method=method, headers=dict(request.headers))  # noqa: S310
    with urllib.request.urlopen(prepared) as reply:  # noqa: S310 - the endpoint on 127.0.0.1
        body: bytes = reply.read()
        return body


def tracked(aws: AwsServices, service: str, model: str) -> int:
    """How many instances of moto's `model` the AWS process's `instances_tracked` holds."""
    data = json.loads(moto_api(aws, "/moto-api/data.json"))
    return len(data.get(service, {}).get(model, []))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_dynamodb_items_a_call_copied_are_not_kept(aws: AwsServices) -> None:
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName="jobs",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    key = {"pk": {"S": "job"}, "sk": {"S": "state"}}
    for sk in ("a", "b", "c"):
        dynamodb.put_item(TableName="jobs", Item={"pk": {"S": "topic"}, "sk": {"S": sk}})
    for seq in range(200):
        answer = dynamodb.update_item(
            TableName="jobs", Key=key, UpdateExpression="SET seq = :s",
            ExpressionAttributeValues={":s": {"N": str(seq)}}, ReturnValues="ALL_NEW",
        )  # fmt: skip
        assert answer["Attributes"]["seq"] == {"N": str(seq)}
        assert dynamodb.get_item(TableName="jobs", Key=key)["Item"]["seq"] == {"N": str(seq)}
        assert dynamodb.scan(TableName="jobs")["Count"] == 4
    # the 4 stored items, not the 1,200 copies the calls made (moto kept them all)
    assert tracked(aws, "dynamodb", "Item") <= 8


def test_s3_overwritten_deleted_and_listed_versions_are_released(aws: AwsServices) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="plain")
    bodies = [os.urandom(256 * 1024) for _ in range(3)]
    for round_ in range(30):
        s3.put_object(Bucket="plain", Key="segment", Body=bodies[round_ % 3])
    assert s3.get_object(Bucket="plain", Key="segment")["Body"].read() == bodies[29 % 3]
    assert tracked(aws, "s3", "FakeKey") == 1  # the last version only
    s3.delete_object(Bucket="plain", Key="segment")
    with pytest.raises(ClientError) as gone:
        s3.get_object(Bucket="plain", Key="segment")
    assert gone.value.response["Error"]["Code"] == "NoSuchKey"
    assert tracked(aws, "s3", "FakeKey") == 0

    # ListObjectVersions deep-copies every version (its bytes too): moto kept each copy
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    versions = [s3.put_object(Bucket="versioned", Key="v", Body=body)["VersionId"] for body in bodies]
    pid = aws.pid
    assert pid is not None
    before = rss_mib(pid)
    for _ in range(60):  # 60 x 3 copies of 256 KiB: +45 MiB kept when moto tracked them
        listed = s3.list_object_versions(Bucket="versioned")["Versions"]
        assert sorted(version["VersionId"] for version in listed) == sorted(versions)
    assert tracked(aws, "s3", "FakeKey") == 3
    grown = rss_mib(pid) - before
    assert grown < 20, f"the AWS process grew by {grown:.1f} MiB over 60 ListObjectVersions"
    for version, body in zip(versions, bodies, strict=True):
        got = s3.get_object(Bucket="versioned", Key="v", VersionId=version)["Body"].read()
        assert got == body  # the stored versions were not disposed with the copies


def test_s3_multipart_upload_and_moto_reset_still_work(aws: AwsServices) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="uploads")
    upload = s3.create_multipart_upload(Bucket="uploads", Key="video")["UploadId"]
    parts = [os.urandom(5 * MIB), os.urandom(1024)]
    etags = [
        s3.upload_part(Bucket="uploads", Key="video", UploadId=upload, PartNumber=number, Body=part)["ETag"]
        for number, part in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket="uploads", Key="video", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )  # fmt: skip
    assert s3.get_object(Bucket="uploads", Key="video")["Body"].read() == b"".join(parts)
    # moto's reset (S3 disposes every key its instance lists yield) runs over the weak lists
    moto_api(aws, "/moto-api/reset", "POST")
    assert tracked(aws, "s3", "FakeKey") == 0
    assert s3.list_buckets().get("Buckets", []) == []
    s3.create_bucket(Bucket="uploads")
    s3.put_object(Bucket="uploads", Key="again", Body=b"after reset")
    assert s3.get_object(Bucket="uploads", Key="again")["Body"].read() == b"after reset"


def test_sqs_messages_received_and_deleted_are_not_kept(aws: AwsServices) -> None:
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="work")["QueueUrl"]
    for number in range(150):
        sqs.send_message(QueueUrl=queue, MessageBody=f"message {number}")
        (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
        assert message["Body"] == f"message {number}"
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    assert tracked(aws, "sqs", "Message") == 0
