"""Fault injection at the adapter boundary: each node talks to the shared in-memory store
and coordinator through its own wrapper, which can cut it off (a partition), lose a
request before it lands, lose the reply after it landed (an ambiguous commit), or refuse
a report or release that concerns one chosen job with an unexpected error (as PostgreSQL
refuses a value it cannot hold: `UnexpectedStoreError`, nothing written).

The wrappers implement the ports exactly; the domain code behind them is the production
code and cannot tell it is simulated. What they need of the world around them is the small
`Wire` protocol (the network and its fault sites, `taskyard.simulation.network`), so this
module imports nothing of the world's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID

from taskyard.domain.catalog import TaskInfo
from taskyard.domain.errors import CoordinatorUnavailable, StoreUnavailable
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
    Coordinator,
    Heard,
    JobFilter,
    JobPage,
    JobQuery,
    JobStore,
    Leadership,
    LeaseStatus,
    Promoted,
    ReportResult,
    ReportStatus,
    SchedulerInfo,
    WorkerInfo,
)
from taskyard.domain.retention import Periods, Retention
from taskyard.domain.schedules import Fired, Schedule, ScheduleSpec
from taskyard.domain.transitions import Report
from taskyard.simulation.faults import Target

T = TypeVar("T")


class Caller(Protocol):
    """The node a wrapper belongs to."""

    @property
    def name(self) -> str: ...

    @property
    def label(self) -> str:
        """Name and incarnation (`w2.1`): who the trace says did it."""

    @property
    def node_id(self) -> str:
        """The id the node gives the store and the coordinator."""


class Wire(Protocol):
    """What a node's wrappers ask of the world: whether the node is cut off, whether a
    named fault site fires, whether the store refuses a job of the call, and where to
    note what the store committed and answered."""

    @property
    def split_brain(self) -> bool:
        """True while the coordinator tells every scheduler that it leads."""

    def cut_off(self, node: str, target: Target) -> bool: ...

    def fire(self, site: str, who: str) -> bool: ...

    def refuse(self, caller: Caller, op: str, about: Sequence[LeaseRef | Report]) -> None:
        """Raise `UnexpectedStoreError` when the store refuses a job of the call."""

    def deliver_late(self, who: str, op: str, call: Callable[[], object]) -> None:
        """Apply `call` to the store later (a request its caller gave up on)."""

    def note_commits(self, who: str) -> None:
        """Trace what the store committed since the last call, as done by `who`."""

    def observe(self, who: str, what: str, job_id: UUID, attempt: int) -> None:
        """The store answered something other than "applied" (`what`)."""

    def note(self, who: str, what: str) -> None: ...

    def count(self, path: str) -> None:
        """A path worth counting was taken (`split_brain_lead`, ...)."""

    def deliver_doorbells(self, queues: Sequence[str]) -> None: ...


class UnexpectedStoreError(RuntimeError):
    """What a store raises when it refuses a call for a reason that is not an outage (a
    bug, a value it cannot hold, like psycopg's `DataError`). Not `StoreUnavailable`."""


class FaultyJobStore:
    """One node's view of the store."""

    def __init__(self, wire: Wire, node: Caller, inner: JobStore) -> None:
        self._wire = wire
        self._node = node
        self._inner = inner

    def _call(
        self,
        op: str,
        fn: Callable[[], T],
        *,
        write: bool = True,
        about: Sequence[LeaseRef | Report] = (),
    ) -> T:
        wire = self._wire
        node = self._node
        if wire.cut_off(node.name, Target.STORE):
            raise StoreUnavailable(message=f"{node.name} cannot reach the store")
        if wire.fire(f"store.{op}.unavailable", node.label):
            raise StoreUnavailable(message=f"store.{op}: the request was lost")
        if about:
            wire.refuse(node, op, about)  # raises UnexpectedStoreError for a refused job
        if write and wire.fire(f"store.{op}.delayed", node.label):
            wire.deliver_late(node.label, op, fn)
            raise StoreUnavailable(
                message=f"store.{op}: timed out (the request is still on its way)"
            )
        try:
            result = fn()
        finally:
            wire.note_commits(node.label)
        if write and wire.fire(f"store.{op}.reply_lost", node.label):
            raise StoreUnavailable(message=f"store.{op}: the reply was lost")
        return result

    def now(self) -> datetime:
        return self._inner.now()

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        return self._call("enqueue", lambda: self._inner.enqueue(jobs))

    def get(self, job_id: UUID) -> Job:
        return self._call("get", lambda: self._inner.get(job_id), write=False)

    def list_jobs(self, query: JobQuery) -> JobPage:
        return self._call("list_jobs", lambda: self._inner.list_jobs(query), write=False)

    def attempts(self, job_id: UUID) -> list[Attempt]:
        return self._call("attempts", lambda: self._inner.attempts(job_id), write=False)

    def claim(self, request: ClaimRequest) -> list[Job]:
        return self._call("claim", lambda: self._inner.claim(request))

    def heartbeat(self, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
        statuses = self._call(
            "heartbeat", lambda: self._inner.heartbeat(refs, lease_ttl_s=lease_ttl_s)
        )
        for status in statuses:
            if not status.held:
                self._wire.observe(
                    self._node.label, "heartbeat_refused", status.ref.job_id, status.ref.attempt
                )
        return statuses

    def _observe(self, what: str, results: list[ReportResult]) -> list[ReportResult]:
        for result in results:
            if result.status is not ReportStatus.APPLIED:
                self._wire.observe(
                    self._node.label,
                    f"{what}_{result.status.value}",
                    result.ref.job_id,
                    result.ref.attempt,
                )
        return results

    def checkpoint(self, ref: LeaseRef, state: object) -> None:
        self._call("checkpoint", lambda: self._inner.checkpoint(ref, state))

    def report(self, reports: Sequence[Report]) -> list[ReportResult]:
        return self._observe(
            "report", self._call("report", lambda: self._inner.report(reports), about=reports)
        )

    def release(self, refs: Sequence[LeaseRef]) -> list[ReportResult]:
        return self._observe(
            "release", self._call("release", lambda: self._inner.release(refs), about=refs)
        )

    def promote_due(self, *, limit: int) -> Promoted:
        return self._call("promote_due", lambda: self._inner.promote_due(limit=limit))

    def reap_expired(self, *, limit: int) -> list[Job]:
        return self._call("reap_expired", lambda: self._inner.reap_expired(limit=limit))

    def resolve_dependencies(self, *, limit: int) -> list[Job]:
        return self._call(
            "resolve_dependencies", lambda: self._inner.resolve_dependencies(limit=limit)
        )

    def next_wakeup(self) -> datetime | None:
        return self._inner.next_wakeup()

    def prune(self, retention: Retention, *, limit: int) -> int:
        return self._call("prune", lambda: self._inner.prune(retention, limit=limit))

    def cancel(self, job_id: UUID) -> Job:
        return self._call("cancel", lambda: self._inner.cancel(job_id))

    def retry(self, job_id: UUID) -> Job:
        return self._call("retry", lambda: self._inner.retry(job_id))

    def reschedule(
        self, job_id: UUID, *, priority: int | None = None, run_at: datetime | None = None
    ) -> Job:
        return self._call(
            "reschedule",
            lambda: self._inner.reschedule(job_id, priority=priority, run_at=run_at),
        )

    def cancel_many(self, job_filter: JobFilter) -> int:
        return self._call("cancel", lambda: self._inner.cancel_many(job_filter))

    def retry_many(self, job_filter: JobFilter) -> int:
        return self._call("retry", lambda: self._inner.retry_many(job_filter))

    def set_paused(self, queue: str, *, paused: bool) -> None:
        self._inner.set_paused(queue, paused=paused)

    def set_retention(self, queue: str, periods: Periods) -> None:
        self._inner.set_retention(queue, periods)

    def retention_overrides(self) -> dict[str, dict[JobState, int]]:
        return self._inner.retention_overrides()

    def set_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        self._inner.set_queue_limits(queue, limits)

    def queue_limits(self) -> dict[str, QueueLimits]:
        return self._inner.queue_limits()

    def waiting_reason(self, job_id: UUID) -> WaitingReason | None:
        return self._call("waiting_reason", lambda: self._inner.waiting_reason(job_id), write=False)

    def queues(self) -> list[QueueInfo]:
        return self._inner.queues()

    def count_jobs(self, job_filter: JobFilter) -> int:
        return self._inner.count_jobs(job_filter)

    def stats(self, *, window_s: float) -> Stats:
        return self._inner.stats(window_s=window_s)

    def find_by_key(self, key: str) -> Job | None:
        return self._inner.find_by_key(key)

    def dependents(self, job_id: UUID, *, limit: int) -> list[Job]:
        return self._inner.dependents(job_id, limit=limit)

    def outcome_series(self, *, bucket_s: float, buckets: int) -> list[OutcomeBucket]:
        return self._inner.outcome_series(bucket_s=bucket_s, buckets=buckets)

    def dead_groups(self) -> list[DeadGroup]:
        return self._inner.dead_groups()

    def dead_ids(self, *, task: str, error_type: str | None, limit: int) -> list[UUID]:
        return self._inner.dead_ids(task=task, error_type=error_type, limit=limit)

    def attempt_totals(self, *, run_s_buckets: Sequence[float]) -> AttemptTotals:
        return self._inner.attempt_totals(run_s_buckets=run_s_buckets)

    def publish_tasks(self, tasks: Sequence[TaskInfo], *, worker: str) -> None:
        self._call("publish_tasks", lambda: self._inner.publish_tasks(tasks, worker=worker))

    def tasks(self) -> list[TaskInfo]:
        return self._call("tasks", self._inner.tasks, write=False)

    def create_schedule(self, spec: ScheduleSpec, *, paused: bool = False) -> Schedule:
        return self._call("schedules", lambda: self._inner.create_schedule(spec, paused=paused))

    def update_schedule(self, spec: ScheduleSpec) -> Schedule:
        return self._call("schedules", lambda: self._inner.update_schedule(spec))

    def pause_schedule(self, name: str, *, paused: bool) -> Schedule:
        return self._call("schedules", lambda: self._inner.pause_schedule(name, paused=paused))

    def delete_schedule(self, name: str) -> Schedule:
        return self._call("schedules", lambda: self._inner.delete_schedule(name))

    def sync_schedules(self, specs: Sequence[ScheduleSpec]) -> list[Schedule]:
        return self._call("schedules", lambda: self._inner.sync_schedules(specs))

    def schedules(self) -> list[Schedule]:
        return self._call("schedules", self._inner.schedules, write=False)

    def schedule(self, name: str) -> Schedule:
        return self._call("schedules", lambda: self._inner.schedule(name), write=False)

    def fire_schedules(self, *, limit: int, keyed: bool = True) -> Fired:
        return self._call(
            "fire_schedules", lambda: self._inner.fire_schedules(limit=limit, keyed=keyed)
        )


class FaultyCoordinator:
    """One node's view of the coordinator. Doorbells are delivered by the world as events
    (the production worker's doorbell thread, blocked in `wait`, is what it stands for)."""

    def __init__(self, wire: Wire, node: Caller, inner: Coordinator) -> None:
        self._wire = wire
        self._node = node
        self._inner = inner

    def _check(self) -> None:
        if self._wire.cut_off(self._node.name, Target.COORDINATOR):
            raise CoordinatorUnavailable(message=f"{self._node.name} cannot reach the coordinator")

    def campaign(self, *, candidate: str, ttl_s: float) -> Leadership | None:
        self._check()
        held = self._inner.campaign(candidate=candidate, ttl_s=ttl_s)
        if held is None and self._wire.split_brain:
            current = self._inner.leader()
            term = current.term if current is not None else 0
            self._wire.count("split_brain_lead")
            self._wire.note(
                self._node.label, f"split brain: {candidate} is told it leads term {term}"
            )
            return Leadership(holder=candidate, term=term, expires_at=None)
        return held

    def resign(self, *, candidate: str) -> bool:
        self._check()
        return self._inner.resign(candidate=candidate)

    def leader(self) -> Leadership | None:
        self._check()
        return self._inner.leader()

    def register_worker(self, info: WorkerInfo, *, ttl_s: float) -> None:
        self._check()
        self._inner.register_worker(info, ttl_s=ttl_s)

    def unregister_worker(self, worker_id: str) -> None:
        self._check()
        self._inner.unregister_worker(worker_id)

    def workers(self) -> list[WorkerInfo]:
        self._check()
        return self._inner.workers()

    def register_scheduler(self, info: SchedulerInfo, *, ttl_s: float) -> None:
        self._check()
        self._inner.register_scheduler(info, ttl_s=ttl_s)

    def unregister_scheduler(self, scheduler_id: str) -> None:
        self._check()
        self._inner.unregister_scheduler(scheduler_id)

    def schedulers(self) -> list[SchedulerInfo]:
        self._check()
        return self._inner.schedulers()

    def ring(self, queues: Sequence[str]) -> None:
        self._check()
        self._inner.ring(queues)
        self._wire.deliver_doorbells(queues)

    def wait(self, queues: Sequence[str] | None, *, timeout_s: float) -> bool:
        raise AssertionError("nothing blocks in the simulator: doorbells arrive as events")

    def announce_finished(self, job_ids: Sequence[UUID]) -> None:
        self._check()
        self._inner.announce_finished(job_ids)

    def finished_mark(self) -> str:
        self._check()
        return self._inner.finished_mark()

    def wait_finished(self, job_ids: Collection[UUID], *, after: str, timeout_s: float) -> Heard:
        raise AssertionError("nothing blocks in the simulator")
