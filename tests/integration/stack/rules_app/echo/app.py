import json


def handler(event, context):
    ctx = event["requestContext"]
    if ctx["eventType"] == "CONNECT":
        return {"statusCode": 200}
    if ctx.get("eventType") == "MESSAGE":
        return {"statusCode": 200, "body": json.dumps({"echo": json.loads(event["body"]).get("text")})}
    return {"statusCode": 200}
