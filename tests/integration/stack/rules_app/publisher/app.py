import json
import os

import boto3


def handler(event, context):
    if event.get("read"):
        queue = boto3.client("sqs")
        reply = queue.receive_message(
            QueueUrl=os.environ["DEAD_LETTERS_URL"],
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=1,
        )
        return [
            {
                "body": json.loads(message["Body"]),
                "attributes": {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()},
            }
            for message in reply.get("Messages", [])
        ]
    boto3.client("events").put_events(
        Entries=[
            {
                "Source": "rules.test",
                "DetailType": "Test",
                "Detail": json.dumps({"n": 1}),
                "EventBusName": os.environ["BUS_NAME"],
            }
        ]
    )
    return "sent"
