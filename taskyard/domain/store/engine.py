"""`StoreEngine`: the whole `JobStore`, over an adapter's row access.

Each method is one transaction of the adapter's `RowStore` running one function of
`plans` or `reads`. An adapter is an engine given its rows; an adapter with a faster way
for a hot path overrides that method and hands what it cannot do itself back to the
engine (PostgreSQL does so for claim, heartbeat, successful reports and plain enqueues).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from taskyard.domain.catalog import TaskInfo
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
from taskyard.domain.ports import (
    ClaimRequest,
    JobFilter,
    JobPage,
    JobQuery,
    LeaseStatus,
    Promoted,
    ReportResult,
)
from taskyard.domain.retention import Periods, Retention
from taskyard.domain.schedules import Fired, Schedule, ScheduleSpec
from taskyard.domain.store import plans, reads
from taskyard.domain.store.rows import Rows, RowStore
from taskyard.domain.transitions import Report


class StoreEngine:
    """A `JobStore`. `normal` turns a JSON value into what the store reads back (identity
    for a store that keeps Python values, a JSON round trip for a SQL one), so that a job
    the store returns equals the job it later reads."""

    def __init__(self, rows: RowStore, *, normal: plans.Normal = plans.as_is) -> None:
        self._rows = rows
        self._normal = normal

    def now(self) -> datetime:
        return self._rows.reading(lambda rows: rows.now())

    # submission and reading

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        if not jobs:
            return []
        return self._rows.writing(lambda rows: plans.enqueue(rows, jobs, normal=self._normal))

    def get(self, job_id: UUID) -> Job:
        return self._rows.reading(lambda rows: reads.get(rows, job_id))

    def list_jobs(self, query: JobQuery) -> JobPage:
        return self._rows.reading(lambda rows: reads.list_jobs(rows, query))

    def attempts(self, job_id: UUID) -> list[Attempt]:
        return self._rows.reading(lambda rows: reads.attempts(rows, job_id))

    # the worker's path

    def claim(self, request: ClaimRequest) -> list[Job]:
        return self._rows.writing(lambda rows: plans.claim(rows, request))

    def heartbeat(self, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
        assert lease_ttl_s > 0, lease_ttl_s
        if not refs:
            return []
        return self._rows.writing(lambda rows: plans.heartbeat(rows, refs, lease_ttl_s=lease_ttl_s))

    def checkpoint(self, ref: LeaseRef, state: object) -> None:
        saved = self._normal(state)
        self._rows.writing(lambda rows: plans.checkpoint(rows, ref, saved))

    def report(self, reports: Sequence[Report]) -> list[ReportResult]:
        if not reports:
            return []
        return self._rows.writing(lambda rows: plans.report(rows, reports, normal=self._normal))

    def release(self, refs: Sequence[LeaseRef]) -> list[ReportResult]:
        if not refs:
            return []
        return self._rows.writing(lambda rows: plans.release(rows, refs))

    # the scheduler's path

    def promote_due(self, *, limit: int) -> Promoted:
        return self._rows.writing(lambda rows: plans.promote_due(rows, limit=limit))

    def reap_expired(self, *, limit: int) -> list[Job]:
        return self._rows.writing(lambda rows: plans.reap_expired(rows, limit=limit))

    def resolve_dependencies(self, *, limit: int) -> list[Job]:
        return self._rows.writing(lambda rows: plans.resolve_dependencies(rows, limit=limit))

    def next_wakeup(self) -> datetime | None:
        return self._rows.reading(reads.next_wakeup)

    def prune(self, retention: Retention, *, limit: int) -> int:
        return len(self._rows.writing(lambda rows: plans.prune(rows, retention, limit=limit)))

    # a person's path

    def cancel(self, job_id: UUID) -> Job:
        return self._rows.writing(lambda rows: plans.change(rows, job_id, plans.cancel))

    def retry(self, job_id: UUID) -> Job:
        return self._rows.writing(lambda rows: plans.change(rows, job_id, plans.retry))

    def reschedule(
        self, job_id: UUID, *, priority: int | None = None, run_at: datetime | None = None
    ) -> Job:
        decide = plans.reschedule(priority=priority, run_at=run_at)
        return self._rows.writing(lambda rows: plans.change(rows, job_id, decide))

    def cancel_many(self, job_filter: JobFilter) -> int:
        return self._rows.writing(
            lambda rows: plans.change_many(rows, job_filter, plans.cancel, states=plans.ACTIVE)
        )

    def retry_many(self, job_filter: JobFilter) -> int:
        return self._rows.writing(
            lambda rows: plans.change_many(rows, job_filter, plans.retry, states=plans.RETRYABLE)
        )

    def set_paused(self, queue: str, *, paused: bool) -> None:
        def work(rows: Rows) -> None:
            rows.set_paused(queue, paused=paused)

        self._rows.writing(work)

    def set_retention(self, queue: str, periods: Periods) -> None:
        self._rows.writing(lambda rows: plans.set_retention(rows, queue, periods))

    def retention_overrides(self) -> dict[str, dict[JobState, int]]:
        return self._rows.reading(lambda rows: rows.retention_overrides())

    # the task catalog

    def publish_tasks(self, tasks: Sequence[TaskInfo], *, worker: str) -> None:
        self._rows.writing(lambda rows: plans.publish_tasks(rows, tasks, worker=worker))

    def tasks(self) -> list[TaskInfo]:
        return self._rows.reading(reads.tasks)

    # schedules

    def create_schedule(self, spec: ScheduleSpec, *, paused: bool = False) -> Schedule:
        return self._rows.writing(lambda rows: plans.create_schedule(rows, spec, paused=paused))

    def update_schedule(self, spec: ScheduleSpec) -> Schedule:
        return self._rows.writing(lambda rows: plans.update_schedule(rows, spec))

    def pause_schedule(self, name: str, *, paused: bool) -> Schedule:
        return self._rows.writing(lambda rows: plans.pause_schedule(rows, name, paused=paused))

    def delete_schedule(self, name: str) -> Schedule:
        return self._rows.writing(lambda rows: plans.delete_schedule(rows, name))

    def sync_schedules(self, specs: Sequence[ScheduleSpec]) -> list[Schedule]:
        return self._rows.writing(lambda rows: plans.sync_schedules(rows, specs))

    def schedules(self) -> list[Schedule]:
        return self._rows.reading(reads.schedules)

    def schedule(self, name: str) -> Schedule:
        return self._rows.reading(lambda rows: reads.schedule(rows, name))

    def fire_schedules(self, *, limit: int, keyed: bool = True) -> Fired:
        return self._rows.writing(
            lambda rows: plans.fire_schedules(rows, limit=limit, keyed=keyed, normal=self._normal)
        )

    def queues(self) -> list[QueueInfo]:
        return self._rows.reading(reads.queues)

    # flow control

    def set_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        self._rows.writing(lambda rows: plans.set_queue_limits(rows, queue, limits))

    def queue_limits(self) -> dict[str, QueueLimits]:
        return self._rows.reading(reads.queue_limits)

    def waiting_reason(self, job_id: UUID) -> WaitingReason | None:
        return self._rows.reading(lambda rows: reads.waiting_reason(rows, job_id))

    def count_jobs(self, job_filter: JobFilter) -> int:
        return self._rows.reading(lambda rows: reads.count_jobs(rows, job_filter))

    def stats(self, *, window_s: float) -> Stats:
        return self._rows.reading(lambda rows: reads.stats(rows, window_s=window_s))

    # what the dashboard reads

    def find_by_key(self, key: str) -> Job | None:
        return self._rows.reading(lambda rows: reads.find_by_key(rows, key))

    def dependents(self, job_id: UUID, *, limit: int) -> list[Job]:
        return self._rows.reading(lambda rows: reads.dependents(rows, job_id, limit=limit))

    def outcome_series(self, *, bucket_s: float, buckets: int) -> list[OutcomeBucket]:
        return self._rows.reading(
            lambda rows: reads.outcome_series(rows, bucket_s=bucket_s, buckets=buckets)
        )

    def dead_groups(self) -> list[DeadGroup]:
        return self._rows.reading(reads.dead_groups)

    def dead_ids(self, *, task: str, error_type: str | None, limit: int) -> list[UUID]:
        return self._rows.reading(
            lambda rows: reads.dead_ids(rows, task=task, error_type=error_type, limit=limit)
        )

    # what an operator watches

    def attempt_totals(self, *, run_s_buckets: Sequence[float]) -> AttemptTotals:
        return self._rows.reading(
            lambda rows: reads.attempt_totals(rows, run_s_buckets=run_s_buckets)
        )
