"""What the store answers without changing anything, folded from rows and grouped counts.

An adapter counts and groups; the rules (which states wait, which attempts were charged,
which run times count, which value a percentile names) are applied here, once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import attrs

from taskyard.domain import flow
from taskyard.domain import transitions as t
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.errors import JobNotFound, ScheduleNotFound
from taskyard.domain.model import (
    REPORTED_OUTCOMES,
    RUN_S_BUCKETS,
    WAITING_STATES,
    Attempt,
    AttemptTotals,
    DeadGroup,
    Job,
    JobState,
    Outcome,
    OutcomeBucket,
    QueueInfo,
    Stats,
)
from taskyard.domain.ports import JobFilter, JobPage, JobQuery
from taskyard.domain.schedules import Schedule
from taskyard.domain.store import plans
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
    """A page of the listing. A filter that the counters say matches nothing answers at
    once, rather than walk the whole listing index looking for a match."""
    if not query.filter.empty and count_jobs(rows, query.filter) == 0:
        return JobPage(jobs=[], next_cursor=None)
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


def next_wakeup(rows: Rows, *, schedules: bool = True) -> datetime | None:
    """The earliest moment ahead at which time alone changes what the scheduler can do: a
    waiting job's `run_at`, the first moment a lease can be reaped, or (with `schedules`)
    the next fire of a schedule not paused."""
    now = rows.now()
    moments = [rows.earliest_run_at(states=WAITING_STATES, after=now)]
    if schedules:
        moments.append(rows.earliest_fire_at(after=now))
    expiry = rows.earliest_expiry(state=LEASED, after=now - t.REAPABLE_AFTER)
    if expiry is not None:
        moments.append(expiry + t.REAPABLE_AFTER)
    ahead = [moment for moment in moments if moment is not None]
    return min(ahead) if ahead else None


def queues(rows: Rows) -> list[QueueInfo]:
    now = rows.now()
    counts: dict[str, dict[JobState, int]] = defaultdict(lambda: dict.fromkeys(JobState, 0))
    for group in rows.job_counts():
        counts[group.queue][group.state] += group.count
    oldest = rows.earliest_run_at_by_queue(state=S.QUEUED)
    paused = rows.paused()
    limits = {queue: s.limits for queue, s in rows.queue_settings().items()}
    names = sorted(set(counts) | paused | set(limits))
    # The usage shown counts starts in the queue's own window only: the per-key starts of a
    # longer key_rate_limit period (every key's, which the log keeps for the claim) stay
    # unread.
    shown = {
        name: attrs.evolve(limits.get(name, flow.NO_LIMITS), key_rate_limit=None) for name in names
    }
    load = plans.loads(rows, shown, now=now)
    return [
        QueueInfo(
            name=name,
            paused=name in paused,
            counts=dict(counts[name]),
            oldest_queued_age_s=(
                max(0.0, seconds_between(oldest[name], now)) if name in oldest else None
            ),
            limits=limits.get(name, flow.NO_LIMITS),
            usage=flow.usage(limits.get(name, flow.NO_LIMITS), load[name], now=now),
        )
        for name in names
    ]


def queue_limits(rows: Rows) -> dict[str, flow.QueueLimits]:
    return {queue: s.limits for queue, s in rows.queue_settings().items()}


def waiting_reason(rows: Rows, job_id: UUID) -> flow.WaitingReason | None:
    """Why the job waits: the facts read here, the reason decided by `flow.waiting_reason`."""
    now = rows.now()
    job = get(rows, job_id)
    settings = rows.queue_settings([job.queue])
    limits = settings[job.queue].limits if job.queue in settings else flow.NO_LIMITS
    deps = rows.states(job.depends_on) if job.depends_on else {}
    met = job.state is not plans.PROMOTABLE.gated or (
        len(deps) == len(job.depends_on)
        and all(state is plans.PROMOTABLE.gate_open for state in deps.values())
    )
    return flow.waiting_reason(
        waiting=job.state is plans.CLAIMABLE or job.state in WAITING_STATES,
        due=job.run_at <= now,
        dependencies_met=met,
        paused=job.queue in rows.paused(),
        key=job.concurrency_key,
        limits=limits,
        load=_load_of(rows, job, limits, now=now),
        now=now,
    )


def _load_of(rows: Rows, job: Job, limits: flow.QueueLimits, *, now: datetime) -> flow.Load:
    """What `flow.waiting_reason` weighs for `job`: its queue's live leases by key, the
    queue's starts in its rate window, and the job's key's in the key's window; not every
    key's starts of the longest period, which the log keeps for the claim."""
    running = {
        group.key: group.count
        for group in rows.running([job.queue], state=LEASED, now=now)
        if group.queue == job.queue
    }
    rate, key_rate = limits.rate_limit, limits.key_rate_limit
    starts = rows.starts(job.queue, after=now - rate.period) if rate is not None else []
    if key_rate is not None and job.concurrency_key is not None:
        # The key's starts the queue's window left out (all of them without one).
        cut = None if rate is None else now - rate.period
        starts += [
            s
            for s in rows.starts(job.queue, after=now - key_rate.period, key=job.concurrency_key)
            if cut is None or s.at <= cut
        ]
    return flow.Load(running=running, starts=starts)


