"""moto's dispatcher with and without the memoized host lookup (tidings/local/moto_server.py),
side by side: GetItem and a 1,000-item Query through each server, alternating rounds, medians.

    .venv/bin/python -m bench.moto_dispatch
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import boto3

from tidings.local import moto_server
from tidings.local.moto_server import MotoServer

ROUNDS = 5


def _server(memoized: bool) -> MotoServer:
    if memoized:
        return MotoServer("127.0.0.1", 0)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    original = moto_server.dispatcher
    moto_server.dispatcher = lambda: DomainDispatcherApplication(create_backend_app)  # type: ignore[assignment]
    try:
        return MotoServer("127.0.0.1", 0)
    finally:
        moto_server.dispatcher = original  # type: ignore[method-assign]


def _table(server: MotoServer) -> Any:
    client = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{server.port}",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    client.create_table(
        TableName="subs",
        KeySchema=[
            {"AttributeName": "topic", "KeyType": "HASH"},
            {"AttributeName": "cid", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "topic", "AttributeType": "S"},
            {"AttributeName": "cid", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, 1000, 25):
        items = [
            {"PutRequest": {"Item": {"topic": {"S": "job:x"}, "cid": {"S": f"c{n:05d}"}}}}
            for n in range(start, start + 25)
        ]
        client.batch_write_item(RequestItems={"subs": items})
    return client


def _round(client: Any) -> tuple[float, float]:
    started = time.perf_counter()
    for _ in range(3):
        client.query(
            TableName="subs",
            KeyConditionExpression="topic = :t",
            ExpressionAttributeValues={":t": {"S": "job:x"}},
            Limit=1000,
        )
    query_ms = (time.perf_counter() - started) / 3 * 1000
    started = time.perf_counter()
    for n in range(100):
        client.get_item(TableName="subs", Key={"topic": {"S": "job:x"}, "cid": {"S": f"c{n:05d}"}})
    return query_ms, (time.perf_counter() - started) / 100 * 1000


def main() -> None:
    servers = {"moto as is": _server(False), "memoized": _server(True)}
    try:
        for server in servers.values():
            server.start()
        clients = {name: _table(server) for name, server in servers.items()}
        rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        for number in range(ROUNDS):
            for name in list(servers)[:: 1 if number % 2 == 0 else -1]:
                rounds[name].append(_round(clients[name]))
        for name, values in rounds.items():
            query = statistics.median(v[0] for v in values)
            get = statistics.median(v[1] for v in values)
            print(f"{name}: Query of 1,000 items {query:.1f} ms, GetItem {get:.2f} ms (medians of {ROUNDS})")
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
