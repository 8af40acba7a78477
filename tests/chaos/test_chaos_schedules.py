"""Schedules under scheduler kills: a 1-second schedule on the production topology (two
`scheduler`s on PostgreSQL and Redis, one worker) while the leading scheduler is SIGKILLed
and restarted, then both at once. Read back from PostgreSQL: each fire
time has one job (distinct fire times == jobs fired), and with catch-up `all` in a
60-second window no fire between the first and the last is missing."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest

from taskyard.adapters.postgres import PostgresJobStore
from taskyard.domain.ports import JobFilter, JobQuery
from tests.chaos.cluster import Cluster, Topology
from tests.e2e.harness import Api, Procs
from tests.eventually import eventually
from tests.services import ThrowawayRedis

TOPOLOGY = Topology(workers=1, schedulers=2)


@pytest.fixture
def store(chaos_database_url: str) -> Iterator[PostgresJobStore]:
    with PostgresJobStore.from_url(chaos_database_url) as opened:
        yield opened


@pytest.mark.timeout(180)
def test_schedulers_killed_and_restarted_fire_each_second_once(
    procs: Procs,
    chaos_database_url: str,
    throwaway_redis: ThrowawayRedis,
    store: PostgresJobStore,
) -> None:
    queue = f"beat-{secrets.token_hex(3)}"
    cluster = Cluster(
        procs,
        database_url=chaos_database_url,
        redis=throwaway_redis,
        queue=queue,
        topology=TOPOLOGY,
    )
    kills = 0
    try:
        cluster.start()
        api = Api(cluster.api_url)
        body = {
            "name": "beat",
            "task": "sleep",
            "args": {"seconds": 0},
            "every_seconds": 1,
            "catch_up": "all",
            "catch_up_window_seconds": 60,
            "overlap": "allow",
            "queue": queue,
        }
        status, made = api.call("POST", "/v1/schedules", body)
        assert status == 201, made

        def fired() -> int:
            return int(api.ok("GET", "/v1/schedules/beat")["fires"]["enqueued"])

        eventually(lambda: fired() >= 2, timeout_s=30, what="the schedule fires")
        leader = cluster.wait_leader()
        cluster.kill_scheduler(leader)
        kills += 1
        cluster.wait_leader_other_than(leader)
        before = fired()
        eventually(lambda: fired() > before, timeout_s=30, what="fires after the kill")
        for scheduler_id in cluster.scheduler_ids():  # both, one right after the other
            cluster.kill_scheduler(scheduler_id)
            kills += 1
        cluster.wait_leader()
        last = fired()
        eventually(lambda: fired() >= last + 3, timeout_s=30, what="fires after both restarts")
        api.ok("POST", "/v1/schedules/beat/pause")
        api.close()
    finally:
        cluster.close()

    jobs = store.list_jobs(JobQuery(filter=JobFilter(queues=frozenset({queue})), limit=1000)).jobs
    fire_times = sorted(job.schedule.fire_at for job in jobs if job.schedule is not None)
    distinct = sorted(set(fire_times))
    print(
        f"\nchaos schedules: {kills} scheduler kills; {len(jobs)} jobs fired, "
        f"{len(distinct)} distinct fire times, from {distinct[0]:%H:%M:%S} to "
        f"{distinct[-1]:%H:%M:%S}"
    )
    assert len(fire_times) == len(jobs) == len(distinct), "each fire time has one job"
    expected = int((distinct[-1] - distinct[0]) / timedelta(seconds=1)) + 1
    assert len(distinct) == expected, "catch-up all: no fire missing between first and last"
