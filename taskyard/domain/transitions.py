"""The job state machine: one table, and pure functions that consult it.

Every function takes a job, the store's `now` and what the caller asked for, and
returns either a `Step` (the job after, and the attempt record to write) or a
`Refusal` value (`IllegalTransition`, `StaleFence`, `LeaseExpired`, `NotDue`).
Nothing here reads a clock or writes anything: an adapter persists a `Step` with a
conditional write on `(id, state, attempt)` of `Step.before`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from uuid import UUID

import attrs

from taskyard.domain.errors import IllegalTransition, LeaseExpired, NotDue, Refusal, StaleFence
from taskyard.domain.model import (
    COMMITTED_OUTCOMES,
    Attempt,
    ErrorInfo,
    Job,
    JobState,
    JsonObject,
    JsonValue,
    Lease,
    LeaseRef,
    NewJob,
    Outcome,
)
from taskyard.domain.timefmt import after

S = JobState

SHUTDOWN_ERROR = "shutdown"
"""The error type of an attempt its worker handed back at a graceful stop (not charged)."""


class Event(enum.StrEnum):
    ENQUEUE = "enqueue"
    PROMOTE = "promote"
    CLAIM = "claim"
    HEARTBEAT = "heartbeat"
    CHECKPOINT = "checkpoint"
    COMPLETE = "complete"
    FAIL = "fail"
    EXPIRE = "expire"
    RELEASE = "release"
    CANCEL = "cancel"
    RETRY = "retry"
    DEPENDENCY_FAILED = "dependency_failed"
    RESCHEDULE = "reschedule"


ENQUEUE_TARGETS: frozenset[JobState] = frozenset({S.SCHEDULED, S.QUEUED, S.CANCELLED})
"""Where a new job starts: waiting, due, or cancelled at once (it depends on a failed job)."""

TRANSITIONS: Mapping[tuple[JobState, Event], frozenset[JobState]] = {
    (S.SCHEDULED, Event.PROMOTE): frozenset({S.QUEUED}),
    (S.RETRYING, Event.PROMOTE): frozenset({S.QUEUED}),
    (S.QUEUED, Event.CLAIM): frozenset({S.RUNNING}),
    (S.RUNNING, Event.HEARTBEAT): frozenset({S.RUNNING}),
    (S.RUNNING, Event.CHECKPOINT): frozenset({S.RUNNING}),
    (S.RUNNING, Event.COMPLETE): frozenset({S.SUCCEEDED, S.CANCELLED}),
    (S.RUNNING, Event.FAIL): frozenset({S.RETRYING, S.DEAD, S.CANCELLED}),
    (S.RUNNING, Event.EXPIRE): frozenset({S.QUEUED, S.DEAD, S.CANCELLED}),
    (S.RUNNING, Event.RELEASE): frozenset({S.QUEUED, S.CANCELLED}),
    (S.RUNNING, Event.CANCEL): frozenset({S.RUNNING}),
    (S.SCHEDULED, Event.CANCEL): frozenset({S.CANCELLED}),
    (S.QUEUED, Event.CANCEL): frozenset({S.CANCELLED}),
    (S.RETRYING, Event.CANCEL): frozenset({S.CANCELLED}),
    (S.CANCELLED, Event.CANCEL): frozenset({S.CANCELLED}),
    (S.DEAD, Event.RETRY): frozenset({S.QUEUED, S.SCHEDULED}),
    (S.CANCELLED, Event.RETRY): frozenset({S.QUEUED, S.SCHEDULED}),
    (S.SCHEDULED, Event.DEPENDENCY_FAILED): frozenset({S.CANCELLED}),
    (S.SCHEDULED, Event.RESCHEDULE): frozenset({S.SCHEDULED}),
    (S.QUEUED, Event.RESCHEDULE): frozenset({S.QUEUED, S.SCHEDULED}),
    (S.RETRYING, Event.RESCHEDULE): frozenset({S.RETRYING}),
}
"""`(state, event) -> the states the event may lead to`. A pair not in the table is refused."""

EVENT_NOTES: Mapping[Event, str] = {
    Event.ENQUEUE: "a new job: scheduled if its run_at is ahead or a dependency is unfinished, "
    "cancelled at once if a dependency is already dead or cancelled, queued otherwise",
    Event.PROMOTE: "the scheduler makes a waiting job due: run_at reached and every dependency "
    "succeeded",
    Event.CLAIM: "a worker takes a due job: attempt += 1 (the new fence), lease until "
    "store-now + ttl",
    Event.HEARTBEAT: "the holder extends its lease (refused once it has expired by store time)",
    Event.CHECKPOINT: "the holder saves progress (refused without a live lease)",
    Event.COMPLETE: "the holder reports success; cancelled instead if cancellation was requested",
    Event.FAIL: "the holder reports failure (or a timeout): retrying after the backoff while "
    "attempts remain and the error is retryable, dead otherwise",
    Event.EXPIRE: "the scheduler reaps a lease that expired by store time: a failed attempt "
    "(worker_lost), queued again at once while attempts remain",
    Event.RELEASE: "a worker shutting down hands the job back; the interrupted attempt is not "
    "charged to the budget",
    Event.CANCEL: "cancel: a waiting or due job ends cancelled; a running job gets "
    "cancel_requested and ends cancelled when its worker reports or dies",
    Event.RETRY: "a person runs a dead or cancelled job again with a fresh attempt budget",
    Event.DEPENDENCY_FAILED: "a dependency ended dead or cancelled: the dependent ends cancelled",
    Event.RESCHEDULE: "a person changes priority and/or run_at of a job that is not running",
}


def allowed(state: JobState, event: Event) -> frozenset[JobState]:
    return TRANSITIONS.get((state, event), frozenset())


@attrs.frozen(kw_only=True)
class Step:
    """An accepted transition: persist `job` conditional on `before`'s (id, state, attempt)."""

    event: Event
    before: Job
    job: Job
    attempt: Attempt | None = None
    """The attempt record this step creates or closes, if any."""

    def __attrs_post_init__(self) -> None:
        assert self.job.state in allowed(self.before.state, self.event), (
            self.before.state,
            self.event,
            self.job.state,
        )
        assert self.job.attempt >= self.before.attempt, "the fence only grows"


