"""The ports: what the domain needs of the world, named by intent.

Every adapter of a port passes that port's contract suite in `tests/contract/`.

* `JobStore`: the durable truth. Its clock (`now()`) is the only one that decides
  leases and `run_at`. Every change is a compare-and-set on `(id, state, attempt)`.
* `Coordinator`: leader lease, worker and scheduler registry, doorbells. It only
  decides how fast work moves, never whether it is correct; losing it degrades to
  polling.
* `Clock`: a node's own reading of the time (for its schedules, never for safety).
* `Random`: a source of chance, injected so a seed replays a run.
* `Executor`: starts a handler for a claimed job; reports back through the worker.
* `TaskRegistry`: task name to handler and per-task defaults.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

import attrs

from taskyard.domain.catalog import TaskInfo
from taskyard.domain.context import JobContext, TaskSpec
from taskyard.domain.flow import QueueLimits, WaitingReason
from taskyard.domain.model import (
    Attempt,
    AttemptTotals,
    DeadGroup,
    Enqueued,
    Job,
    JobState,
    LeaseRef,
    NewJob,
    OutcomeBucket,
    QueueInfo,
    Stats,
)
from taskyard.domain.retention import Periods, Retention
from taskyard.domain.schedules import Fired, Schedule, ScheduleSpec
from taskyard.domain.transitions import Report

# --- time and chance ----------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class Random(Protocol):
    """The part of `random.Random` the domain uses."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...


# --- the store ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ClaimRequest:
    worker: str
    limit: int
    lease_ttl_s: float
    queues: frozenset[str] | None = None
    """None: every queue."""
    tasks: frozenset[str] | None = None
    """None: any task. Otherwise only jobs of these tasks (the ones this worker can run)."""

    def __attrs_post_init__(self) -> None:
        assert self.limit >= 1, self.limit
        assert self.lease_ttl_s > 0, self.lease_ttl_s


@attrs.frozen(kw_only=True)
class LeaseStatus:
    """The answer to one lease in a heartbeat."""

    ref: LeaseRef
    held: bool
    expires_at: datetime | None = None
    cancel_requested: bool = False


class ReportStatus(enum.StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    """An earlier try of the same report landed (its answer was lost)."""
    STALE = "stale"
    """The attempt no longer held a live lease: nothing was written to the job."""
    NOT_FOUND = "not_found"


@attrs.frozen(kw_only=True)
class ReportResult:
    ref: LeaseRef
    status: ReportStatus
    state: JobState | None = None
    """The job's state after the report (None when not found)."""


@attrs.frozen(kw_only=True)
class JobFilter:
    """Any of each given list; an empty list means no condition on that field."""

    states: frozenset[JobState] = frozenset()
    queues: frozenset[str] = frozenset()
    tasks: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.states or self.queues or self.tasks)

    def admits(self, *, state: JobState, queue: str, task: str) -> bool:
        """Whether a job of this state, queue and task matches."""
        return (
            (not self.states or state in self.states)
            and (not self.queues or queue in self.queues)
            and (not self.tasks or task in self.tasks)
        )


@attrs.frozen(kw_only=True)
class JobQuery:
    filter: JobFilter = JobFilter()
    limit: int = 100
    cursor: tuple[datetime, UUID] | None = None
    """Start after this `(created_at, id)`; listing is newest first."""

    def __attrs_post_init__(self) -> None:
        assert 1 <= self.limit <= 1000, self.limit


@attrs.frozen(kw_only=True)
class JobPage:
    jobs: Sequence[Job]
    next_cursor: tuple[datetime, UUID] | None


@attrs.frozen(kw_only=True)
class Promoted:
    """What a promotion pass made due, by queue (so the scheduler can ring the doorbells)."""

    by_queue: Mapping[str, int]

    @property
    def count(self) -> int:
        return sum(self.by_queue.values())


