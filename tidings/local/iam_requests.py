"""An AWS request as IAM sees it: the actions, resource ARNs and condition keys AWS authorizes.

Pure code: the request arrives as method, path, query, headers and body (what the embedded
endpoint received); the answer is one `Check` per authorization AWS makes. One call can need
several: BatchGetItem is checked per table, TransactWriteItems per item with that item's own
action, an S3 copy needs GetObject on the source as well as PutObject on the target, a Query on
an index needs the index ARN. Operations not listed here are checked as `service:Operation` on
`*` (what AWS does for actions without resource-level permissions).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

# X-Amz-Target prefixes of the JSON-protocol services, by signing name
_TARGET_SERVICE = {
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodb",
    "secretsmanager": "secretsmanager",
    "AWSEvents": "events",
    "AWSStepFunctions": "states",
    "AmazonSQS": "sqs",
    "AmazonSSM": "ssm",
    "TrentService": "kms",
    "Logs_20140328": "logs",
}
# IAM's action prefix when it is not the signing name
_ACTION_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
# actions AWS never authorizes against IAM policies
_UNCHECKED = {"sts:GetCallerIdentity"}


@dataclass(frozen=True)
class Check:
    action: str  # service:Operation
    resource: str  # an ARN, or "*"
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # lower-case keys


@dataclass(frozen=True)
class AwsRequest:
    service: str  # the signing name from the credential scope
    method: str
    path: str  # as received (percent-encoded)
    query: Mapping[str, Sequence[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    region: str
    account: str


@dataclass(frozen=True)
class Names:
    """How names the caller gives become ARNs (the stack's secrets carry a random suffix)."""

    secret_arns: Mapping[str, str] = field(default_factory=dict)  # secret name -> ARN


def operation_of(request: AwsRequest) -> str:
    """The API operation: X-Amz-Target's, the query protocol's Action, or the REST path's."""
    target = request.headers.get("x-amz-target", "")
    if target:
        return target.rsplit(".", 1)[-1]
    action = _form(request).get("Action")
    if action:
        return action
    return ""


def _form(request: AwsRequest) -> dict[str, str]:
    values = {key: items[0] for key, items in request.query.items() if items}
    content_type = request.headers.get("content-type", "")
    if "x-www-form-urlencoded" in content_type and request.body:
        from urllib.parse import parse_qsl

        values.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return values


def _json(request: AwsRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def checks(request: AwsRequest, names: Names | None = None) -> list[Check]:
    """Every authorization AWS makes for this request, in order."""
    names = names or Names()
    service = request.service
    if service == "s3":
        return s3_checks(request)
    if service == "lambda":
        return lambda_checks(request)
    operation = operation_of(request)
    prefix = _ACTION_PREFIX.get(service, service)
    action = f"{prefix}:{operation}"
    if action in _UNCHECKED:
        return []
    arn = _Arns(request.region, request.account)
    if service == "dynamodb":
        return dynamodb_checks(operation, _json(request), arn)
    if service == "secretsmanager":
        body: dict[str, Any] = _json(request)
        secret = body.get("SecretId") or body.get("Name")
        if isinstance(secret, str) and secret:
            return [Check(action, names.secret_arns.get(secret) or _secret_arn(secret, arn))]
        return [Check(action, "*")]
    if service == "events":
        return events_checks(operation, _json(request), arn)
    if service == "states":
        body = _json(request)
        for key in ("stateMachineArn", "executionArn", "activityArn", "mapRunArn"):
            if isinstance(body.get(key), str):
                return [Check(action, body[key])]
        return [Check(action, "*")]
    if service == "sqs":
        body = _json(request) if request.headers.get("x-amz-target") else dict(_form(request))
        url = body.get("QueueUrl")
        if isinstance(url, str) and url:
            return [Check(action, arn.of("sqs", url.rstrip("/").rsplit("/", 1)[-1]))]
        name = body.get("QueueName")
        if isinstance(name, str) and name and operation in ("GetQueueUrl", "CreateQueue"):
            return [Check(action, arn.of("sqs", name))]
        return [Check(action, "*")]
    if service == "sns":
        form = _form(request)
        topic = form.get("TopicArn") or form.get("TargetArn")
        if topic:
            return [Check(action, topic)]
        if operation == "CreateTopic" and form.get("Name"):
            return [Check(action, arn.of("sns", form["Name"]))]
        return [Check(action, "*")]
    if service == "ssm":
        body = _json(request)
        listed = body.get("Names")
        wanted: list[Any] = listed if isinstance(listed, list) else [body.get("Name") or body.get("Path")]
        resources = [arn.of("ssm", "parameter/" + str(name).lstrip("/")) for name in wanted if name]
        return [Check(action, resource) for resource in resources] or [Check(action, "*")]
    if service == "kms":
        key_id = _json(request).get("KeyId")
        if isinstance(key_id, str) and key_id:
            key = key_id
            if key.startswith("arn:"):
                return [Check(action, key)]
            return [Check(action, arn.of("kms", key if key.startswith("alias/") else f"key/{key}"))]
        return [Check(action, "*")]
    return [Check(action, "*")]


@dataclass(frozen=True)
class _Arns:
    region: str
    account: str

    def of(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"


def _secret_arn(secret: str, arn: _Arns) -> str:
    if secret.startswith("arn:"):
        return secret
    # a name without the stack's suffix: AWS matches a policy's `secret:NAME-??????`
    return arn.of("secretsmanager", f"secret:{secret}")


# ---------------------------------------------------------------- DynamoDB
_TRANSACT_ACTION = {
    "ConditionCheck": "ConditionCheckItem",
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
}


def dynamodb_checks(operation: str, body: Mapping[str, Any], arn: _Arns) -> list[Check]:
    def table(name: Any, index: Any = None) -> str:
        text = str(name)
        base = text if text.startswith("arn:") else arn.of("dynamodb", f"table/{text}")
        return f"{base}/index/{index}" if index else base

    action = f"dynamodb:{operation}"
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [Check(action, table(name)) for name in body.get("RequestItems", {})]
    if operation == "TransactWriteItems":
        found = []
        for item in body.get("TransactItems", []):
            for kind, detail in item.items():
                found.append(
                    Check(f"dynamodb:{_TRANSACT_ACTION.get(kind, kind)}", table(detail.get("TableName")))
                )
        return found
    if operation == "TransactGetItems":
        return [
            Check("dynamodb:GetItem", table(item["Get"].get("TableName")))
            for item in body.get("TransactItems", [])
        ]
    if operation in ("ListTables", "DescribeLimits", "DescribeEndpoints", "ListStreams"):
        return [Check(action, "*")]
    if "StreamArn" in body:
        return [Check(action, str(body["StreamArn"]))]
    if "TableName" in body:
        return [Check(action, table(body["TableName"], body.get("IndexName")))]
    if "ResourceArn" in body:
        return [Check(action, str(body["ResourceArn"]))]
    return [Check(action, "*")]


# ---------------------------------------------------------------- EventBridge
def events_checks(operation: str, body: Mapping[str, Any], arn: _Arns) -> list[Check]:
    def bus(name: Any) -> str:
        text = str(name or "default")
        return text if text.startswith("arn:") else arn.of("events", f"event-bus/{text}")

    action = f"events:{operation}"
    if operation == "PutEvents":
        buses = dict.fromkeys(bus(entry.get("EventBusName")) for entry in body.get("Entries", []))
        return [Check(action, resource) for resource in buses] or [Check(action, bus(None))]
    if operation in (
        "PutRule",
        "DeleteRule",
        "DescribeRule",
        "PutTargets",
        "RemoveTargets",
        "ListTargetsByRule",
    ):
        name = body.get("Name") or body.get("Rule")
        bus_name = str(body.get("EventBusName") or "default").rsplit("/", 1)[-1]
        rule = f"rule/{name}" if bus_name == "default" else f"rule/{bus_name}/{name}"
        return [Check(action, arn.of("events", rule))]
    if operation in ("CreateEventBus", "DeleteEventBus", "DescribeEventBus"):
        return [Check(action, bus(body.get("Name")))]
    return [Check(action, "*")]


# ---------------------------------------------------------------- Lambda (REST)
_LAMBDA_PATH = re.compile(r"^/(?P<version>[\d-]+)/functions/(?P<name>[^/]+)(?P<rest>/.*)?$")


def lambda_checks(request: AwsRequest) -> list[Check]:
    match = _LAMBDA_PATH.match(request.path)
    if match is None:
        return [
            Check(
                "lambda:ListFunctions" if request.path.rstrip("/").endswith("/functions") else "lambda:*", "*"
            )
        ]
    name = unquote(match.group("name"))
    rest = match.group("rest") or ""
    if name.startswith("arn:"):
        function = name
    elif ":function:" in name:  # a partial ARN: ACCOUNT:function:NAME[:QUALIFIER]
        function = f"arn:aws:lambda:{request.region}:{name}"
    else:  # NAME or NAME:QUALIFIER
        function = f"arn:aws:lambda:{request.region}:{request.account}:function:{name}"
    qualifier = request.query.get("Qualifier", [""])[0]
    if qualifier and function.count(":") == 6:
        function = f"{function}:{qualifier}"
    if rest in ("/invocations", "/invoke-async/"):
        return [Check("lambda:InvokeFunction", function)]
    if rest == "/response-streaming-invocations":
        return [Check("lambda:InvokeFunction", function)]
    if rest == "" and request.method == "GET":
        return [Check("lambda:GetFunction", function)]
    if rest == "/configuration" and request.method == "GET":
        return [Check("lambda:GetFunctionConfiguration", function)]
    return [Check("lambda:" + _lambda_operation(request.method, rest), function)]


def _lambda_operation(method: str, rest: str) -> str:
    known = {
        ("DELETE", ""): "DeleteFunction",
        ("PUT", "/code"): "UpdateFunctionCode",
        ("PUT", "/configuration"): "UpdateFunctionConfiguration",
        ("GET", "/policy"): "GetPolicy",
        ("POST", "/policy"): "AddPermission",
        ("GET", "/versions"): "ListVersionsByFunction",
        ("POST", "/versions"): "PublishVersion",
    }
    return known.get((method, rest), "*")


# ---------------------------------------------------------------- S3 (REST)
_S3_BUCKET_GET = {
    "versions": "ListBucketVersions",
    "uploads": "ListBucketMultipartUploads",
    "location": "GetBucketLocation",
    "cors": "GetBucketCORS",
    "policy": "GetBucketPolicy",
    "notification": "GetBucketNotification",
    "tagging": "GetBucketTagging",
    "acl": "GetBucketAcl",
    "lifecycle": "GetLifecycleConfiguration",
    "encryption": "GetEncryptionConfiguration",
    "versioning": "GetBucketVersioning",
    "publicAccessBlock": "GetBucketPublicAccessBlock",
}
_S3_BUCKET_PUT = {
    "cors": "PutBucketCORS",
    "policy": "PutBucketPolicy",
    "notification": "PutBucketNotification",
    "tagging": "PutBucketTagging",
    "acl": "PutBucketAcl",
    "lifecycle": "PutLifecycleConfiguration",
    "encryption": "PutEncryptionConfiguration",
    "versioning": "PutBucketVersioning",
    "publicAccessBlock": "PutBucketPublicAccessBlock",
}
_S3_BUCKET_DELETE = {
    "cors": "PutBucketCORS",
    "policy": "DeleteBucketPolicy",
    "tagging": "PutBucketTagging",
    "lifecycle": "PutLifecycleConfiguration",
    "encryption": "PutEncryptionConfiguration",
    "publicAccessBlock": "PutBucketPublicAccessBlock",
}


def s3_location(request: AwsRequest) -> tuple[str, str]:
    """(bucket, key) from a path-style or virtual-hosted-style request; key "" for the bucket."""
    host = request.headers.get("host", "").split(":", 1)[0]
    path = request.path.split("?", 1)[0]
    for suffix in (".localhost", ".s3.amazonaws.com"):
        if host.endswith(suffix) and host != suffix.lstrip("."):
            return host[: -len(suffix)], unquote(path.lstrip("/"))
    match = re.match(r"^(?P<bucket>[^.]+(?:\.[^.]+)*)\.s3[.-]", host)
    if match and not re.fullmatch(r"[\d.]+", host):
        return match.group("bucket"), unquote(path.lstrip("/"))
    bucket, _, key = path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def s3_checks(request: AwsRequest) -> list[Check]:
    bucket, key = s3_location(request)
    method = request.method.upper()
    query = request.query
    if not bucket:
        return [Check("s3:ListAllMyBuckets", "*")]
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if not key:
        if method == "POST" and "delete" in query:
            return [Check("s3:DeleteObject", f"{bucket_arn}/{k}") for k in _delete_keys(request.body)]
        table = {"GET": _S3_BUCKET_GET, "PUT": _S3_BUCKET_PUT, "DELETE": _S3_BUCKET_DELETE}.get(method, {})
        for sub, action in table.items():
            if sub in query:
                return [Check(f"s3:{action}", bucket_arn)]
        if method in ("GET", "HEAD"):
            context = {
                name: tuple(query[name]) for name in ("prefix", "delimiter", "max-keys") if name in query
            }
            return [
                Check("s3:ListBucket", bucket_arn, {f"s3:{name}": value for name, value in context.items()})
            ]
        if method == "PUT":
            return [Check("s3:CreateBucket", bucket_arn)]
        if method == "DELETE":
            return [Check("s3:DeleteBucket", bucket_arn)]
        return [Check("s3:ListBucket", bucket_arn)]
    object_arn = f"{bucket_arn}/{key}"
    if method in ("GET", "HEAD"):
        if "acl" in query:
            return [Check("s3:GetObjectAcl", object_arn)]
        if "tagging" in query:
            return [Check("s3:GetObjectTagging", object_arn)]
        if "uploadId" in query:
            return [Check("s3:ListMultipartUploadParts", object_arn)]
        if "versionId" in query:
            return [Check("s3:GetObjectVersion", object_arn)]
        return [Check("s3:GetObject", object_arn)]
    if method == "PUT":
        if "acl" in query:
            return [Check("s3:PutObjectAcl", object_arn)]
        if "tagging" in query:
            return [Check("s3:PutObjectTagging", object_arn)]
        found = [Check("s3:PutObject", object_arn)]
        source = request.headers.get("x-amz-copy-source")
        if source:
            source_path = unquote(source.split("?", 1)[0]).lstrip("/")
            found.append(Check("s3:GetObject", f"arn:aws:s3:::{source_path}"))
        return found
    if method == "POST":
        if "restore" in query:
            return [Check("s3:RestoreObject", object_arn)]
        if "select" in query:
            return [Check("s3:GetObject", object_arn)]
        return [Check("s3:PutObject", object_arn)]  # multipart create / complete, browser POST
    if method == "DELETE":
        if "uploadId" in query:
            return [Check("s3:AbortMultipartUpload", object_arn)]
        if "tagging" in query:
            return [Check("s3:DeleteObjectTagging", object_arn)]
        if "versionId" in query:
            return [Check("s3:DeleteObjectVersion", object_arn)]
        return [Check("s3:DeleteObject", object_arn)]
    return [Check("s3:GetObject", object_arn)]


def _delete_keys(body: bytes) -> list[str]:
    try:
        root = ET.fromstring(body)  # noqa: S314 - the body of a signed request to a local endpoint
    except ET.ParseError:
        return []
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Key"]
