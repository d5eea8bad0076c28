"""The whole local stack (`LocalStack`) in its own process, for the benchmarks.

    python -m bench.stack_process [--template template.yaml]

The first stdout line is `{"ready": {...}}` with the URLs, the table and bus names and the pid;
every later line is one invocation record (the stack's JSON invocation log). Ends when stdin
closes, so it never outlives the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
from pathlib import Path

from bench.sampler import sample_if_asked
from tidings.devtools.dev import add_ons
from tidings.devtools.tokens import token_secret_id
from tidings.local.stack import DevOptions, LocalStack


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard limit (each connection is one descriptor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def main(template: Path) -> None:
    raise_open_files_limit()
    options = DevOptions(template=template, ws_port=0, http_port=0, aws_port=0, demo=False, log_format="json")
    stack = await LocalStack(options, add_ons=add_ons(options), out=sys.stdout).start()
    sampler = sample_if_asked(dict(os.environ))
    try:
        urls = stack.urls
        environment = stack.app.functions["NotifyFunction"].environment
        ready = {
            "websocket_url": urls.websocket_url,
            "callback_url": urls.callback_url,
            "jobs_api_url": urls.jobs_api_url,
            "aws_endpoint": urls.aws_endpoint,
            "region": stack.app.region,
            "token_secret_id": token_secret_id(stack.app),
            "token_audience": environment.get("TOKEN_AUDIENCE", "tidings"),
            "connections_table": environment["CONNECTIONS_TABLE"],
            "subscriptions_table": environment["SUBSCRIPTIONS_TABLE"],
            "jobs_table": environment["JOBS_TABLE"],
            "event_bus_name": environment["EVENT_BUS_NAME"],
            "deliver_function": environment.get("DELIVER_FUNCTION", ""),
            "notify_memory_mb": stack.app.functions["NotifyFunction"].memory_mb,
            # this run's admin key (the embedded AWS verifies signatures): to the parent's pipe only
            "credentials": stack.aws.credentials.admin.environment(),
        }
        sys.stdout.write(json.dumps({"ready": ready}) + "\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        if sampler is not None:
            sampler.dump(Path(os.environ["BENCH_SAMPLE"]))
        await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--template", type=Path, default=Path("template.yaml"))
    args = parser.parse_args()
    asyncio.run(main(args.template))