@attrs.frozen(kw_only=True)
class AlreadyApplied:
    """The same report was already committed (an ambiguous commit, retried): nothing to do."""

    job: Job


@attrs.frozen(kw_only=True)
class StaleReport:
    """A report from an attempt that lost its lease: refused, and the attempt marked `stale`
    when nothing had closed it yet."""

    refusal: StaleFence
    attempt: Attempt | None


def _refuse(job: Job, event: Event) -> IllegalTransition:
    return IllegalTransition(job.id, job.state.value, event.value)


def _step(event: Event, before: Job, job: Job, attempt: Attempt | None = None) -> Step:
    return Step(event=event, before=before, job=job, attempt=attempt)


# --- dependencies -------------------------------------------------------------------------


@attrs.frozen
class DependenciesWait:
    pass


@attrs.frozen
class DependenciesMet:
    pass


@attrs.frozen
class DependencyFailed:
    job_id: UUID
    state: JobState


DependencyVerdict = DependenciesWait | DependenciesMet | DependencyFailed


FAILED_DEPENDENCY: frozenset[JobState] = frozenset({S.DEAD, S.CANCELLED})
"""A dependency in one of these states will never succeed."""


def judge_dependencies(states: Mapping[UUID, JobState]) -> DependencyVerdict:
    """All succeeded: met; any dead or cancelled: failed (the lowest such id, for
    determinism); otherwise wait."""
    failed = sorted(dep_id for dep_id, state in states.items() if state in FAILED_DEPENDENCY)
    if failed:
        return DependencyFailed(failed[0], states[failed[0]])
    if all(state is S.SUCCEEDED for state in states.values()):
        return DependenciesMet()
    return DependenciesWait()


def dependency_error(dep_id: UUID, dep_state: JobState) -> ErrorInfo:
    return ErrorInfo(
        type="dependency_failed",
        message=f"dependency {dep_id} ended {dep_state.value}",
    )


