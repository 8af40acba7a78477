"""The production topology through the shipped PgBouncer configuration, in transaction
pooling mode, with the URL settings docs/stores.md documents for it
(`?prepare_threshold=none`; Debian 12's PgBouncer is 1.18).

One `api`, two `scheduler`s and three `worker`s reach PostgreSQL only through PgBouncer
(`migrate` goes direct, as in deploy/compose.yaml). The chaos test's seeded mix of 500
jobs (quick, long, flaky, doomed, orphans, chains, delayed, cancelled while waiting and
while running, resends) goes in through the API while a worker that holds jobs is
SIGKILLed. Once every job has ended, the history read back from PostgreSQL goes through
the simulator's checker: nothing lost, nothing committed twice, every job as its kind
says. `pytest -s` prints the figures.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from taskyard.adapters.postgres import PostgresJobStore
from taskyard.domain.model import JobState, Outcome
from taskyard.domain.ports import JobFilter, JobQuery
from tests import services
from tests.chaos import figures
from tests.chaos.cluster import Cluster, Topology
from tests.chaos.history import read_history, verdict, wait_quiet
from tests.chaos.mix import Client, plan_mix
from tests.e2e.harness import Api, Procs
from tests.e2e.proxies import pgbouncer
from tests.eventually import eventually
from tests.services import ThrowawayRedis

JOBS = 500
RATE_PER_S = 50.0
TOPOLOGY = Topology(workers=3)
POOL_MAX_SIZE = 4
SETTLE_DEADLINE_S = 90.0
PASSWORD = "pgbouncer-test-password"


@pytest.fixture
def database_url(postgres_admin_url: str) -> Iterator[str]:
    with services.fresh_database(postgres_admin_url, prefix="taskyard_pgbouncer") as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresJobStore]:
    with PostgresJobStore.from_url(database_url) as opened:
        yield opened


def _through(pgbouncer_port: int, database_url: str) -> str:
    """The processes' URL: PgBouncer's address, the same database and user, and the
    documented settings for a PgBouncer older than 1.21 in transaction mode."""
    parts = urlsplit(database_url)
    user = parts.username or "postgres"
    return (
        f"postgresql://{user}:{PASSWORD}@127.0.0.1:{pgbouncer_port}{parts.path}"
        f"?prepare_threshold=none&pool_max_size={POOL_MAX_SIZE}"
    )


@pytest.mark.timeout(240)
def test_nothing_is_lost_or_committed_twice_through_pgbouncer_when_a_worker_is_killed(
    procs: Procs,
    database_url: str,
    store: PostgresJobStore,
    throwaway_redis: ThrowawayRedis,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    seed = secrets.randbelow(2**31)
    print(f"\npgbouncer SEED={seed}", flush=True)
    tag = secrets.token_hex(3)
    queue = f"pgb-{tag}"
    plan = plan_mix(seed, total=JOBS, queue=queue, tag=f"pgb-{seed}-{tag}")
    user = urlsplit(database_url).username or "postgres"
    with pgbouncer(tmp_path / "pgbouncer", user=user, password=PASSWORD) as port:
        cluster = Cluster(
            procs,
            database_url=database_url,
            process_database_url=_through(port, database_url),
            redis=throwaway_redis,
            queue=queue,
            topology=TOPOLOGY,
        )
        killed: list[str] = []
        try:
            cluster.start()
            up = time.monotonic()
            killer = threading.Thread(
                target=_kill_a_busy_worker, args=(cluster, store, queue, killed), daemon=True
            )
            killer.start()
            api = Api(cluster.api_url)
            try:
                submitted = Client(api).run(plan, rate_per_s=RATE_PER_S)
            finally:
                api.close()
            killer.join(timeout=60)
            submitted_at = time.monotonic()
            exited = cluster.heal()
            quiet = wait_quiet(store, queue, timeout_s=SETTLE_DEADLINE_S)
            settled = time.monotonic()
            exits = cluster.stop()
            jobs, attempts = read_history(store, queue)
        finally:
            cluster.close()

    judged = verdict(plan, submitted, jobs, attempts)
    reaped = [
        a
        for job_attempts in attempts.values()
        for a in job_attempts
        if killed and a.worker == killed[0] and a.outcome is Outcome.WORKER_LOST
    ]
    print(
        f"pgbouncer SEED={seed}: {len(jobs)} jobs through PgBouncer (transaction pooling); "
        f"up {up - began:.1f} s, submitted in {submitted_at - up:.1f} s, settled "
        f"{settled - submitted_at:.1f} s later\n"
        f"  worker SIGKILLed holding jobs: {killed[0] if killed else 'none'} "
        f"({len(reaped)} of its attempts reaped and run again)\n"
        f"  jobs lost {judged.lost}; outcomes committed twice {len(judged.twice)}; "
        f"attempts by outcome {dict(figures.outcomes(attempts))}",
        flush=True,
    )

    context = f"(seed {seed})"
    assert killed, f"no worker was seen holding a job {context}"
    assert reaped, f"the killed worker's jobs were not reaped {context}"
    assert quiet, f"jobs still open {SETTLE_DEADLINE_S:g} s after the last submission {context}"
    assert judged.lost == 0, f"{judged.lost} jobs lost {context}"
    assert not judged.twice, f"outcomes committed twice on {judged.twice[:10]} {context}"
    assert len(jobs) == JOBS and set(jobs) == submitted.acknowledged, context
    assert judged.report.ok, judged.violations
    problems = judged.problems
    assert not problems, f"{len(problems)} jobs went wrong {context}:\n" + "\n".join(problems[:20])
    assert not exited, "processes exited on their own:\n" + "\n".join(exited)
    assert all(code == 0 for code in exits.values()), exits


def _kill_a_busy_worker(
    cluster: Cluster, store: PostgresJobStore, queue: str, killed: list[str]
) -> None:
    """SIGKILL the worker holding the most running jobs of the queue, once one holds some."""
    query = JobQuery(
        filter=JobFilter(states=frozenset({JobState.RUNNING}), queues=frozenset({queue})),
        limit=1000,
    )
    slots = {cluster.worker_id(slot): slot for slot in range(len(cluster.workers))}
    holders: list[str] = []

    def busy() -> bool:
        counts: dict[str, int] = {}
        for job in store.list_jobs(query).jobs:
            if job.lease is not None and job.lease.worker in slots:
                counts[job.lease.worker] = counts.get(job.lease.worker, 0) + 1
        holders[:] = sorted(counts, key=lambda w: -counts[w])
        return len(holders) > 0 and counts[holders[0]] >= 2

    eventually(busy, timeout_s=30, what="a worker holding jobs")
    cluster.kill_worker(slots[holders[0]])
    killed.append(holders[0])
