"""Follow one job with the installable client: `python docs/examples/watch_job.py JOB_ID [USER]`.

Against the running local stack (`make dev`); pass `--stack NAME` for a deployed one.
Needs only `pip install tidings` (websockets, PyJWT, boto3).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tidings.jobs import SubscriptionError, job_states, resolve, token_for


async def follow(job_id: str, user: str, stack_name: str | None) -> int:
    stack = resolve(stack_name)
    stage = None
    async for job in job_states(stack.websocket_url, lambda: token_for(stack, user), job_id):
        segments = " ".join(f"{segment.percent:3.0f}%" for segment in job.segments)
        print(f"seq {job.seq:3d}  {job.stage:<11} {job.percent:5.1f}%  {segments}", flush=True)
        stage = job.stage
    return 0 if stage == "completed" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_id")
    parser.add_argument("user", nargs="?", default="demo")
    parser.add_argument("--stack", default=None)
    args = parser.parse_args()
    try:
        return asyncio.run(follow(args.job_id, args.user, args.stack))
    except SubscriptionError as exc:
        print(f"watch_job: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
