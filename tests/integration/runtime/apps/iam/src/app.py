"""Calls what its policy allows and what it does not; returns each outcome as boto3 saw it."""

import os

import boto3
from botocore.exceptions import ClientError


def _outcome(call):
    try:
        call()
    except ClientError as error:
        return {
            "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
            "code": error.response["Error"]["Code"],
            "message": error.response["Error"].get("Message", ""),
        }
    return {"status": 200}


def handler(event, context):
    table, bucket = os.environ["ITEMS_TABLE"], os.environ["FILES_BUCKET"]
    dynamodb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    return {
        "put": _outcome(lambda: dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})),
        "get": _outcome(lambda: dynamodb.get_item(TableName=table, Key={"pk": {"S": "a"}})),
        "upload": _outcome(lambda: s3.put_object(Bucket=bucket, Key="in/x", Body=b"x")),
        "download": _outcome(lambda: s3.get_object(Bucket=bucket, Key="in/x")),
    }
