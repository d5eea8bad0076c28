"""Saves `event["note"]` under `event["id"]` and returns what the table held before."""

import os

import boto3


def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    table = os.environ["NOTES_TABLE"]
    dynamodb = boto3.client("dynamodb")
    before = dynamodb.get_item(TableName=table, Key={"id": {"S": event["id"]}}).get("Item")
    if "note" in event:
        dynamodb.put_item(TableName=table, Item={"id": {"S": event["id"]}, "note": {"S": event["note"]}})
    print(f"note {event['id']} handled")
    return {"greeting": os.environ["GREETING"], "before": before["note"]["S"] if before else None}
