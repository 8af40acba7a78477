"""Every store decision, once, over plain rows.

Each function here is one store operation inside one transaction: it loads what it needs
through `Rows`, lets the pure transitions of `taskyard.domain.transitions` decide (a
`Batch` applies them one after another, as if each were written at once), and hands
everything it decided to `Rows.write` in one call. `StoreEngine` wraps each in a
transaction; an adapter with a faster way for one operation may call these from its own
transaction (PostgreSQL's transactional `enqueue_in` does).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from uuid import UUID

import attrs

from taskyard.domain import flow
from taskyard.domain import schedules as sch
from taskyard.domain import transitions as t
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.errors import (
    IdempotencyConflict,
    JobNotFound,
    Refusal,
    ScheduleExists,
    ScheduleNotFound,
    UnknownDependency,
)
from taskyard.domain.model import (
    TERMINAL_STATES,
    WAITING_STATES,
    Attempt,
    Enqueued,
    Job,
    JobState,
    JsonValue,
    LeaseRef,
    NewJob,
    Outcome,
)
from taskyard.domain.ports import (
    ClaimRequest,
    JobFilter,
    LeaseStatus,
    Promoted,
    ReportResult,
    ReportStatus,
)
from taskyard.domain.retention import Periods, Retention, rules, valid_period
from taskyard.domain.store.rows import Applied, Changes, JobWrite, Promotable, QueueSettings, Rows

S = JobState

Normal = Callable[[JsonValue], JsonValue]
"""A JSON value as the store will read it back (a SQL store's JSON round trip)."""


def as_is(value: JsonValue) -> JsonValue:
    return value


# The states and outcomes that store statements select and write, named once here (a
# unit test holds them to the state machine's table).
CLAIMABLE = S.QUEUED
"""The state a claim takes jobs from."""
LEASED = S.RUNNING
"""A job holding a lease."""
CREATED_DUE = S.QUEUED
"""A new job with nothing to wait for (`transitions.create`)."""
CREATED_WAITING = S.SCHEDULED
"""A new job whose run_at is ahead (`transitions.create`)."""
OPEN = Outcome.RUNNING
"""An attempt record until something closes it: a write closes only an open record."""
ACTIVE = frozenset(JobState) - TERMINAL_STATES
"""What a bulk cancel may touch."""
RETRYABLE = frozenset(s for s in JobState if t.allowed(s, t.Event.RETRY))
PROMOTABLE = Promotable(states=WAITING_STATES, gated=S.SCHEDULED, gate_open=S.SUCCEEDED)
"""A retrying job is due at its run_at; a scheduled one also waits for its dependencies."""


class Batch:
    """Jobs and attempt records loaded in one transaction, and the steps applied to them."""

    def __init__(self, jobs: Iterable[Job], attempts: Iterable[Attempt] = ()) -> None:
        self._loaded: dict[UUID, Job] = {job.id: job for job in jobs}
        self._current: dict[UUID, Job] = dict(self._loaded)
        self._attempts: dict[tuple[UUID, int], Attempt] = {
            (a.job_id, a.attempt): a for a in attempts
        }
        self._touched: dict[tuple[UUID, int], Attempt] = {}
        self._steps: list[Applied] = []

    def job(self, job_id: UUID) -> Job | None:
        return self._current.get(job_id)

    def attempt(self, job_id: UUID, number: int) -> Attempt | None:
        return self._attempts.get((job_id, number))

    def put_attempt(self, record: Attempt) -> None:
        key = (record.job_id, record.attempt)
        self._attempts[key] = record
        self._touched[key] = record

    def apply(self, step: t.Step, *, worker: str | None = None) -> Job:
        current = self._current[step.job.id]
        assert (current.state, current.attempt) == (step.before.state, step.before.attempt)
        self._current[step.job.id] = step.job
        if step.attempt is not None:
            self.put_attempt(step.attempt)
        self._steps.append(Applied(step=step, worker=worker))
        return step.job

    def changes(self, at: datetime) -> Changes:
        """One write per changed job, in id order (the order rows are locked in)."""
        return Changes(
            at=at,
            updated=[
                JobWrite(before=self._loaded[job_id], after=self._current[job_id])
                for job_id in sorted(self._current)
                if self._current[job_id] != self._loaded[job_id]
            ],
            attempts=[self._touched[key] for key in sorted(self._touched)],
            steps=list(self._steps),
        )


def _write(rows: Rows, batch: Batch, now: datetime) -> None:
    changes = batch.changes(now)
    if not changes.empty:
        rows.write(changes)


def _load(rows: Rows, refs: Sequence[LeaseRef]) -> Batch:
    """The jobs of `refs` and the attempt records they name."""
    return Batch(
        rows.jobs({r.job_id for r in refs}),
        rows.attempt_records(sorted({(r.job_id, r.attempt) for r in refs})),
    )


def _dependency_states(rows: Rows, jobs: Iterable[Job]) -> dict[UUID, JobState]:
    deps = sorted({dep for job in jobs for dep in job.depends_on})
    return rows.states(deps) if deps else {}


def _states_of(job: Job, states: dict[UUID, JobState]) -> dict[UUID, JobState]:
    return {dep: states[dep] for dep in job.depends_on}


# --- submission ---------------------------------------------------------------------------


def enqueue(rows: Rows, jobs: Sequence[NewJob], *, normal: Normal = as_is) -> list[Enqueued]:
    """Create `jobs`, all or nothing, in order (the contract of `JobStore.enqueue`)."""
    now = rows.now()
    keys = sorted({n.idempotency_key for n in jobs if n.idempotency_key is not None})
    known = {job.idempotency_key: job for job in rows.keyed(keys)} if keys else {}
    deps = sorted({d for n in jobs for d in n.depends_on})
    stored = rows.states(deps) if deps else {}
    pending: dict[UUID, Job] = {}
    out: list[Enqueued] = []
    for new in jobs:
        if new.idempotency_key is not None:
            existing = known.get(new.idempotency_key)
            if existing is not None:
                if existing.fingerprint != new.fingerprint:
                    raise IdempotencyConflict(
                        new.idempotency_key, None if existing.id in pending else existing.id
                    )
                out.append(Enqueued(job=existing, created=False))
                continue
        states: dict[UUID, JobState] = {}
        for dep in new.depends_on:
            found = pending[dep].state if dep in pending else stored.get(dep)
            if found is None:
                raise UnknownDependency(dep)
            states[dep] = found
        assert new.id not in pending, new.id
        job = t.create(new, now=now, dependency_states=states, args=normal(dict(new.args)))
        pending[job.id] = job
        if job.idempotency_key is not None:
            known[job.idempotency_key] = job
        out.append(Enqueued(job=job, created=True))
    if pending:
        rows.write(Changes(at=now, created=list(pending.values())))
    return out


# --- the worker's path --------------------------------------------------------------------


def claim(rows: Rows, request: ClaimRequest) -> list[Job]:
    """Take what `request` may: in claim order where no queue it reaches is governed (no
    settings row is locked then), else by `flow.admit` over the governed queues (their
    settings rows locked first, in name order) and the others."""
    now = rows.now()
    settings = rows.queue_settings(request.queues)
    governed = {queue: s for queue, s in settings.items() if s.limits.governed}
    if not governed:
        candidates = rows.claimable(request, state=CLAIMABLE, now=now)
    else:
        candidates = _admitted(rows, request, governed, now=now)
    batch = Batch(candidates)
    claimed: list[Job] = []
    for job in candidates:
        step = t.claim(job, now=now, worker=request.worker, lease_ttl_s=request.lease_ttl_s)
        assert isinstance(step, t.Step), step
        claimed.append(batch.apply(step, worker=request.worker))
    _write(rows, batch, now)
    return claimed


def loads(
    rows: Rows, limits: Mapping[str, flow.QueueLimits], *, now: datetime
) -> dict[str, flow.Load]:
    """What counts against each queue's limits now: live leases by key, and the starts
    of its longest rate period."""
    running: dict[str, dict[str | None, int]] = {queue: {} for queue in limits}
    for group in rows.running(sorted(limits), state=LEASED, now=now):
        running[group.queue][group.key] = group.count
    out: dict[str, flow.Load] = {}
    for queue, queue_limits in limits.items():
        period = queue_limits.longest_period()
        starts = rows.starts(queue, after=now - period) if period is not None else []
        out[queue] = flow.Load(running=running[queue], starts=starts)
    return out


def _admitted(
    rows: Rows, request: ClaimRequest, governed: Mapping[str, QueueSettings], *, now: datetime
) -> list[Job]:
    """The jobs `flow.admit` takes: each governed queue's candidates in turns within its
    headroom, the other queues' in claim order; records the turns and the starts."""
    paused = rows.paused()
    active = {queue: s for queue, s in governed.items() if queue not in paused}
    others = rows.claimable(request, state=CLAIMABLE, now=now, other_than=sorted(governed))
    by_queue: dict[str, list[Job]] = defaultdict(list)
    for job in others:
        by_queue[job.queue].append(job)
    limits = {queue: s.limits for queue, s in active.items()}
    limits.update(dict.fromkeys(by_queue, flow.NO_LIMITS))
    load = loads(rows, limits, now=now)
    parts: dict[str, flow.QueueClaim] = {
        queue: flow.QueueClaim(limits=flow.NO_LIMITS, load=load[queue], candidates=jobs)
        for queue, jobs in by_queue.items()
    }
    for queue, queue_settings in sorted(active.items()):
        room = flow.headroom(queue_settings.limits, load[queue], now=now)
        wanted = request.limit if room.jobs is None else min(request.limit, room.jobs)
        if wanted <= 0:
            continue
        found = rows.claimable_in_turns(
            request,
            queue,
            state=CLAIMABLE,
            now=now,
            after=queue_settings.turn_after,
            room=room,
            limit=wanted,
        )
        if found:
            parts[queue] = flow.QueueClaim(
                limits=queue_settings.limits,
                load=load[queue],
                candidates=found,
                after=queue_settings.turn_after,
            )
    admitted = flow.admit(parts, now=now, limit=request.limit)
    if admitted.last_key:
        rows.set_turns(admitted.last_key)
    for queue, starts in sorted(admitted.starts.items()):
        period = limits[queue].longest_period()
        assert period is not None
        rows.record_starts(queue, starts, keep_after=now - period)
    jobs = [job for job in admitted.jobs if isinstance(job, Job)]
    assert len(jobs) == len(admitted.jobs)
    return jobs


def heartbeat(rows: Rows, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
    now = rows.now()
    batch = Batch(rows.jobs({r.job_id for r in refs}))
    out: list[LeaseStatus] = []
    for ref in refs:
        job = batch.job(ref.job_id)
        step = None if job is None else t.heartbeat(job, ref, now=now, lease_ttl_s=lease_ttl_s)
        if isinstance(step, t.Step):
            extended = batch.apply(step, worker=ref.worker)
            assert extended.lease is not None
            out.append(
                LeaseStatus(
                    ref=ref,
                    held=True,
                    expires_at=extended.lease.expires_at,
                    cancel_requested=extended.cancel_requested,
                )
            )
        else:
            out.append(LeaseStatus(ref=ref, held=False))
    _write(rows, batch, now)
    return out


def checkpoint(rows: Rows, ref: LeaseRef, state: JsonValue) -> None:
    now = rows.now()
    batch = Batch(rows.jobs([ref.job_id]))
    job = batch.job(ref.job_id)
    if job is None:
        raise JobNotFound(ref.job_id)
    step = t.save_checkpoint(job, ref, now=now, state=state)
    if isinstance(step, Refusal):
        raise step
    batch.apply(step, worker=ref.worker)
    _write(rows, batch, now)


def report(
    rows: Rows, reports: Sequence[t.Report], *, normal: Normal = as_is
) -> list[ReportResult]:
    """Judge each report on its own fence, in order: a later report of the same job sees
    what an earlier one did."""
    now = rows.now()
    batch = _load(rows, [r.ref for r in reports])
    out: list[ReportResult] = []
    for report in reports:
        job = batch.job(report.ref.job_id)
        if job is None:
            out.append(ReportResult(ref=report.ref, status=ReportStatus.NOT_FOUND))
            continue
        kept = attrs.evolve(report, result=normal(report.result))
        verdict = t.apply_report(job, batch.attempt(job.id, report.ref.attempt), kept, now=now)
        if isinstance(verdict, t.Step):
            done = batch.apply(verdict, worker=report.ref.worker)
            out.append(ReportResult(ref=report.ref, status=ReportStatus.APPLIED, state=done.state))
        elif isinstance(verdict, t.AlreadyApplied):
            out.append(
                ReportResult(ref=report.ref, status=ReportStatus.ALREADY_APPLIED, state=job.state)
            )
        else:
            if verdict.attempt is not None:
                batch.put_attempt(verdict.attempt)
            out.append(ReportResult(ref=report.ref, status=ReportStatus.STALE, state=job.state))
    _write(rows, batch, now)
    return out


def release(rows: Rows, refs: Sequence[LeaseRef]) -> list[ReportResult]:
    now = rows.now()
    batch = _load(rows, refs)
    out: list[ReportResult] = []
    for ref in refs:
        job = batch.job(ref.job_id)
        if job is None:
            out.append(ReportResult(ref=ref, status=ReportStatus.NOT_FOUND))
            continue
        step = t.release(job, batch.attempt(job.id, ref.attempt), ref, now=now)
        if isinstance(step, t.Step):
            done = batch.apply(step, worker=ref.worker)
            out.append(ReportResult(ref=ref, status=ReportStatus.APPLIED, state=done.state))
        else:
            out.append(ReportResult(ref=ref, status=ReportStatus.STALE, state=job.state))
    _write(rows, batch, now)
    return out


def first_successes(reports: Sequence[t.Report]) -> list[int]:
    """The reports a set-based statement for successes may commit: each a success and the
    first report in the batch for its job. A later report of the same job must be judged
    after the first landed (it is `ALREADY_APPLIED` or stale), so it goes to `report`, in
    order, with everything else.

    >>> from uuid import UUID
    >>> from taskyard.domain.model import ErrorInfo
    >>> def r(n, kind=t.ReportKind.SUCCEEDED):
    ...     error = None if kind is t.ReportKind.SUCCEEDED else ErrorInfo(type="x", message="x")
    ...     ref = LeaseRef(job_id=UUID(int=n), attempt=1, worker="w")
    ...     return t.Report(ref=ref, kind=kind, error=error)
    >>> first_successes([r(1), r(2, t.ReportKind.FAILED), r(1), r(3)])
    [0, 3]
    >>> first_successes([r(2, t.ReportKind.FAILED), r(2)])
    []
    """
    seen: set[UUID] = set()
    fast: list[int] = []
    for index, one in enumerate(reports):
        job_id = one.ref.job_id
        if job_id in seen:
            continue
        seen.add(job_id)
        if one.kind is t.ReportKind.SUCCEEDED:
            fast.append(index)
    return fast


# --- the scheduler's path -----------------------------------------------------------------


def promote_due(rows: Rows, *, limit: int) -> Promoted:
    assert limit >= 1, limit
    now = rows.now()
    candidates = rows.promotable(PROMOTABLE, now=now, limit=limit)
    states = _dependency_states(rows, candidates)
    batch = Batch(candidates)
    by_queue: dict[str, int] = defaultdict(int)
    for job in candidates:
        step = t.promote(job, now=now, dependency_states=_states_of(job, states))
        assert isinstance(step, t.Step), step
        batch.apply(step)
        by_queue[job.queue] += 1
    _write(rows, batch, now)
    return Promoted(by_queue=dict(by_queue))


def reap_expired(rows: Rows, *, limit: int) -> list[Job]:
    assert limit >= 1, limit
    now = rows.now()
    candidates = rows.expired(state=LEASED, now=now, limit=limit)
    batch = Batch(candidates, rows.attempt_records([(j.id, j.attempt) for j in candidates]))
    reaped: list[Job] = []
    for job in candidates:
        step = t.expire(job, batch.attempt(job.id, job.attempt), now=now)
        assert isinstance(step, t.Step), step
        reaped.append(batch.apply(step))
    _write(rows, batch, now)
    return reaped


def resolve_dependencies(rows: Rows, *, limit: int) -> list[Job]:
    """Every job is judged on the states loaded before any is changed, as one set-based
    statement sees one snapshot: a chain resolves one level per call."""
    assert limit >= 1, limit
    now = rows.now()
    candidates = rows.blocked(state=PROMOTABLE.gated, failed=t.FAILED_DEPENDENCY, limit=limit)
    states = _dependency_states(rows, candidates)
    batch = Batch(candidates)
    cancelled: list[Job] = []
    for job in candidates:
        # Not asserted: a dependency may have been retried since the candidates were read.
        step = t.fail_dependency(job, now=now, dependency_states=_states_of(job, states))
        if isinstance(step, t.Step):
            cancelled.append(batch.apply(step))
    _write(rows, batch, now)
    return cancelled


def prune(rows: Rows, retention: Retention, *, limit: int) -> list[Job]:
    """Delete up to `limit` finished jobs whose period (the queue's override, else
    `retention`) has passed by store time, oldest first within each rule, with their
    attempts and dependency rows; never a job another job in the store depends on."""
    assert limit >= 1, limit
    now = rows.now()
    pruned: list[Job] = []
    for rule in rules(retention, rows.retention_overrides(), now=now):
        if len(pruned) >= limit:
            break
        for job in rows.prunable(rule, limit=limit - len(pruned)):
            assert rule.takes(state=job.state, finished_at=job.finished_at, queue=job.queue), job
            pruned.append(job)
    if pruned:
        rows.delete(pruned)
    return pruned


def set_queue_limits(rows: Rows, queue: str, limits: flow.QueueLimits) -> None:
    rows.put_queue_limits(queue, flow.check_limits(limits))


def set_retention(rows: Rows, queue: str, periods: Periods) -> None:
    for state, seconds in periods.items():
        assert state.is_terminal and valid_period(seconds), (state, seconds)
    rows.set_retention(queue, dict(periods))


# --- a person's path ----------------------------------------------------------------------

Decide = Callable[[Job, datetime, dict[UUID, JobState]], t.Step | Refusal]
"""A person's change of one job: the job, the store's now, its dependencies' states."""


def cancel(job: Job, now: datetime, _states: dict[UUID, JobState]) -> t.Step | Refusal:
    return t.cancel(job, now=now)


def retry(job: Job, now: datetime, states: dict[UUID, JobState]) -> t.Step | Refusal:
    return t.retry(job, now=now, dependency_states=_states_of(job, states))


def reschedule(*, priority: int | None, run_at: datetime | None) -> Decide:
    def decide(job: Job, now: datetime, _states: dict[UUID, JobState]) -> t.Step | Refusal:
        return t.reschedule(job, now=now, priority=priority, run_at=run_at)

    return decide


def change(rows: Rows, job_id: UUID, decide: Decide) -> Job:
    """One job changed by a person; a change that changes nothing writes nothing."""
    now = rows.now()
    found = rows.jobs([job_id])
    if not found:
        raise JobNotFound(job_id)
    (job,) = found
    step = decide(job, now, _dependency_states(rows, found))
    if isinstance(step, Refusal):
        raise step
    if step.job != step.before:
        batch = Batch(found)
        batch.apply(step)
        _write(rows, batch, now)
    return step.job


def change_many(
    rows: Rows, job_filter: JobFilter, decide: Decide, *, states: frozenset[JobState]
) -> int:
    """`decide` for every matching job in `states`, in id order; how many changed. A job
    sees the dependencies changed earlier in the same call as they are now."""
    now = rows.now()
    candidates = rows.matching(job_filter, states=states)
    stored = _dependency_states(rows, candidates)
    batch = Batch(candidates)
    count = 0
    for job in candidates:
        current: dict[UUID, JobState] = {}
        for dep in job.depends_on:
            in_batch = batch.job(dep)
            current[dep] = in_batch.state if in_batch is not None else stored[dep]
        step = decide(job, now, current)
        if isinstance(step, t.Step) and step.job != step.before:
            batch.apply(step)
            count += 1
    _write(rows, batch, now)
    return count


def publish_tasks(rows: Rows, tasks: Sequence[TaskInfo], *, worker: str) -> None:
    """A worker's tasks into the catalog, stamped with the worker and the store's now: each
    replaces its task's earlier entry whole, so the last publication wins."""
    if tasks:
        at = rows.now()
        rows.put_tasks([task.published(by=worker, at=at) for task in tasks])


# --- schedules ----------------------------------------------------------------------------


def _one_schedule(rows: Rows, name: str) -> sch.Schedule:
    found = rows.schedule_rows([name])
    if not found:
        raise ScheduleNotFound(name)
    return found[0]


def create_schedule(rows: Rows, spec: sch.ScheduleSpec, *, paused: bool) -> sch.Schedule:
    """A new schedule, first firing at its first fire time after the store's now."""
    if rows.schedule_rows([spec.name]):
        raise ScheduleExists(spec.name)
    schedule = sch.new_schedule(spec, now=rows.now(), paused=paused)
    rows.put_schedules([schedule])
    return schedule


def update_schedule(rows: Rows, spec: sch.ScheduleSpec) -> sch.Schedule:
    """The schedule of `spec.name` with `spec` as its spec (`schedules.respecified`)."""
    schedule = _one_schedule(rows, spec.name)
    changed = sch.respecified(schedule, spec, now=rows.now())
    if changed != schedule:
        rows.put_schedules([changed])
    return changed


def pause_schedule(rows: Rows, name: str, *, paused: bool) -> sch.Schedule:
    schedule = _one_schedule(rows, name)
    changed = sch.paused_as(schedule, paused=paused, now=rows.now())
    if changed != schedule:
        rows.put_schedules([changed])
    return changed


def delete_schedule(rows: Rows, name: str) -> sch.Schedule:
    """The schedule goes (it is returned as it was); the jobs it fired stay."""
    schedule = _one_schedule(rows, name)
    rows.delete_schedule(name)
    return schedule


def sync_schedules(rows: Rows, specs: Sequence[sch.ScheduleSpec]) -> list[sch.Schedule]:
    """Code-declared schedules into the store (`schedules.sync_plan`): what it wrote."""
    stored = rows.schedule_rows(sorted({spec.name for spec in specs}))
    written = sch.sync_plan(stored, specs, now=rows.now())
    if written:
        rows.put_schedules(written)
    return written


def fire_schedules(
    rows: Rows, *, limit: int, keyed: bool = True, normal: Normal = as_is
) -> sch.Fired:
    """Decide every due fire of up to `limit` due schedules (`schedules.plan_fires`) and, in
    the same transaction, enqueue the fires' jobs, request the cancels of
    `cancel_previous`, and write each schedule's next fire and history.

    Each fire's job has the idempotency key `schedules.fire_key`, so a fire that another
    pass already enqueued (a second leader, a retry after an ambiguous commit) is never
    enqueued again: it is looked up here and left alone. `keyed` False is the simulator's
    broken variant, which forgets the key."""
    assert limit >= 1, limit
    now = rows.now()
    due = sorted(rows.due_schedules(now=now, limit=limit), key=lambda s: s.name)
    if not due:
        return sch.Fired()
    last_jobs = sorted({s.last_job_id for s in due if s.last_job_id is not None})
    states = rows.states(last_jobs) if last_jobs else {}
    salt = "" if keyed else str(now)
    new_jobs: list[NewJob] = []
    cancels: list[UUID] = []
    updated: list[sch.Schedule] = []
    fires: list[tuple[str, sch.Fire]] = []
    counts = sch.FireCounts()
    lags: list[float] = []
    more = len(due) >= limit
    for schedule in due:
        last = states.get(schedule.last_job_id) if schedule.last_job_id is not None else None
        plan = sch.plan_fires(
            schedule,
            now=now,
            previous_open=last is not None and not last.is_terminal,
            limit=min(limit, sch.FIRES_PER_PASS_MAX),
            salt=salt,
        )
        for fire in plan.enqueued:
            new_jobs.append(sch.fire_job(schedule.spec, fire.fire_at, keyed=keyed, salt=salt))
            lags.append((now - fire.fire_at).total_seconds())
        cancels.extend(plan.cancel)
        fires.extend((schedule.name, fire) for fire in plan.fires)
        counts = counts.plus(plan.counts(now))
        updated.append(sch.fired(schedule, plan, now=now))
        more = more or plan.next_fire_at <= now
    keys = sorted({new.idempotency_key for new in new_jobs if new.idempotency_key is not None})
    known = {job.idempotency_key for job in rows.keyed(keys)} if keys else set()
    fresh = [new for new in new_jobs if new.idempotency_key not in known]
    if fresh:
        enqueue(rows, fresh, normal=normal)
    if cancels:
        batch = Batch(rows.jobs(set(cancels)))
        for job_id in dict.fromkeys(cancels):
            job = batch.job(job_id)
            step = None if job is None else t.cancel(job, now=now)
            if isinstance(step, t.Step) and step.job != step.before:
                batch.apply(step)
        _write(rows, batch, now)
    rows.put_schedules(updated)
    return sch.Fired(
        fires=tuple(fires),
        counts=counts,
        lags_s=tuple(lags),
        queues=tuple(sorted({new.queue for new in fresh})),
        more=more,
    )
