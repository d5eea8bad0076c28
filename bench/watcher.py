"""One watcher of a real transcoding job on the local stack: publish to client, on the raw frames.

    .venv/bin/python -m bench --only watcher

Per repeat, a fresh stack (`bench.stack_process`, its own process, just started): a token for
the bench user, `POST /jobs`, one WebSocket client (token as subprotocol) subscribes to
`job:{id}` and has its snapshot, then the generated clip is PUT to the presigned URL and the
stack's own pipeline (S3 event, Step Functions, the transcode functions with ffmpeg) runs the
job; then the same again with a second job on the now warm stack.

"Publish" is the event's `emittedAt`: the worker's wall clock (epoch ms) taken when it builds the
event, just before its PutEvents (transcoder/reporting.py `build_event`). Arrival is this
process's wall clock when the frame is read; both clocks are the machine's. `emittedAt` is a
whole millisecond (truncated), so latencies read up to 1 ms high.

- `p50_ms`: the median latency of every live job message of every job and repeat.
- `first_ms`: the first job's first live message on a fresh stack (notify's first invocation, the
  bus's first rule match and the first `@connections` post all in it; notify's worker is
  prewarmed once the stack is ready, so its import is not on this path, see `first_notify`);
  median over repeats.
- `p50_to_notify_ms`: the share of it up to the message's `sentAt`, which notify sets as it starts
  on the event (the bus's rule match and notify's invocation); the rest is notify's own work (its
  claim write, the Queries of both topics, the shard lease) and the post through `@connections`.
  `notify_p50_ms`: the median duration of notify's invocations (the stack's invocation records).
- `after_higher_seq`: live messages whose seq is lower than one the client already received
  (snapshots included), counted on the raw frames: what a client that does not apply the seq
  rule (wscat) would show as progress going back. `duplicates`: same seq again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from bench.fanout import SUBPROTOCOL, bench_token, local_aws_environment
from bench.processes import ROOT, Child
from bench.stats import median, percentile, rounded

WATCH_USER = "bench-watcher"
JOB_TIMEOUT_S = 300.0
CLIP = ROOT / ".tidings" / "bench" / "watch-270p-30s.mp4"
CLIP_SECONDS = 30.0
GOAL_P50_MS = 20.0
GOAL_FIRST_MS = 300.0
TERMINAL = ("completed", "failed")


@dataclass(frozen=True)
class Frame:
    """One raw frame as the client read it: arrival wall clock (epoch ms) and the parsed JSON."""

    arrived_ms: float
    message: dict[str, Any]


@dataclass(frozen=True)
class JobWatch:
    latencies_ms: list[float]  # live job messages, in arrival order
    to_notify_ms: list[float]  # emittedAt -> sentAt (set as notify starts on the event): bus and invoke
    after_higher_seq: int
    duplicates: int
    seqs: list[int]
    final_stage: str | None


def summarize_job(frames: Sequence[Frame], job_id: str) -> JobWatch:
    """Latency of each live message of `job_id` (arrival - emittedAt) and its order on the raw frames."""
    highest = -1
    seen: set[int] = set()
    latencies: list[float] = []
    to_notify: list[float] = []
    seqs: list[int] = []
    after_higher = duplicates = 0
    final: str | None = None
    for frame in frames:
        message = frame.message
        if message.get("type") == "snapshot":
            for job in message.get("jobs") or []:
                if job.get("jobId") == job_id and "seq" in job:
                    highest = max(highest, int(job["seq"]))
                    seen.add(int(job["seq"]))
            continue
        if message.get("jobId") != job_id or "seq" not in message:
            continue
        seq = int(message["seq"])
        if seq in seen:
            duplicates += 1
        elif seq < highest:
            after_higher += 1
        seen.add(seq)
        highest = max(highest, seq)
        seqs.append(seq)
        if "emittedAt" in message:
            latencies.append(frame.arrived_ms - float(message["emittedAt"]))
            if "sentAt" in message:
                to_notify.append(float(message["sentAt"]) - float(message["emittedAt"]))
        if message.get("stage") in TERMINAL:
            final = str(message["stage"])
    return JobWatch(latencies, to_notify, after_higher, duplicates, seqs, final)


def summarize(repeats: Sequence[Sequence[JobWatch]]) -> dict[str, Any]:
    """Over repeats (each a fresh stack: its jobs in order): p50 of all latencies, the first job's
    first latency (median over repeats), and the order counts summed."""
    watches = [watch for jobs in repeats for watch in jobs]
    latencies = [latency for watch in watches for latency in watch.latencies_ms]
    firsts = [jobs[0].latencies_ms[0] for jobs in repeats if jobs and jobs[0].latencies_ms]
    to_notify = [ms for watch in watches for ms in watch.to_notify_ms]
    return {
        "p50_ms": rounded(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": rounded(percentile(latencies, 99), 1) if latencies else None,
        "first_ms": rounded(median(firsts), 1) if firsts else None,
        "first_ms_samples": [round(first, 1) for first in firsts],
        # the share of the bus and notify: publish to the moment notify built the message (sentAt)
        "p50_to_notify_ms": rounded(percentile(to_notify, 50), 1) if to_notify else None,
        "latencies_ms": [round(ms, 1) for watch in watches for ms in watch.latencies_ms],
        "after_higher_seq": sum(watch.after_higher_seq for watch in watches),
        "duplicates": sum(watch.duplicates for watch in watches),
        "messages": len(latencies),
        "jobs": len(watches),
        "completed": sum(1 for watch in watches if watch.final_stage == "completed"),
        "repeats": len(repeats),
    }


def make_clip() -> Path:
    from tidings.demo import make_sample_video

    return make_sample_video(CLIP, seconds=CLIP_SECONDS, size="480x270", rate=15)


async def watch_one_job(ready: dict[str, Any], token: str, video: bytes, name: str) -> JobWatch:
    """POST /jobs, subscribe, upload, read every frame until the job's terminal message."""
    api = str(ready["jobs_api_url"]).rstrip("/")
    size = len(video)
    auth = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        request = {"filename": name, "contentType": "video/mp4", "size": size}
        async with http.post(f"{api}/jobs", json=request, headers=auth) as response:
            body = await response.text()
            if response.status != 201:
                raise RuntimeError(f"POST /jobs answered {response.status}: {body[:300]}")
        created = json.loads(body)
        job_id, upload = str(created["jobId"]), created["upload"]
        frames: list[Frame] = []
        protocols = [Subprotocol(SUBPROTOCOL), Subprotocol(token)]
        async with connect(
            ready["websocket_url"], subprotocols=protocols, ping_interval=None, max_queue=None
        ) as ws:
            await ws.send(json.dumps({"action": "subscribe", "topic": f"job:{job_id}"}))

            async def until(done: Any) -> None:
                async for raw in ws:
                    arrived = time.time() * 1000
                    message = json.loads(raw)
                    frames.append(Frame(arrived, message))
                    if message.get("type") == "error":
                        raise RuntimeError(f"the stack refused the watcher: {message}")
                    if done(message):
                        return
                raise RuntimeError("the stack closed the watcher's connection")

            await asyncio.wait_for(until(lambda m: m.get("type") == "snapshot"), 60)
            headers = {str(k): str(v) for k, v in upload.get("headers", {}).items()}
            headers["Content-Length"] = str(size)
            async with http.request(
                str(upload.get("method", "PUT")), str(upload["url"]), data=video, headers=headers
            ) as put:
                if put.status >= 300:
                    raise RuntimeError(f"upload refused: {put.status} {(await put.text())[:300]}")
            await asyncio.wait_for(
                until(lambda m: m.get("jobId") == job_id and m.get("stage") in TERMINAL), JOB_TIMEOUT_S
            )
    return summarize_job(frames, job_id)


