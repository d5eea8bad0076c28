"""Records each event it gets in DynamoDB, with plain boto3 (no endpoint in the code)."""

import json
import os

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["RECORDS_TABLE"])


def handler(event, context):
    TABLE.put_item(Item={"pk": f"{os.environ['RECORDER']}#{event['id']}", "event": json.dumps(event)})
    return {"recorded": event["id"]}
