"""A poison outcome on the real PostgreSQL store (which refuses U+0000 in text and jsonb)
never stops a worker: the job it concerns fails visibly, and the worker keeps
heartbeating its other leases and claiming, so no other job ends `worker_lost`."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from taskyard.adapters.clock import SystemClock
from taskyard.adapters.postgres import PostgresJobStore
from taskyard.domain.context import HandlerResult, JobContext, TaskSpec
from taskyard.domain.model import Job, JobState, Outcome
from taskyard.domain.timefmt import after
from taskyard.domain.transitions import ReportKind
from taskyard.domain.worker import REPORT_REFUSED, Worker, WorkerConfig
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings
from tests import services
from tests.eventually import eventually
from tests.runs import client_for, registry_with, submit, wait_terminal

LEASE_TTL_S = 2.0
WAIT_S = 30.0


@pytest.fixture
def store(migrated_postgres_url: str) -> Iterator[PostgresJobStore]:
    services.truncate_taskyard(migrated_postgres_url)
    with PostgresJobStore.from_url(migrated_postgres_url) as store:
        yield store


def test_a_handler_returning_a_nul_fails_its_job_and_the_workers_other_leases_live(
    store: PostgresJobStore,
) -> None:
    finish = threading.Event()

    def http_like(ctx: Any) -> dict[str, Any]:
        return {"status": 200, "body": "binary \x00 body"}

    def long(ctx: Any) -> str:
        finish.wait(WAIT_S)  # runs until the test has seen what it needs
        return "done"

    system = bootstrap(Settings(), store=store, coordinator=None)
    worker = system.worker_runtime(
        registry_with(
            TaskSpec(name="http_like", handler=http_like), TaskSpec(name="long", handler=long)
        ),
        worker_id="w-poison",
        concurrency=4,
        lease_ttl_s=LEASE_TTL_S,
        poll_interval_s=0.05,
    )
    scheduler = system.scheduler_runtime(scheduler_id="s-poison", tick_interval_s=0.05)
    client = client_for(store, None)
    try:
        scheduler.start()
        innocents = submit(client, "long", [{}, {}, {}])
        worker.start()
        eventually(
            lambda: all(store.get(j.id).state is JobState.RUNNING for j in innocents),
            timeout_s=WAIT_S,
            what="the innocent jobs running",
        )
        [poison] = submit(client, "http_like", [{}])
        [dead] = wait_terminal(store, [poison], timeout_s=WAIT_S)
        assert dead.state is JobState.DEAD
        assert dead.last_error is not None and dead.last_error.type == "result_not_storable"
        assert dead.finished_at is not None

        # A full lease TTL after the poison, the innocent leases were still extended:
        # the worker kept heartbeating (before, it stopped at the poison's report).
        beyond = after(dead.finished_at, 1.5 * LEASE_TTL_S)

        def leases_extended() -> bool:
            leases = [store.get(j.id).lease for j in innocents]
            return all(lease is not None and lease.expires_at > beyond for lease in leases)

        eventually(leases_extended, timeout_s=WAIT_S, what="leases extended past the poison")
        [later] = submit(client, "http_like", [{}])  # and it still claims
        wait_terminal(store, [later], timeout_s=WAIT_S)
        finish.set()
        for job in wait_terminal(store, innocents, timeout_s=WAIT_S):
            assert job.state is JobState.SUCCEEDED
            assert [a.outcome for a in store.attempts(job.id)] == [Outcome.SUCCEEDED]
    finally:
        finish.set()
        worker.kill()
        scheduler.kill()


def test_a_report_postgres_refuses_is_confined_to_its_job(store: PostgresJobStore) -> None:
    """Past `invoke` (as a buggy executor might hand it in), a NUL reaches the store: its
    real `DataError` (`UntranslatableCharacter`) is confined to that report, which
    becomes a failed attempt."""
    started: dict[str, tuple[Job, JobContext]] = {}

    class Recorder:
        def start(self, job: Job, context: JobContext) -> None:
            started[str(job.args["n"])] = (job, context)

    spec = TaskSpec(name="work", handler=lambda n: n)
    worker = Worker(
        store=store,
        coordinator=None,
        clock=SystemClock(),
        rng=random.Random(0),
        registry=registry_with(spec),
        executor=Recorder(),
        config=WorkerConfig(worker_id="w-direct", lease_ttl_s=30.0),
    )
    jobs = submit(client_for(store, None), "work", [{"n": 0}, {"n": 1}], max_attempts=1)
    worker.tick()
    assert set(started) == {"0", "1"}
    for n, result in (("0", {"body": "has a \x00"}), ("1", {"body": "fine"})):
        job, _ = started[n]
        worker.handler_finished(
            HandlerResult(ref=job.ref(), kind=ReportKind.SUCCEEDED, result=result)
        )
    worker.tick()
    poisoned, fine = (store.get(j.id) for j in jobs)
    assert fine.state is JobState.SUCCEEDED and fine.result == {"body": "fine"}
    assert poisoned.state is JobState.DEAD
    assert poisoned.last_error is not None and poisoned.last_error.type == REPORT_REFUSED
    assert "succeeded report: UntranslatableCharacter" in poisoned.last_error.message
    assert worker.pending_reports() == []
