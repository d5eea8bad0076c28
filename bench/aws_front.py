"""The AWS process's HTTP front: `wsgi_server.WsgiServer` (now) beside werkzeug's dev server (before),
each in its own AWS process with the real chain (host check, guard, interceptors, moto): GetItem,
UpdateItem (ALL_NEW) and a 1,000-item Query from a boto3 client, rounds alternating the order.
Per request: the AWS process's CPU (/proc/PID/stat, user + system) and the wall time of the call
(client included); medians of the rounds.

    .venv/bin/python -m bench.aws_front [ROUNDS]
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tidings.local import aws_process
from tidings.local.aws import AwsServices

ROUNDS = 7
SMALL_CALLS = 300  # GetItem and UpdateItem, per round
QUERIES = 20  # 1,000-item Query, per round
_TICK = os.sysconf("SC_CLK_TCK")


class WerkzeugMotoServer:
    """tidings/local/moto_server.py's MotoServer before WsgiServer: werkzeug's threaded dev server
    with moto's request handler (a new connection and thread per request)."""

    def __init__(self, host: str, port: int, *, hosts: Any = None, wrap: Any = None, listening: Any) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        from tidings.local.moto_server import dispatcher, host_checked

        app = dispatcher()
        if wrap is not None:
            app = wrap(app)
        if hosts is not None:
            app = host_checked(app, hosts(listening.getsockname()[1]))
        with listening:
            self._server = make_server(
                host, port, app, threaded=True, request_handler=MotoRequestHandler, fd=listening.fileno()
            )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def child_main() -> None:
    """The AWS process's entry with werkzeug's front (AwsProcess runs `_MODULE.child_main`)."""
    import logging

    from tidings.local import moto_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # as before: no line per request
    moto_server.MotoServer = WerkzeugMotoServer  # type: ignore[misc,assignment]
    aws_process.child_main()


def _start(front: str) -> AwsServices:
    original = aws_process._MODULE
    if front == "werkzeug (before)":
        aws_process._MODULE = __name__ if __name__ != "__main__" else "bench.aws_front"
    try:
        services = AwsServices()
        services.start_server()
    finally:
        aws_process._MODULE = original
    client = services.client("dynamodb")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, 1000, 25):
        items = [
            {
                "PutRequest": {
                    "Item": {"pk": {"S": "big"}, "sk": {"S": f"c{n:04d}"}, "cid": {"S": f"id-{n:08d}"}}
                }
            }
            for n in range(start, start + 25)
        ]
        client.batch_write_item(RequestItems={"t": items})
    client.put_item(TableName="t", Item={"pk": {"S": "job"}, "sk": {"S": "state"}, "seq": {"N": "0"}})
    return services


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _calls(client: Any) -> dict[str, tuple[Callable[[int], Any], int]]:
    job = {"pk": {"S": "job"}, "sk": {"S": "state"}}

    def get(_: int) -> Any:
        return client.get_item(TableName="t", Key=job)

    def update(n: int) -> Any:
        return client.update_item(
            TableName="t",
            Key=job,
            UpdateExpression="SET seq = :s, #st = :v",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues={":s": {"N": str(n)}, ":v": {"S": "y" * 300}},
            ReturnValues="ALL_NEW",
        )

    def query(_: int) -> Any:
        answer = client.query(
            TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "big"}}
        )
        assert answer["Count"] == 1000

    return {
        "GetItem": (get, SMALL_CALLS),
        "UpdateItem": (update, SMALL_CALLS),
        "Query 1,000": (query, QUERIES),
    }


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    fronts = ["werkzeug (before)", "WsgiServer (now)"]
    services = {front: _start(front) for front in fronts}
    try:
        clients = {front: s.client("dynamodb") for front, s in services.items()}
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        seq = 0
        for number in range(rounds):
            for front in fronts[:: 1 if number % 2 == 0 else -1]:
                pid = services[front].pid
                assert pid is not None
                for name, (call, count) in _calls(clients[front]).items():
                    call(0)  # a connection (kept alive where the server allows it)
                    cpu, started = _cpu_s(pid), time.perf_counter()
                    for _ in range(count):
                        seq += 1
                        call(seq)
                    wall_ms = (time.perf_counter() - started) / count * 1000
                    cpu_ms = (_cpu_s(pid) - cpu) / count * 1000
                    figures.setdefault((front, name), []).append((cpu_ms, wall_ms))
        print(f"medians of {rounds} rounds, per request: AWS process CPU / wall of the call (ms)")
        for (front, name), values in figures.items():
            cpu_ms = statistics.median(v[0] for v in values)
            wall_ms = statistics.median(v[1] for v in values)
            print(f"  {front:18} {name:12} CPU {cpu_ms:6.2f}  wall {wall_ms:6.2f}")
    finally:
        for s in services.values():
            s.stop()


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
