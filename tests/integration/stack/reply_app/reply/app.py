"""Replies through the management API at an endpoint the handler builds itself.

`{"action": "reply", "via": ...}` posts `{"via": ...}` back to the sender:
- `domainName`: boto3 at `https://{requestContext.domainName}/{requestContext.stage}`
- `apiId`: boto3 at `https://{apiId}.execute-api.{AWS_REGION}.amazonaws.com/{stage}`
- `custom`: boto3 at `https://{CUSTOM_DOMAIN}/{MAPPING_KEY}` (the template's custom domain)
- `urllib`: the domainName endpoint with urllib.request, signed by hand with botocore's SigV4Auth
`{"action": "inspect"}` answers (route response) what TLS verification does on the redirected port.
"""

import json
import os
import socket
import ssl
import tempfile
import urllib.request

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config


def endpoint(ctx, via):
    if via == "apiId":
        region = os.environ["AWS_REGION"]
        return f"https://{ctx['apiId']}.execute-api.{region}.amazonaws.com/{ctx['stage']}"
    if via == "custom":
        return f"https://{os.environ['CUSTOM_DOMAIN']}/{os.environ['MAPPING_KEY']}"
    return f"https://{ctx['domainName']}/{ctx['stage']}"


def post_with_urllib(base, connection_id, data):
    url = f"{base}/@connections/{connection_id.replace('=', '%3D')}"
    credentials = boto3.Session().get_credentials().get_frozen_credentials()
    request = AWSRequest(method="POST", url=url, data=data)
    SigV4Auth(credentials, "execute-api", os.environ["AWS_REGION"]).add_auth(request)
    headers = dict(request.headers.items())
    prepared = urllib.request.Request(url, data=data, method="POST", headers=headers)  # noqa: S310 - https
    with urllib.request.urlopen(prepared, timeout=5) as response:  # noqa: S310
        return response.status


def handshake(port, server_name, cafile=None):
    """'ok' or the TLS error of a handshake with the redirected port for `server_name`."""
    context = ssl.create_default_context(cafile=cafile)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name),
        ):
            return "ok"
    except ssl.SSLCertVerificationError as error:
        return f"refused: {error.verify_message}"


def inspect(ctx):
    redirects = json.loads(os.environ["_TIDINGS_HOST_REDIRECTS"])
    host = ctx["domainName"]
    port = redirects[host]
    with open(os.environ["SSL_CERT_FILE"]) as bundle, open(os.environ["NODE_EXTRA_CA_CERTS"]) as local:
        public_only = bundle.read().replace(local.read().strip(), "")
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as file:
        file.write(public_only)
    return {
        "redirects": redirects,
        "caFile": os.environ["NODE_EXTRA_CA_CERTS"],
        "servedName": handshake(port, host),
        "otherName": handshake(port, "not-served.reply-test.example"),
        "withoutLocalCa": handshake(port, host, cafile=file.name),
    }


def handler(event, context):
    ctx = event["requestContext"]
    if ctx["eventType"] != "MESSAGE":
        return {"statusCode": 200}
    body = json.loads(event["body"])
    if body.get("action") == "inspect":
        return {"statusCode": 200, "body": json.dumps(inspect(ctx))}
    via = body.get("via", "domainName")
    data = json.dumps({"via": via}).encode()
    if via == "urllib":
        post_with_urllib(endpoint(ctx, "domainName"), ctx["connectionId"], data)
    else:
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint(ctx, via),
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=5),
        )
        client.post_to_connection(ConnectionId=ctx["connectionId"], Data=data)
    return {"statusCode": 200}
