"""Counts its attempts in DynamoDB, then fails (to exercise retries and the dead-letter queue)."""

import os

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["RECORDS_TABLE"])


class DownstreamUnavailable(Exception):
    pass


def handler(event, context):
    TABLE.update_item(
        Key={"pk": f"attempts#{event['id']}"},
        UpdateExpression="ADD attempts :one",
        ExpressionAttributeValues={":one": 1},
    )
    raise DownstreamUnavailable("always down")
