"""The baseline: what the AWS samples do per message — Scan the connections table, then
post_to_connection one connection at a time, deleting the row of a Gone connection.

    python -m bench.sequential --endpoint AWS_ENDPOINT --table CONNECTIONS_TABLE --callback CALLBACK_URL

Runs as its own process (as notify runs in its own worker), with its clients made before the
first round, like a warm Lambda. Each stdin line is one message to send to everyone; each round
prints one JSON line: {"posted", "gone", "scan_s", "post_s"}. Ends when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import boto3
from botocore.config import Config


def connection_ids(dynamodb: Any, table: str) -> list[str]:
    ids: list[str] = []
    request: dict[str, Any] = {"TableName": table, "ProjectionExpression": "connectionId"}
    while True:  # bounded by the table: each page moves the start key forward
        page = dynamodb.scan(**request)
        ids.extend(item["connectionId"]["S"] for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return ids
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def post_all(management: Any, dynamodb: Any, table: str, data: bytes) -> dict[str, Any]:
    started = time.perf_counter()
    ids = connection_ids(dynamodb, table)
    scanned = time.perf_counter()
    posted = gone = 0
    for connection_id in ids:
        try:
            management.post_to_connection(ConnectionId=connection_id, Data=data)
            posted += 1
        except management.exceptions.GoneException:
            dynamodb.delete_item(TableName=table, Key={"connectionId": {"S": connection_id}})
            gone += 1
    return {
        "posted": posted,
        "gone": gone,
        "scan_s": scanned - started,
        "post_s": time.perf_counter() - scanned,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="the embedded AWS endpoint")
    parser.add_argument("--table", required=True)
    parser.add_argument("--callback", required=True, help="the @connections endpoint (stage included)")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()
    session = boto3.Session(region_name=args.region)  # the run's admin key, from the environment
    dynamodb = session.client("dynamodb", endpoint_url=args.endpoint)
    management = session.client(
        "apigatewaymanagementapi", endpoint_url=args.callback, config=Config(retries={"max_attempts": 1})
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        data = line.rstrip("\n").encode()
        print(json.dumps(post_all(management, dynamodb, args.table, data)), flush=True)


if __name__ == "__main__":
    main()