# --- creation -----------------------------------------------------------------------------


def create(
    new: NewJob,
    *,
    now: datetime,
    dependency_states: Mapping[UUID, JobState],
    args: JsonObject | None = None,
) -> Job:
    """The job as first stored. `dependency_states` holds the state of every `depends_on`.
    `args`: the submission's args as the store keeps them (JSON-normal), when the store
    has them at hand; `new.args` otherwise."""
    assert set(dependency_states) == set(new.depends_on), "every dependency must be looked up"
    run_at = new.run_at if new.run_at is not None else after(now, new.delay_s or 0.0)
    verdict = judge_dependencies(dependency_states) if dependency_states else DependenciesMet()
    state = S.SCHEDULED
    finished_at = None
    last_error = None
    if isinstance(verdict, DependencyFailed):
        state = S.CANCELLED
        finished_at = now
        last_error = dependency_error(verdict.job_id, verdict.state)
    elif isinstance(verdict, DependenciesMet) and run_at <= now:
        state = S.QUEUED
    return Job(
        id=new.id,
        task=new.task,
        args=new.args if args is None else args,
        queue=new.queue,
        priority=new.priority,
        run_at=run_at,
        max_attempts=new.max_attempts,
        backoff=new.backoff,
        timeout_s=new.timeout_s,
        idempotency_key=new.idempotency_key,
        depends_on=new.depends_on,
        state=state,
        attempt=0,
        attempt_limit=new.max_attempts,
        created_at=now,
        updated_at=now,
        finished_at=finished_at,
        last_error=last_error,
        correlation_id=new.correlation_id,
        schedule=new.schedule,
        fingerprint=new.fingerprint,
        trace_context=new.trace_context,
        concurrency_key=new.concurrency_key,
    )


# --- the scheduler's transitions ----------------------------------------------------------


def promote(
    job: Job, *, now: datetime, dependency_states: Mapping[UUID, JobState]
) -> Step | Refusal:
    """A waiting job becomes due once its `run_at` has passed and its dependencies succeeded."""
    if not allowed(job.state, Event.PROMOTE):
        return _refuse(job, Event.PROMOTE)
    if job.run_at > now:
        return NotDue(job.id)
    if job.state is S.SCHEDULED and not isinstance(
        judge_dependencies(dependency_states), DependenciesMet
    ):
        return NotDue(job.id)
    return _step(Event.PROMOTE, job, attrs.evolve(job, state=S.QUEUED, updated_at=now))


def fail_dependency(
    job: Job, *, now: datetime, dependency_states: Mapping[UUID, JobState]
) -> Step | Refusal:
    """A scheduled job whose dependency ended dead or cancelled ends cancelled, naming it."""
    if not allowed(job.state, Event.DEPENDENCY_FAILED):
        return _refuse(job, Event.DEPENDENCY_FAILED)
    verdict = judge_dependencies(dependency_states)
    if not isinstance(verdict, DependencyFailed):
        return NotDue(job.id)
    return _step(
        Event.DEPENDENCY_FAILED,
        job,
        attrs.evolve(
            job,
            state=S.CANCELLED,
            updated_at=now,
            finished_at=now,
            last_error=dependency_error(verdict.job_id, verdict.state),
        ),
    )


def charged(outcome: Outcome, error_type: str | None) -> bool:
    """An attempt that ended without success and used up one of the job's attempts: failed,
    timed out, lost with its worker, or closed stale (its lease lapsed before its report
    came). A graceful hand-back (`worker_lost` of type `shutdown`) is not charged."""
    if outcome in (Outcome.FAILED, Outcome.TIMEOUT, Outcome.STALE):
        return True
    return outcome is Outcome.WORKER_LOST and error_type != SHUTDOWN_ERROR


def charged_failure(attempt: Attempt) -> bool:
    """`charged` for one attempt record."""
    return charged(attempt.outcome, attempt.error.type if attempt.error else None)


