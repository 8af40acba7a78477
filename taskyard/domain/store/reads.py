"""What the store answers without changing anything, folded from rows and grouped counts.

An adapter counts and groups; the rules (which states wait, which attempts were charged,
which run times count, which value a percentile names) are applied here, once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from taskyard.domain import transitions as t
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.errors import JobNotFound, ScheduleNotFound
from taskyard.domain.model import (
    REPORTED_OUTCOMES,
    WAITING_STATES,
    Attempt,
    AttemptTotals,
    Job,
    JobState,
    Outcome,
    QueueInfo,
    Stats,
)
from taskyard.domain.ports import JobPage, JobQuery
from taskyard.domain.schedules import Schedule
from taskyard.domain.store.plans import LEASED
from taskyard.domain.store.rows import Rows
from taskyard.domain.timefmt import after, seconds_between

S = JobState
PERCENTILES = (0.5, 0.95)


def get(rows: Rows, job_id: UUID) -> Job:
    found = rows.jobs([job_id])
    if not found:
        raise JobNotFound(job_id)
    return found[0]


def list_jobs(rows: Rows, query: JobQuery) -> JobPage:
    found = rows.page(query)
    page = found[: query.limit]
    more = len(found) > query.limit
    next_cursor = (page[-1].created_at, page[-1].id) if more and page else None
    return JobPage(jobs=page, next_cursor=next_cursor)


def attempts(rows: Rows, job_id: UUID) -> list[Attempt]:
    found = rows.job_attempts(job_id)
    if found is None:
        raise JobNotFound(job_id)
    return found


def next_wakeup(rows: Rows) -> datetime | None:
    """The earliest moment ahead at which time alone changes what the scheduler can do: a
    waiting job's `run_at`, or the first moment a lease can be reaped."""
    now = rows.now()
    moments = [rows.earliest_run_at(states=WAITING_STATES, after=now)]
    expiry = rows.earliest_expiry(state=LEASED, after=now - t.REAPABLE_AFTER)
    if expiry is not None:
        moments.append(expiry + t.REAPABLE_AFTER)
    ahead = [moment for moment in moments if moment is not None]
    return min(ahead) if ahead else None


def queues(rows: Rows) -> list[QueueInfo]:
    now = rows.now()
    counts: dict[str, dict[JobState, int]] = defaultdict(dict)
    oldest: dict[str, datetime] = {}
    for group in rows.queue_counts():
        counts[group.queue][group.state] = group.count
        if group.state is S.QUEUED and group.earliest_run_at is not None:
            oldest[group.queue] = group.earliest_run_at
    paused = rows.paused()
    return [
        QueueInfo(
            name=name,
            paused=name in paused,
            counts={state: counts[name].get(state, 0) for state in JobState},
            oldest_queued_age_s=(
                max(0.0, seconds_between(oldest[name], now)) if name in oldest else None
            ),
        )
        for name in sorted(set(counts) | paused)
    ]


def percentile_index(count: int, fraction: float) -> int:
    """The index into `count` sorted values that stands for `fraction` (nearest rank).

    >>> [percentile_index(n, 0.5) for n in (1, 2, 3, 4, 10)]
    [0, 0, 1, 2, 4]
    >>> percentile_index(10, 0.95)
    9
    """
    assert count >= 1, count
    return min(count - 1, max(0, round(fraction * (count - 1))))


def stats(rows: Rows, *, window_s: float) -> Stats:
    """Jobs that ended in the window, attempts charged to a budget (`charged`), and
    percentiles of the run times of successful attempts."""
    since = after(rows.now(), -window_s)
    finished = rows.finished_counts(since=since)
    succeeded = finished.get(S.SUCCEEDED, 0)
    dead = finished.get(S.DEAD, 0)
    failed = runs = 0
    for group in rows.outcome_counts(since=since):
        if t.charged(group.outcome, group.error_type):
            failed += group.count
        if group.outcome is Outcome.SUCCEEDED:
            runs += group.count
    picked: Sequence[float | None] = [None] * len(PERCENTILES)
    if runs:
        ranks = [percentile_index(runs, fraction) for fraction in PERCENTILES]
        picked = rows.run_seconds_at(since=since, outcome=Outcome.SUCCEEDED, ranks=ranks)
    p50, p95 = picked
    return Stats(
        window_s=window_s,
        succeeded=succeeded,
        dead=dead,
        failed_attempts=failed,
        throughput_per_s=(succeeded + dead) / window_s,
        run_s_p50=p50,
        run_s_p95=p95,
    )


def attempt_totals(rows: Rows, *, run_s_buckets: Sequence[float]) -> AttemptTotals:
    """Every attempt by outcome; run times only of the attempts a worker reported an end
    for (`REPORTED_OUTCOMES`)."""
    bounds = tuple(float(b) for b in run_s_buckets)
    by_outcome = dict.fromkeys(Outcome, 0)
    counts = [0] * len(bounds)
    run_count = 0
    run_sum_s = 0.0
    for group in rows.run_times(bounds=bounds):
        by_outcome[group.outcome] = group.count
        if group.outcome in REPORTED_OUTCOMES:
            run_count += group.count
            run_sum_s += group.sum_s
            counts = [a + b for a, b in zip(counts, group.at_most, strict=True)]
    return AttemptTotals(
        by_outcome=by_outcome,
        run_s_buckets=bounds,
        run_s_counts=tuple(counts),
        run_s_count=run_count,
        run_s_sum_s=run_sum_s,
    )


def tasks(rows: Rows) -> list[TaskInfo]:
    """The task catalog, by name."""
    return sorted(rows.task_entries(), key=lambda task: task.name)


def schedules(rows: Rows) -> list[Schedule]:
    """Every schedule, by name."""
    return sorted(rows.schedule_rows(), key=lambda s: s.name)


def schedule(rows: Rows, name: str) -> Schedule:
    found = rows.schedule_rows([name])
    if not found:
        raise ScheduleNotFound(name)
    return found[0]
