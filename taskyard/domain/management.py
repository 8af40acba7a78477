"""Validation of what a person asks of jobs that exist: changes and bulk filters.

The same strictness as submissions (`taskyard.domain.submission`): every bad field is
named, all at once, with a `ValidationError`.

>>> parse_changes({"priority": 5})
Changes(priority=5, run_at=None)
>>> parse_changes({"queue": "x"})
Traceback (most recent call last):
...
taskyard.domain.errors.ValidationError: queue: only priority and run_at can be changed
>>> sorted(parse_job_filter({"state": ["dead", "cancelled"]}, action="retry").states)
[<JobState.CANCELLED: 'cancelled'>, <JobState.DEAD: 'dead'>]

A bulk action can be counted before it is taken (`count_bulk`, the API's `dry_run`): in
the states where the action's own transition changes every job, the store's counters give
the number; elsewhere (a running job, for a cancel) the matching jobs are listed, a
bounded number of them, and each is counted when the transition would change it, so the
count and the action share one rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal
from uuid import UUID

import attrs

from taskyard.domain import contract, transitions
from taskyard.domain.contract import BULK_COUNT_SCAN_MAX
from taskyard.domain.errors import FieldError, ValidationError
from taskyard.domain.model import Job, JobState
from taskyard.domain.ports import JobFilter, JobQuery, JobStore, WorkerInfo
from taskyard.domain.schema import INVALID
from taskyard.domain.store import plans

RETRYABLE_STATES = plans.RETRYABLE
"""What a manual retry may touch (the store's own rule)."""
CANCELLABLE_STATES = plans.ACTIVE
"""What a bulk cancel may touch (the store's own rule: cancelling a cancelled job is
harmless, but a bulk cancel has nothing to do there)."""

BulkAction = Literal["retry", "cancel"]
BULK_STATES: Mapping[BulkAction, frozenset[JobState]] = {
    "retry": RETRYABLE_STATES,
    "cancel": CANCELLABLE_STATES,
}
"""The states a bulk action looks at when its filter names none."""
EVERY_JOB_CHANGED: Mapping[BulkAction, frozenset[JobState]] = {
    "retry": RETRYABLE_STATES,
    "cancel": CANCELLABLE_STATES - {JobState.RUNNING},
}
"""The states in which the action changes every job (`changed_by` is always true there, a
property test holds it to that), so its count is the store's `count_jobs`, whatever the
size; a running job is looked at, since a cancel leaves one already asked to stop alone."""
_COUNT_PAGE = 1_000


@attrs.frozen(kw_only=True)
class Changes:
    """A change of a job that waits: its priority, its run_at, or both."""

    priority: int | None = None
    run_at: datetime | None = None


_CHANGE = contract.CHANGE.validator()
_FILTER = contract.FILTER.validator()


def parse_changes(data: object) -> Changes:
    """Validate a change (`PATCH /v1/jobs/{id}`, `contract.CHANGE`): `priority` and/or
    `run_at`, nothing else."""
    values, errors = _CHANGE(data)
    if errors or values is None:
        raise ValidationError(errors)
    return Changes(priority=values["priority"], run_at=values["run_at"])


def parse_job_filter(data: object, *, action: BulkAction) -> JobFilter:
    """Validate a bulk filter (`POST /v1/jobs/retry`, `/v1/jobs/cancel`, `contract.FILTER`):
    `state`, `queue`, `task`, each a string or a list of strings (any of), at least one
    of them given.

    `action` (`retry` or `cancel`) decides which states may be named: a filter that could
    only ever match jobs the action leaves alone is refused rather than answered with 0.
    """
    assert action in BULK_STATES, action
    allowed = BULK_STATES[action]
    values, errors = _FILTER(data)
    if values is None:
        raise ValidationError(errors)
    named = values["state"] if values["state"] not in (None, INVALID) else frozenset()
    names = ", ".join(sorted(allowed))
    for value in sorted(named):
        if JobState(value) not in allowed:
            errors.append(FieldError("state", f"{action} applies to {names} jobs, not {value}"))
    if errors:
        raise ValidationError(errors)
    return JobFilter(
        states=frozenset(JobState(value) for value in named),
        queues=values["queue"] or frozenset(),
        tasks=values["task"] or frozenset(),
    )


RUNNING_JOBS_QUERY = JobQuery(filter=JobFilter(states=frozenset({JobState.RUNNING})), limit=1000)
"""The one bounded read behind `with_running_jobs`: the 1,000 most recently created
running jobs (more than any deployment's slots, in practice)."""


def with_running_jobs(workers: Sequence[WorkerInfo], running: Sequence[Job]) -> list[WorkerInfo]:
    """Each worker with the jobs the store says it runs (a running job's lease names its
    worker), in place of the list it registered, which lags behind claims and reports.

    >>> import random
    >>> from datetime import UTC, datetime
    >>> from taskyard.domain.ids import uuid7
    >>> at = datetime(2026, 11, 22, tzinfo=UTC)
    >>> stale = uuid7(at, random.Random(1))
    >>> w = WorkerInfo(id="w1", host="h", pid=1, queues=(), concurrency=2, started_at=at,
    ...                last_heartbeat_at=at, running_job_ids=(stale,))
    >>> with_running_jobs([w], [])[0].running_job_ids
    ()
    """
    by_worker: dict[str, list[UUID]] = {}
    for job in running:
        if job.state is JobState.RUNNING and job.lease is not None:
            by_worker.setdefault(job.lease.worker, []).append(job.id)
    return [
        attrs.evolve(worker, running_job_ids=tuple(sorted(by_worker.get(worker.id, ()))))
        for worker in workers
    ]


def changed_by(job: Job, action: BulkAction, *, now: datetime) -> bool:
    """Whether a bulk `action` changes `job`: the action's own transition decides (a
    running job already asked to stop is left alone by a cancel, so it does not count).

    A retry's dependencies only decide between `queued` and `scheduled`, never whether the
    job changes, so none are looked up."""
    if action == "retry":
        step = transitions.retry(job, now=now, dependency_states={})
    else:
        step = transitions.cancel(job, now=now)
    return isinstance(step, transitions.Step) and step.job != job


@attrs.frozen(kw_only=True)
class BulkCount:
    count: int
    exact: bool
    """False when more jobs matched than were looked at: `count` is then a lower bound."""


def count_bulk(
    store: JobStore,
    job_filter: JobFilter,
    *,
    action: BulkAction,
    scan_max: int | None = None,
) -> BulkCount:
    """How many jobs `action` would change now. The jobs of states in which the action
    changes every job (`EVERY_JOB_CHANGED`) are counted by the store's counters; the others
    are looked at one by one, `scan_max` of them at most (`BULK_COUNT_SCAN_MAX` unless
    told; a page of the listing at a time). Nothing is written. The answer is a moment's:
    jobs that start or stop matching before the action runs change the action's count."""
    scan_max = BULK_COUNT_SCAN_MAX if scan_max is None else scan_max
    assert scan_max >= 1, scan_max
    states = job_filter.states or BULK_STATES[action]
    every = states & EVERY_JOB_CHANGED[action]
    count = store.count_jobs(attrs.evolve(job_filter, states=every)) if every else 0
    looked_at = states - every
    if not looked_at:
        return BulkCount(count=count, exact=True)
    query = JobQuery(
        filter=attrs.evolve(job_filter, states=looked_at), limit=min(_COUNT_PAGE, scan_max)
    )
    now = store.now()
    scanned = 0
    while True:
        page = store.list_jobs(query)
        scanned += len(page.jobs)
        count += sum(1 for job in page.jobs if changed_by(job, action, now=now))
        if page.next_cursor is None:
            return BulkCount(count=count, exact=True)
        if scanned >= scan_max:
            return BulkCount(count=count, exact=False)
        query = attrs.evolve(
            query, cursor=page.next_cursor, limit=min(_COUNT_PAGE, scan_max - scanned)
        )
