"""Reading a run's history back from PostgreSQL once it is quiet, and the verdict on it:
the simulator's checker, the figures, and each job against its kind (tests/chaos/
test_chaos.py, tests/e2e/test_pgbouncer.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from uuid import UUID

import attrs

from taskyard.adapters.postgres import PostgresJobStore
from taskyard.domain.errors import StoreUnavailable
from taskyard.domain.model import TERMINAL_STATES, Attempt, Job, JobState
from taskyard.domain.ports import JobFilter, JobQuery
from taskyard.simulation.checker import CheckReport, History, check
from tests.chaos import figures
from tests.chaos.mix import Planned, Submitted, judge


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


@attrs.frozen(kw_only=True)
class Verdict:
    """What a run came to: the checker's report on the history, and the chaos figures."""

    report: CheckReport
    lost: int
    """Acknowledged jobs missing or not ended (the checker's `no_job_lost`)."""
    twice: list[UUID]
    """Jobs with more than one committed ending (`figures.committed_twice`)."""
    problems: list[str]
    """Jobs that did not come to what their kind says (`mix.judge`)."""

    @property
    def violations(self) -> str:
        return "\n".join(f"{v.invariant}: {v.message} ({v.job_id})" for v in self.report.violations)


def verdict(
    plan: Sequence[Planned],
    submitted: Submitted,
    jobs: Mapping[UUID, Job],
    attempts: Mapping[UUID, Sequence[Attempt]],
) -> Verdict:
    history = History(
        jobs=jobs,
        attempts=attempts,
        acknowledged=submitted.acknowledged,
        replays=submitted.replays,
    )
    report = check(history, at_rest=True)
    problems = []
    for item in plan:
        job_id = submitted.ids[item.index]
        wrong = judge(item, jobs[job_id], attempts[job_id], submitted)
        if wrong is not None:
            problems.append(f"{item.kind.value} #{item.index} {job_id}: {wrong}")
    return Verdict(
        report=report,
        lost=report.counts.get("no_job_lost", 0),
        twice=figures.committed_twice(jobs, attempts),
        problems=problems,
    )