REAPABLE_AFTER = timedelta(microseconds=1)
"""A lease is live through its expiry instant, so the first moment it can be reaped is one
clock tick (the stores keep microseconds) after it: `JobStore.next_wakeup` names that."""


def lease_live(job: Job, *, now: datetime) -> bool:
    """A lease is live up to and including its expiry instant, by the store's clock."""
    return job.lease is not None and now <= job.lease.expires_at


def expire(job: Job, attempt: Attempt | None, *, now: datetime) -> Step | Refusal:
    """Reap an expired lease. The attempt counts as failed (`worker_lost`); the job is queued
    again at once while attempts remain, ends dead when none do, and ends cancelled when
    cancellation was requested. An attempt already closed (`stale`) keeps its outcome."""
    if not allowed(job.state, Event.EXPIRE):
        return _refuse(job, Event.EXPIRE)
    if lease_live(job, now=now):
        return NotDue(job.id)
    assert job.lease is not None
    lost = ErrorInfo(
        type="worker_lost",
        message=f"the lease of worker {job.lease.worker} expired without a report",
    )
    closed = _close_attempt(attempt, job, now=now, outcome=Outcome.WORKER_LOST, error=lost)
    if job.cancel_requested:
        after_job = attrs.evolve(
            job, state=S.CANCELLED, lease=None, updated_at=now, finished_at=now, last_error=lost
        )
    elif job.attempt >= job.attempt_limit:
        after_job = attrs.evolve(
            job, state=S.DEAD, lease=None, updated_at=now, finished_at=now, last_error=lost
        )
    else:
        after_job = attrs.evolve(job, state=S.QUEUED, lease=None, updated_at=now, last_error=lost)
    return _step(Event.EXPIRE, job, after_job, closed)


def _close_attempt(
    attempt: Attempt | None,
    job: Job,
    *,
    now: datetime,
    outcome: Outcome,
    error: ErrorInfo | None,
) -> Attempt | None:
    """Close the open attempt record; one already closed keeps its outcome."""
    if attempt is None or attempt.outcome is not Outcome.RUNNING:
        return None
    assert attempt.attempt == job.attempt, (attempt.attempt, job.attempt)
    return attrs.evolve(
        attempt,
        finished_at=now,
        outcome=outcome,
        error=error,
        lease_expires_at=job.lease.expires_at if job.lease else attempt.lease_expires_at,
    )


# --- the worker's transitions -------------------------------------------------------------


def claim(job: Job, *, now: datetime, worker: str, lease_ttl_s: float) -> Step | Refusal:
    """Take a due job: the attempt number grows by one and becomes the fence."""
    assert lease_ttl_s > 0, lease_ttl_s
    if not allowed(job.state, Event.CLAIM):
        return _refuse(job, Event.CLAIM)
    if job.run_at > now:
        return NotDue(job.id)
    expires_at = after(now, lease_ttl_s)
    running = attrs.evolve(
        job,
        state=S.RUNNING,
        attempt=job.attempt + 1,
        lease=Lease(worker=worker, expires_at=expires_at),
        updated_at=now,
    )
    record = Attempt(
        job_id=job.id,
        attempt=running.attempt,
        worker=worker,
        started_at=now,
        lease_expires_at=expires_at,
    )
    return _step(Event.CLAIM, job, running, record)


def check_fence(job: Job, ref: LeaseRef, *, now: datetime) -> StaleFence | None:
    """None when `ref` holds the job's live lease; the refusal otherwise."""
    if job.state is not S.RUNNING or job.attempt != ref.attempt or job.lease is None:
        return StaleFence(job.id, ref.attempt, job.attempt)
    if job.lease.worker != ref.worker:
        return StaleFence(job.id, ref.attempt, job.attempt)
    if not lease_live(job, now=now):
        return LeaseExpired(job.id, ref.attempt, job.attempt)
    return None


