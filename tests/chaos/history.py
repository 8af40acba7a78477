"""Reading a run's history back from PostgreSQL once it is quiet: what the simulator's
checker and the figures judge (tests/chaos/test_chaos.py, tests/e2e/test_pgbouncer.py)."""

from __future__ import annotations

import time
from uuid import UUID

from taskyard.adapters.postgres import PostgresJobStore
from taskyard.domain.errors import StoreUnavailable
from taskyard.domain.model import TERMINAL_STATES, Attempt, Job, JobState
from taskyard.domain.ports import JobFilter, JobQuery


def wait_quiet(store: PostgresJobStore, queue: str, *, timeout_s: float) -> bool:
    """Wait until no job of the queue is open; False if some still are at the deadline."""
    open_states = frozenset(set(JobState) - TERMINAL_STATES)
    query = JobQuery(filter=JobFilter(states=open_states, queues=frozenset({queue})), limit=1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if not store.list_jobs(query).jobs:
                return True
        except StoreUnavailable:
            pass
        time.sleep(0.1)
    return False


def read_history(
    store: PostgresJobStore, queue: str
) -> tuple[dict[UUID, Job], dict[UUID, list[Attempt]]]:
    jobs: dict[UUID, Job] = {}
    cursor = None
    while True:
        page = store.list_jobs(
            JobQuery(filter=JobFilter(queues=frozenset({queue})), limit=1000, cursor=cursor)
        )
        jobs.update((job.id, job) for job in page.jobs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    attempts = {job_id: store.attempts(job_id) for job_id in sorted(jobs)}
    return jobs, attempts