class JobStore(Protocol):
    def now(self) -> datetime:
        """The store's clock: the only time authority for leases and run_at."""
        ...

    # submission and reading
    def enqueue(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Create jobs, all or nothing, in order. A job whose idempotency key exists with the
        same fingerprint returns the existing job (`created=False`); with another
        fingerprint the whole call raises `IdempotencyConflict`. A dependency must exist, or
        come earlier in the same call, else `UnknownDependency`."""
        ...

    def get(self, job_id: UUID) -> Job:
        """Raises `JobNotFound`."""
        ...

    def list_jobs(self, query: JobQuery) -> JobPage: ...

    def attempts(self, job_id: UUID) -> list[Attempt]:
        """Oldest first. Raises `JobNotFound`."""
        ...

    # the worker's path
    def claim(self, request: ClaimRequest) -> list[Job]:
        """Atomically take up to `limit` queued jobs in `(priority desc, run_at asc, id asc)`
        order, skipping paused queues and jobs not yet due by store time; in a governed
        queue, only what its limits admit, in turns over keys, and between queues by
        weight (`flow.admit`), with any number of claimers at once."""
        ...

    def heartbeat(self, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
        """Extend every live lease in `refs` to store-now + ttl, in one write. Expired leases
        are not revived (`held=False`)."""
        ...

    def checkpoint(self, ref: LeaseRef, state: object) -> None:
        """Save progress. Raises `StaleFence` (or `LeaseExpired`) without a live lease."""
        ...

    def report(self, reports: Sequence[Report]) -> list[ReportResult]:
        """Commit handler outcomes, each on its own fence; one result per report, in order.
        Safe to repeat: a report that landed before answers `ALREADY_APPLIED`."""
        ...

    def release(self, refs: Sequence[LeaseRef]) -> list[ReportResult]:
        """Hand back live leases at shutdown: the jobs are queued again at once."""
        ...

    # the scheduler's path
    def promote_due(self, *, limit: int) -> Promoted:
        """Scheduled/retrying jobs whose run_at has passed (and, for scheduled, whose
        dependencies all succeeded) become queued."""
        ...

    def reap_expired(self, *, limit: int) -> list[Job]:
        """Running jobs whose lease expired by store time: the attempt ends `worker_lost`."""
        ...

    def resolve_dependencies(self, *, limit: int) -> list[Job]:
        """Scheduled jobs with a dependency that ended dead or cancelled end cancelled.

        Every job is judged on the states at the start of the call, so a chain resolves one
        level per call (a set-based statement sees one snapshot)."""
        ...

    def next_wakeup(self) -> datetime | None:
        """The earliest moment after the store's now at which time alone changes what the
        scheduler can do: a waiting job's run_at, or the first moment a running job's lease
        can be reaped (`transitions.REAPABLE_AFTER` past its expiry). Moments
        already passed are not counted (a job due now but waiting on a dependency waits on
        that job, not on the clock). None when no such moment exists."""
        ...

    def prune(self, retention: Retention, *, limit: int) -> int:
        """Delete up to `limit` finished jobs whose retention period has passed by store
        time (the queue's override of the job's state, else `retention`'s), with their
        attempt records and dependency rows, in one short transaction; never a job that
        another job in the store depends on, nor a row another transaction holds.
        Returns how many were deleted."""
        ...

    # a person's path
    def cancel(self, job_id: UUID) -> Job: ...

    def retry(self, job_id: UUID) -> Job: ...

    def reschedule(
        self, job_id: UUID, *, priority: int | None = None, run_at: datetime | None = None
    ) -> Job: ...

    def cancel_many(self, job_filter: JobFilter) -> int: ...

    def retry_many(self, job_filter: JobFilter) -> int: ...

    def set_paused(self, queue: str, *, paused: bool) -> None: ...

    def set_retention(self, queue: str, periods: Periods) -> None:
        """Replace the queue's retention override whole: seconds per finished state it
        names (0: forever); a state it leaves out follows the default. Empty removes it."""
        ...

    def retention_overrides(self) -> dict[str, dict[JobState, int]]:
        """Every queue's retention override, by queue."""
        ...

    def set_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        """Replace the queue's limits whole (`flow.check_limits` first: they must be within
        bounds); `QueueLimits()` removes them. Every claim after this commit follows them."""
        ...

    def queue_limits(self) -> dict[str, QueueLimits]:
        """The limits of every queue that has any, by queue."""
        ...

    def waiting_reason(self, job_id: UUID) -> WaitingReason | None:
        """Why the job is not running yet (`flow.waiting_reason`), by the store's now; None
        for a running or finished job. Raises `JobNotFound`."""
        ...

    def queues(self) -> list[QueueInfo]:
        """Every queue that has jobs, is paused or has limits, with its counts by state
        (kept as counters by a SQL store, so bounded by the number of queues, not of
        jobs), its limits and their usage now."""
        ...

    def count_jobs(self, job_filter: JobFilter) -> int:
        """How many jobs match `job_filter` now, from the same counters as `queues`."""
        ...

    def stats(self, *, window_s: float) -> Stats: ...

    # the task catalog
    def publish_tasks(self, tasks: Sequence[TaskInfo], *, worker: str) -> None:
        """Put these tasks' entries into the catalog, each as published by `worker` at the
        store's now, in one write: an entry replaces the task's earlier one whole (the last
        publication wins)."""
        ...

    def tasks(self) -> list[TaskInfo]:
        """The catalog: every task's last published entry, by name."""
        ...

    # schedules
    def create_schedule(self, spec: ScheduleSpec, *, paused: bool = False) -> Schedule:
        """A new schedule, first firing after the store's now; `ScheduleExists` if the
        name is taken."""
        ...

    def update_schedule(self, spec: ScheduleSpec) -> Schedule:
        """Replace the spec of schedule `spec.name` (`ScheduleNotFound`); a new timing
        starts from its first fire after the store's now."""
        ...

    def pause_schedule(self, name: str, *, paused: bool) -> Schedule:
        """Pause, or resume from the first fire after the store's now (no catch-up)."""
        ...

    def delete_schedule(self, name: str) -> Schedule:
        """Remove the schedule and return it as it was (`ScheduleNotFound`); the jobs it
        fired stay."""
        ...

    def sync_schedules(self, specs: Sequence[ScheduleSpec]) -> list[Schedule]:
        """Code-declared schedules in: new names created, changed specs replaced (the
        code wins), state kept, undeclared schedules left alone. Returns what it wrote."""
        ...

    def schedules(self) -> list[Schedule]: ...

    def schedule(self, name: str) -> Schedule: ...

    def fire_schedules(self, *, limit: int, keyed: bool = True) -> Fired:
        """Enqueue the due fires of up to `limit` due schedules at the store's now, each at
        most once ever (its job's idempotency key is the fire), as the schedules' catch-up
        and overlap policies say; one transaction."""
        ...

    # what the dashboard reads

    def find_by_key(self, key: str) -> Job | None:
        """The job that holds idempotency key `key`, if any."""
        ...

    def dependents(self, job_id: UUID, *, limit: int) -> list[Job]:
        """Up to `limit` jobs that depend on `job_id`, oldest first by `(created_at, id)`."""
        ...

    def outcome_series(self, *, bucket_s: float, buckets: int) -> list[OutcomeBucket]:
        """What ended in each of the last `buckets` slices of `bucket_s` seconds up to now,
        oldest first."""
        ...

    def dead_groups(self) -> list[DeadGroup]:
        """The dead jobs grouped by task and error type, largest group first."""
        ...

    def dead_ids(self, *, task: str, error_type: str | None, limit: int) -> list[UUID]:
        """Up to `limit` ids of one `dead_groups` group, newest first."""
        ...

    # what an operator watches

    def attempt_totals(self, *, run_s_buckets: Sequence[float]) -> AttemptTotals:
        """Every attempt recorded so far, counted by outcome (every `Outcome` present, 0 when
        none), and the run time (`finished_at - started_at`) of the attempts a worker reported
        an end for (`REPORTED_OUTCOMES`) as a cumulative histogram over `run_s_buckets`
        (ascending upper bounds, in seconds). The metrics endpoint reads it at scrape time."""
        ...


@runtime_checkable
class Upkeep(Protocol):
    """What a store whose updates and deletes leave dead rows behind offers its leading
    scheduler (PostgreSQL): the dead rows of its busy tables, and a vacuum of one."""

    def table_rows(self) -> dict[str, tuple[int, int]]:
        """Live and dead rows of each busy table, from the store's statistics."""
        ...

    def vacuum(self, table: str) -> None:
        """Vacuum one of those tables, unless another vacuum holds it (then skip it at
        once). Blocks no read or write of the table's rows."""
        ...


# --- the coordinator ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Leadership:
    holder: str
    term: int
    expires_at: datetime | None = None
    """The coordinator's own reading; informational."""


@attrs.frozen(kw_only=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    """Empty: every queue."""
    concurrency: int
    started_at: datetime
    last_heartbeat_at: datetime
    running_job_ids: tuple[UUID, ...] = ()


@attrs.frozen(kw_only=True)
class SchedulerInfo:
    id: str
    host: str
    pid: int
    last_heartbeat_at: datetime
    leader: bool = False
    term: int | None = None


@attrs.frozen(kw_only=True)
class Heard:
    """What a wait on the finished bell heard: which of its jobs were announced (empty at
    the timeout), and the mark to wait after next."""

    finished: frozenset[UUID]
    mark: str


SCHEDULER_BELL = "@scheduler"
"""The doorbell the scheduler listens on (no queue name has `@`): rung when a job is made
to wait on the clock (a delayed enqueue, a retry), so that the leading scheduler learns its
due time at once. A wait on every queue (`wait(None)`) does not hear it: no worker wakes."""


class Coordinator(Protocol):
    def campaign(self, *, candidate: str, ttl_s: float) -> Leadership | None:
        """Take the leader lease if it is free, or renew it if `candidate` holds it.
        Returns the leadership held (with its term), or None if another holds it.
        A new holder gets a term greater than every term before it."""
        ...

    def resign(self, *, candidate: str) -> bool:
        """Give the lease up, only if `candidate` holds it."""
        ...

    def leader(self) -> Leadership | None: ...

    def register_worker(self, info: WorkerInfo, *, ttl_s: float) -> None:
        """Record (or refresh) a live worker; it disappears `ttl_s` after its last call."""
        ...

    def unregister_worker(self, worker_id: str) -> None: ...

    def workers(self) -> list[WorkerInfo]: ...

    def register_scheduler(self, info: SchedulerInfo, *, ttl_s: float) -> None: ...

    def unregister_scheduler(self, scheduler_id: str) -> None: ...

    def schedulers(self) -> list[SchedulerInfo]: ...

    def ring(self, queues: Sequence[str]) -> None:
        """Tell idle workers of these queues that there is work. Best effort.
        `SCHEDULER_BELL` among them wakes only a wait that names it."""
        ...

    def wait(self, queues: Sequence[str] | None, *, timeout_s: float) -> bool:
        """Block until a doorbell of one of `queues` (None: any) rings, or the timeout.
        True when rung. Spurious and lost rings are harmless: the store is the truth."""
        ...

    def announce_finished(self, job_ids: Sequence[UUID]) -> None:
        """Ring the finished bell for jobs that reached a final state, for whoever waits on
        them (`wait_finished`). Best effort, like `ring`."""
        ...

    def finished_mark(self) -> str:
        """Where the finished bell stands: a `wait_finished(after=mark)` hears every
        announcement made after this call. Take it before looking at the store."""
        ...

    def wait_finished(self, job_ids: Collection[UUID], *, after: str, timeout_s: float) -> Heard:
        """Block until an announcement made after `after` names one of `job_ids`, or the
        timeout. Only a fast path: a lost announcement (Redis flushed, a waiter too far
        behind) is never made up for, so a waiter looks at the store now and then anyway."""
        ...


# --- running handlers ---------------------------------------------------------------------


class TaskRegistry(Protocol):
    def names(self) -> frozenset[str]: ...

    def get(self, name: str) -> TaskSpec | None: ...


class Executor(Protocol):
    def start(self, job: Job, context: JobContext) -> None:
        """Begin running the job's handler. The outcome comes back through
        `Worker.handler_finished`; `start` itself never blocks on the handler."""
        ...


StoreStates = Mapping[UUID, JobState]