def heartbeat(job: Job, ref: LeaseRef, *, now: datetime, lease_ttl_s: float) -> Step | Refusal:
    """Extend a live lease to store-now + ttl. An expired lease is never revived."""
    assert lease_ttl_s > 0, lease_ttl_s
    refusal = check_fence(job, ref, now=now)
    if refusal is not None:
        return refusal
    assert job.lease is not None
    expires_at = max(job.lease.expires_at, after(now, lease_ttl_s))
    return _step(
        Event.HEARTBEAT,
        job,
        attrs.evolve(job, lease=attrs.evolve(job.lease, expires_at=expires_at), updated_at=now),
    )


def save_checkpoint(job: Job, ref: LeaseRef, *, now: datetime, state: JsonValue) -> Step | Refusal:
    refusal = check_fence(job, ref, now=now)
    if refusal is not None:
        return refusal
    return _step(Event.CHECKPOINT, job, attrs.evolve(job, checkpoint=state, updated_at=now))


class ReportKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    """The handler stopped because cancellation was requested."""


@attrs.frozen(kw_only=True)
class Report:
    """What a worker says about one attempt when its handler has ended."""

    ref: LeaseRef
    kind: ReportKind
    result: JsonValue = None
    error: ErrorInfo | None = None
    retryable: bool = True
    retry_delay_s: float = 0.0
    """Computed by the worker from the job's retry policy; added to the store's clock."""

    def __attrs_post_init__(self) -> None:
        assert self.retry_delay_s >= 0, self.retry_delay_s
        assert self.kind is ReportKind.SUCCEEDED or self.error is not None, (
            "a failure names its error"
        )


def _outcome_for(job: Job, report: Report) -> Outcome:
    if job.cancel_requested:
        return Outcome.CANCELLED
    return {
        ReportKind.SUCCEEDED: Outcome.SUCCEEDED,
        ReportKind.FAILED: Outcome.FAILED,
        ReportKind.TIMEOUT: Outcome.TIMEOUT,
        ReportKind.CANCELLED: Outcome.FAILED,
    }[report.kind]


def apply_report(
    job: Job, attempt: Attempt | None, report: Report, *, now: datetime
) -> Step | AlreadyApplied | StaleReport:
    """Commit a worker's report, exactly once.

    * The attempt still holds a live lease: the outcome is committed. With cancellation
      requested the job ends cancelled whatever the handler returned.
    * The same report was already committed (the caller saw an error the first time):
      `AlreadyApplied`; nothing changes.
    * Otherwise the write is stale: refused. An attempt record still open (its lease
      expired but the scheduler has not reaped it yet) is closed as `stale`.
    """
    refusal = check_fence(job, report.ref, now=now)
    if refusal is not None:
        if (
            attempt is not None
            and attempt.attempt == report.ref.attempt
            and attempt.worker == report.ref.worker
            and attempt.outcome in COMMITTED_OUTCOMES
        ):
            # Only a report sets these outcomes: this one landed before and its answer was lost.
            return AlreadyApplied(job=job)
        stale: Attempt | None = None
        if (
            attempt is not None
            and attempt.attempt == report.ref.attempt
            and attempt.outcome is Outcome.RUNNING
        ):
            stale = attrs.evolve(
                attempt,
                outcome=Outcome.STALE,
                finished_at=now,
                error=report.error,
                lease_expires_at=job.lease.expires_at if job.lease else attempt.lease_expires_at,
            )
        return StaleReport(refusal=refusal, attempt=stale)

    outcome = _outcome_for(job, report)
    assert job.lease is not None
    error = report.error if outcome is not Outcome.SUCCEEDED else None
    if outcome is Outcome.CANCELLED:
        error = error or ErrorInfo(type="cancelled", message="cancellation was requested")
    closed = _close_attempt(attempt, job, now=now, outcome=outcome, error=error)
    done = attrs.evolve(job, lease=None, updated_at=now)

    if outcome is Outcome.SUCCEEDED:
        return _step(
            Event.COMPLETE,
            job,
            attrs.evolve(
                done, state=S.SUCCEEDED, finished_at=now, result=report.result, last_error=None
            ),
            closed,
        )
    event = Event.COMPLETE if report.kind is ReportKind.SUCCEEDED else Event.FAIL
    if outcome is Outcome.CANCELLED:
        return _step(
            event,
            job,
            attrs.evolve(done, state=S.CANCELLED, finished_at=now, last_error=error),
            closed,
        )
    if report.retryable and job.attempt < job.attempt_limit:
        return _step(
            Event.FAIL,
            job,
            attrs.evolve(
                done,
                state=S.RETRYING,
                run_at=after(now, report.retry_delay_s),
                last_error=report.error,
            ),
            closed,
        )
    return _step(
        Event.FAIL,
        job,
        attrs.evolve(done, state=S.DEAD, finished_at=now, last_error=report.error),
        closed,
    )