async def one_fresh_stack(video: bytes, jobs: int) -> tuple[list[JobWatch], float, list[dict[str, Any]]]:
    """A stack just started; its first job, then `jobs - 1` more. Returns them, the start time and
    the invocation records of notify."""
    started = time.perf_counter()
    stack = await Child.start("bench.stack_process")
    notify: list[dict[str, Any]] = []

    def record(line: dict[str, Any]) -> bool:
        if "function" in line and "durationMs" in line:
            if line["function"] == "NotifyFunction":
                notify.append(line)
            return True
        return False

    stack.on_line = record
    try:
        ready = (await stack.next_json(180))["ready"]
        start_s = time.perf_counter() - started
        with local_aws_environment(ready["aws_endpoint"], ready["region"], ready["credentials"]):
            token = await asyncio.to_thread(bench_token, ready, WATCH_USER)
            watches = [await watch_one_job(ready, token, video, CLIP.name) for _ in range(jobs)]
        return watches, start_s, notify
    finally:
        await stack.stop(timeout_s=60)


async def run(repeats: int, jobs_per_stack: int = 2) -> dict[str, Any]:
    clip = await asyncio.to_thread(make_clip)
    video = await asyncio.to_thread(clip.read_bytes)
    results: list[list[JobWatch]] = []
    starts: list[float] = []
    notify_ms: list[float] = []
    first_notify: list[dict[str, Any]] = []
    for _ in range(repeats):
        watches, start_s, records = await one_fresh_stack(video, jobs_per_stack)
        results.append(watches)
        starts.append(start_s)
        notify_ms += [float(r["durationMs"]) for r in records]
        if records:
            first_notify.append({"ms": float(records[0]["durationMs"]), "cold": bool(records[0].get("cold"))})
    summary = summarize(results)
    return summary | {
        "notify_p50_ms": rounded(median(notify_ms), 1) if notify_ms else None,
        "notify_invocations": len(notify_ms),
        "first_notify": first_notify,  # each fresh stack's first notify invocation
        "jobs_per_stack": jobs_per_stack,
        "stack_start_s": round(median(starts), 1),
        "clip": f"{CLIP_SECONDS:.0f} s of 480x270 at 15 fps",
        "publish": "the event's emittedAt (worker wall clock just before PutEvents) to the frame's arrival",
        "meets_p50": None if summary["p50_ms"] is None else summary["p50_ms"] < GOAL_P50_MS,
        "meets_first": None if summary["first_ms"] is None else summary["first_ms"] < GOAL_FIRST_MS,
        "meets_order": summary["after_higher_seq"] == 0,
    }


