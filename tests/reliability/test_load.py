"""Load: hundreds of WebSocket clients over many jobs and users, with and without churn.

Every client subscribes either to one of its user's jobs or to its user topic. Each job's events
are published at the transcoder's pace (the next once the previous was delivered), all jobs in
parallel. The guarantee checked per client: after the seq rule it applied exactly 1..N of each of
its jobs, in order, and it never received a message about another user's job.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
from dataclasses import dataclass

import pytest
from stack_harness import RunningStack, create_job, local_token

from .clients import Client, Fleet, Publisher, publish_paced, wait_disconnected

EVENTS_PER_JOB = 5


@dataclass(frozen=True)
class Job:
    job_id: str
    user: str


async def make_jobs(
    stack: RunningStack, users: list[str], jobs_per_user: int
) -> tuple[dict[str, str], list[Job]]:
    tokens = {user: await asyncio.to_thread(local_token, stack, user) for user in users}
    jobs = [
        Job(await asyncio.to_thread(create_job, stack, tokens[user]), user)
        for user, _ in itertools.product(users, range(jobs_per_user))
    ]
    return tokens, jobs


def plan_clients(jobs: list[Job], count: int, seed: int) -> list[Client]:
    """`count` clients, round-robin over the jobs; every fifth follows its whole user topic instead."""
    rng = random.Random(seed)
    clients = []
    for index in range(count):
        job = jobs[index % len(jobs)]
        topic = f"user:{job.user}" if rng.random() < 0.2 else f"job:{job.job_id}"
        clients.append(Client(user=job.user, topics=[topic]))
    return clients


def jobs_of(client: Client, jobs: list[Job]) -> list[str]:
    [topic] = client.topics
    kind, _, name = topic.partition(":")
    return [j.job_id for j in jobs if (j.user if kind == "user" else j.job_id) == name]


def assert_no_foreign_messages(fleet: Fleet, jobs: list[Job]) -> None:
    owner = {j.job_id: j.user for j in jobs}
    for client in fleet.clients:
        foreign = [m for m in client.raw if "jobId" in m and owner.get(m["jobId"]) != client.user]
        assert foreign == [], f"{client.user} received another user's messages: {foreign[:3]}"
        mine = set(jobs_of(client, jobs))
        assert set(client.applied) <= mine, (client.topics, sorted(client.applied))


async def run_load(stack: RunningStack, *, clients: int, users: int, jobs_per_user: int) -> Fleet:
    names = [f"load{clients}-user-{n}" for n in range(users)]
    tokens, jobs = await make_jobs(stack, names, jobs_per_user)
    fleet = Fleet(stack.websocket_url, tokens)
    planned = plan_clients(jobs, clients, seed=clients)
    await fleet.connect_all(planned)
    await fleet.wait_subscribed(planned)
    publisher = Publisher(stack)
    watchers = {j.job_id: [c for c in planned if j.job_id in jobs_of(c, jobs)] for j in jobs}
    await asyncio.gather(
        *(
            publish_paced(
                fleet,
                publisher,
                j.job_id,
                j.user,
                EVENTS_PER_JOB,
                functools.partial(list, watchers[j.job_id]),
            )
            for j in jobs
        )
    )
    for client in planned:
        for job_id in jobs_of(client, jobs):
            # the snapshot said "queued" (seq 0), then every event arrived, in order, none skipped
            assert client.applied[job_id] == list(range(EVENTS_PER_JOB + 1)), (client.topics, job_id)
    assert_no_foreign_messages(fleet, jobs)
    duplicates = sum(c.duplicates() for c in planned)
    print(f"load: {clients} clients, {len(jobs)} jobs, {users} users; raw duplicates {duplicates}")
    await fleet.close_all()
    await wait_disconnected(stack, names)  # every $disconnect ran: no connection row left behind
    return fleet


async def test_300_clients_receive_every_message_of_their_jobs_in_order(fault_stack: RunningStack) -> None:
    await run_load(fault_stack, clients=300, users=4, jobs_per_user=5)


@pytest.mark.heavy
async def test_1000_clients_over_25_jobs_and_5_users(fault_stack: RunningStack) -> None:
    await run_load(fault_stack, clients=1000, users=5, jobs_per_user=5)


async def test_churn_stayers_get_everything_and_joiners_catch_up_from_the_snapshot(
    fault_stack: RunningStack,
) -> None:
    """Clients leave and join while events flow: stayers miss nothing; what a joiner applies
    (its snapshot, or a live update that overtook it, then the updates) is a gap-free tail up to
    the last event."""
    events = 10
    names = ["churn-a", "churn-b"]
    tokens, jobs = await make_jobs(fault_stack, names, jobs_per_user=3)
    fleet = Fleet(fault_stack.websocket_url, tokens)
    stayers = plan_clients(jobs, 40, seed=1)
    leavers = plan_clients(jobs, 30, seed=2)
    await fleet.connect_all(stayers + leavers)
    await fleet.wait_subscribed(stayers + leavers)
    joiners: list[Client] = []
    publisher = Publisher(fault_stack)

    def watchers(job: Job) -> list[Client]:
        return [c for c in stayers if job.job_id in jobs_of(c, jobs)]

    async def churn() -> None:
        rng = random.Random(3)
        for leaver in leavers:
            await asyncio.sleep(rng.uniform(0.02, 0.1))
            await fleet.close(leaver)
            joiner = Client(user=leaver.user, topics=leaver.topics)
            joiners.append(await fleet.connect(joiner))

    await asyncio.gather(
        churn(),
        *(
            publish_paced(
                fleet, publisher, j.job_id, j.user, events, functools.partial(watchers, j), min_gap_s=0.1
            )
            for j in jobs
        ),
    )
    # a joiner may have subscribed after the last event: its snapshot then holds it
    await fleet.wait_for(lambda: all(c.highest(j) == events for c in joiners for j in jobs_of(c, jobs)))
    for client in stayers:
        for job_id in jobs_of(client, jobs):
            assert client.applied[job_id] == list(range(events + 1)), (client.topics, job_id)
    for client in joiners:
        for job_id in jobs_of(client, jobs):
            # a live update may overtake the snapshot reply; the seq rule then skips the snapshot
            applied = client.applied[job_id]
            assert applied[0] <= client.snapshot_seq[job_id] + 1, (client.topics, job_id, applied)
            assert applied == list(range(applied[0], events + 1)), (client.topics, job_id, applied)
    assert_no_foreign_messages(fleet, jobs)
    await fleet.close_all()
    await wait_disconnected(fault_stack, names)