def release(job: Job, attempt: Attempt | None, ref: LeaseRef, *, now: datetime) -> Step | Refusal:
    """A worker shutting down hands a job back so it runs elsewhere at once.

    The attempt ends `worker_lost` (type `shutdown`) but is not charged to the budget.
    """
    refusal = check_fence(job, ref, now=now)
    if refusal is not None:
        return refusal
    error = ErrorInfo(
        type=SHUTDOWN_ERROR, message=f"worker {ref.worker} shut down and handed it back"
    )
    closed = _close_attempt(attempt, job, now=now, outcome=Outcome.WORKER_LOST, error=error)
    if job.cancel_requested:
        back = attrs.evolve(
            job, state=S.CANCELLED, lease=None, updated_at=now, finished_at=now, last_error=error
        )
    else:
        back = attrs.evolve(
            job,
            state=S.QUEUED,
            lease=None,
            updated_at=now,
            attempt_limit=job.attempt_limit + 1,
        )
    return _step(Event.RELEASE, job, back, closed)


# --- a person's transitions ---------------------------------------------------------------


def cancel(job: Job, *, now: datetime) -> Step | Refusal:
    """Waiting or due: cancelled. Running: cancellation requested. Cancelled: unchanged."""
    if not allowed(job.state, Event.CANCEL):
        return _refuse(job, Event.CANCEL)
    if job.state is S.CANCELLED:
        return _step(Event.CANCEL, job, job)
    if job.state is S.RUNNING:
        if job.cancel_requested:
            return _step(Event.CANCEL, job, job)
        return _step(Event.CANCEL, job, attrs.evolve(job, cancel_requested=True, updated_at=now))
    return _step(
        Event.CANCEL,
        job,
        attrs.evolve(
            job,
            state=S.CANCELLED,
            updated_at=now,
            finished_at=now,
            last_error=ErrorInfo(type="cancelled", message="cancelled while waiting to run"),
        ),
    )


def retry(job: Job, *, now: datetime, dependency_states: Mapping[UUID, JobState]) -> Step | Refusal:
    """Run a dead or cancelled job again: history kept, the attempt counter continues, and
    `max_attempts` more attempts are allowed. It waits (scheduled) while a dependency has
    not succeeded."""
    if not allowed(job.state, Event.RETRY):
        return _refuse(job, Event.RETRY)
    met = isinstance(judge_dependencies(dependency_states), DependenciesMet)
    return _step(
        Event.RETRY,
        job,
        attrs.evolve(
            job,
            state=S.QUEUED if met else S.SCHEDULED,
            run_at=now,
            attempt_limit=job.attempt + job.max_attempts,
            cancel_requested=False,
            finished_at=None,
            lease=None,
            result=None,
            updated_at=now,
        ),
    )


def reschedule(
    job: Job, *, now: datetime, priority: int | None = None, run_at: datetime | None = None
) -> Step | Refusal:
    """Change priority and/or run_at of a job that is not running. A due job whose run_at
    moves into the future waits again (scheduled)."""
    if not allowed(job.state, Event.RESCHEDULE):
        return _refuse(job, Event.RESCHEDULE)
    changed = attrs.evolve(
        job,
        priority=job.priority if priority is None else priority,
        run_at=job.run_at if run_at is None else run_at,
        updated_at=now,
    )
    if changed.state is S.QUEUED and changed.run_at > now:
        changed = attrs.evolve(changed, state=S.SCHEDULED)
    return _step(Event.RESCHEDULE, job, changed)