def count_jobs(rows: Rows, job_filter: JobFilter) -> int:
    return sum(
        group.count
        for group in rows.job_counts()
        if job_filter.admits(state=group.state, queue=group.queue, task=group.task)
    )


def find_by_key(rows: Rows, key: str) -> Job | None:
    found = rows.keyed([key])
    return found[0] if found else None


def dead_groups(rows: Rows) -> list[DeadGroup]:
    """Largest first, then by task and error type; each with its newest job. The counts
    are the store's counters; the newest job is one index probe per group."""
    counts: dict[tuple[str, str | None], int] = defaultdict(int)
    for group in rows.job_counts():
        if group.state is S.DEAD:
            counts[group.task, group.error_type] += group.count
    newest_ids = {
        key: rows.error_ids(state=S.DEAD, task=key[0], error_type=key[1], limit=1) for key in counts
    }
    newest = {job.id: job for job in rows.jobs([i for ids in newest_ids.values() for i in ids])}
    found = [
        DeadGroup(task=task, error_type=error_type, count=count, newest=newest[ids[0]])
        for (task, error_type), count in counts.items()
        if (ids := newest_ids[task, error_type]) and ids[0] in newest
    ]
    return sorted(found, key=lambda g: (-g.count, g.task, g.error_type or ""))


def dead_ids(rows: Rows, *, task: str, error_type: str | None, limit: int) -> list[UUID]:
    assert limit >= 1, limit
    return rows.error_ids(state=S.DEAD, task=task, error_type=error_type, limit=limit)


def dependents(rows: Rows, job_id: UUID, *, limit: int) -> list[Job]:
    assert limit >= 1, limit
    return rows.dependents(job_id, limit=limit)


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


def outcome_series(rows: Rows, *, bucket_s: float, buckets: int) -> list[OutcomeBucket]:
    """The last `buckets` slices of `bucket_s` seconds up to now, oldest first: one grouped
    pass over the jobs and one over the attempts that finished since."""
    assert bucket_s > 0 and buckets >= 1, (bucket_s, buckets)
    since = after(rows.now(), -bucket_s * buckets)
    succeeded = [0] * buckets
    dead = [0] * buckets
    failed = [0] * buckets
    for index, state, count in rows.finished_by_bucket(
        since=since, bucket_s=bucket_s, buckets=buckets
    ):
        if state is S.SUCCEEDED:
            succeeded[index] += count
        elif state is S.DEAD:
            dead[index] += count
    for index, group in rows.outcomes_by_bucket(since=since, bucket_s=bucket_s, buckets=buckets):
        if t.charged(group.outcome, group.error_type):
            failed[index] += group.count
    return [
        OutcomeBucket(
            start=after(since, bucket_s * i),
            succeeded=succeeded[i],
            dead=dead[i],
            failed_attempts=failed[i],
        )
        for i in range(buckets)
    ]


def attempt_totals(rows: Rows, *, run_s_buckets: Sequence[float]) -> AttemptTotals:
    """Every attempt by outcome; run times only of the attempts a worker reported an end
    for (`REPORTED_OUTCOMES`)."""
    bounds = tuple(float(b) for b in run_s_buckets)
    assert set(bounds) <= set(RUN_S_BUCKETS), f"bounds outside RUN_S_BUCKETS: {bounds}"
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
