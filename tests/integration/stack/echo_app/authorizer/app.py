"""Allows `?key=open-sesame`, denies any other key."""


def handler(event, context):
    key = (event.get("queryStringParameters") or {}).get("key")
    effect = "Allow" if key == "open-sesame" else "Deny"
    return {
        "principalId": "echo-user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}],
        },
        "context": {"who": "echo-user"},
    }