# --- the same path with synthetic events, with and without a CPU load --------------------------
#
#     .venv/bin/python -m bench.watcher [--events 40] [--load ffmpeg] [--nice 5]
#
# One fresh stack, one watcher of one job; this process publishes `--events` JobProgress events
# (PutEvents, `emittedAt` just before it, as the transcode workers do), each after the previous
# one's frame arrived. `--load ffmpeg`: two x264 encodes of a test pattern keep both cores busy
# meanwhile, started `--nice` nicer than this process (functions.WORKER_NICENESS: where a
# transcode's ffmpeg runs). Prints the publish->frame and publish->notify-start medians.

SYNTHETIC_WARMUP = 3  # the first events warm the clients and notify's caches


def _cpu_load(nice: int) -> list[Any]:
    import os
    import subprocess

    import imageio_ffmpeg

    pattern = ["-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30", "-t", "600"]
    encode = ["-c:v", "libx264", "-threads", "2", "-f", "null", "-"]
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", *pattern, *encode]
    processes = [subprocess.Popen(command, stdin=subprocess.DEVNULL) for _ in range(2)]
    own = os.getpriority(os.PRIO_PROCESS, 0)
    for process in processes:
        os.setpriority(os.PRIO_PROCESS, process.pid, min(own + nice, 19))
    return processes


async def synthetic(events: int, load: bool, nice: int) -> dict[str, Any]:
    from bench.fanout import StackSession

    stack = await Child.start("bench.stack_process")
    loads: list[Any] = []
    try:
        ready = (await stack.next_json(180))["ready"]
        with local_aws_environment(ready["aws_endpoint"], ready["region"], ready["credentials"]):
            session = StackSession(stack, ready)
            protocols = [Subprotocol(SUBPROTOCOL), Subprotocol(session.token)]
            async with connect(ready["websocket_url"], subprotocols=protocols, ping_interval=None) as ws:
                await session.subscriber()(ws)
                if load:
                    loads = _cpu_load(nice)
                    await asyncio.sleep(1)
                latencies: list[float] = []
                to_notify: list[float] = []
                for index in range(events + SYNTHETIC_WARMUP):
                    await asyncio.to_thread(session.publish)
                    while True:
                        raw = await asyncio.wait_for(ws.recv(), 30)
                        arrived = time.time() * 1000
                        message = json.loads(raw)
                        if message.get("seq") == session.seq:
                            break
                    if index >= SYNTHETIC_WARMUP:
                        latencies.append(arrived - float(message["emittedAt"]))
                        to_notify.append(float(message["sentAt"]) - float(message["emittedAt"]))
                    await asyncio.sleep(0.25)
            notify = [float(r["durationMs"]) for r in session.invocations_of("NotifyFunction")]
    finally:
        for process in loads:
            process.kill()
            process.wait()
        await stack.stop(timeout_s=60)
    return {
        "load": f"2 ffmpeg encodes at nice +{nice}" if load else "none",
        "events": len(latencies),
        "p50_ms": rounded(median(latencies), 1),
        "p90_ms": rounded(percentile(latencies, 90), 1),
        "p50_to_notify_ms": rounded(median(to_notify), 1),
        "notify_p50_ms": rounded(median(notify[SYNTHETIC_WARMUP:]), 1) if notify else None,
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.watcher", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--load", choices=["ffmpeg"], default=None)
    parser.add_argument("--nice", type=int, default=0, help="the load's niceness, relative to this process")
    arguments = parser.parse_args()
    print(json.dumps(asyncio.run(synthetic(arguments.events, arguments.load is not None, arguments.nice))))
