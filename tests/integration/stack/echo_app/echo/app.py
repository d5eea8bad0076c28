"""Echo handler: `echo` answers through the route response; `store` saves the body in a table
and posts a confirmation through the management API (no route response on that route)."""

import json
import os

import boto3


def handler(event, context):
    ctx = event["requestContext"]
    if ctx["eventType"] == "CONNECT":
        return {"statusCode": 200}
    body = json.loads(event["body"])
    if ctx["routeKey"] == "echo":
        return {
            "statusCode": 200,
            "body": json.dumps({"echo": body.get("text"), "who": ctx["authorizer"]["who"]}),
        }
    boto3.client("dynamodb").put_item(
        TableName=os.environ["MESSAGES_TABLE"],
        Item={"connectionId": {"S": ctx["connectionId"]}, "text": {"S": str(body.get("text"))}},
    )
    management = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CALLBACK_URL"])
    management.post_to_connection(
        ConnectionId=ctx["connectionId"], Data=json.dumps({"stored": True}).encode()
    )
    return {"statusCode": 200, "body": "never reaches the client"}
