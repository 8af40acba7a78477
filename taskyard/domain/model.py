"""The values of the domain: jobs, attempts, leases and what a store is asked to create."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain.flow import QueueLimits, QueueUsage
from taskyard.domain.retry import RetryPolicy
from taskyard.domain.timefmt import format_time, seconds_between

JsonObject = Mapping[str, Any]
"""A JSON object as Python sees it after `json.loads`."""

JsonValue = Any
"""Any JSON value (null, bool, number, string, array, object)."""


class JobState(enum.StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})
WAITING_STATES = frozenset({JobState.SCHEDULED, JobState.RETRYING})
"""States in which a job waits for its `run_at` (and, when scheduled, its dependencies)."""


class Outcome(enum.StrEnum):
    """How an attempt ended. Once set to anything but `running`, it never changes."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled"
    STALE = "stale"


COMMITTED_OUTCOMES = frozenset(
    {Outcome.SUCCEEDED, Outcome.FAILED, Outcome.TIMEOUT, Outcome.CANCELLED}
)
"""Outcomes that a worker's report wrote: each is a write that must have held the lease."""

REPORTED_OUTCOMES = COMMITTED_OUTCOMES
"""Attempts whose run time is a handler's run time (the run-time histogram counts these):
`worker_lost` lasts until the reaper noticed, and `stale` until a late report came."""


@attrs.frozen(kw_only=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str | None = None

    def to_json(self, *, with_traceback: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "message": self.message}
        if with_traceback:
            out["traceback"] = self.traceback
        return out


@attrs.frozen(kw_only=True)
class Lease:
    worker: str
    expires_at: datetime


@attrs.frozen(kw_only=True)
class LeaseRef:
    """What an attempt knows about itself: the job, the fence (attempt number) and its worker."""

    job_id: UUID
    attempt: int
    worker: str


class CatchUp(enum.StrEnum):
    """What a schedule does with the fires missed while no scheduler ran (`schedules.py`)."""

    SKIP = "skip"
    LATEST = "latest"
    ALL = "all"


class Overlap(enum.StrEnum):
    """What a schedule does when its previous fire's job has not finished (`schedules.py`)."""

    ALLOW = "allow"
    SKIP = "skip"
    CANCEL_PREVIOUS = "cancel_previous"


@attrs.frozen(kw_only=True)
class FireId:
    """What a fired job carries: its schedule and its fire time."""

    name: str
    fire_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "fire_at": format_time(self.fire_at)}


@attrs.frozen(kw_only=True)
class Job:
    id: UUID
    task: str
    args: JsonObject
    queue: str
    priority: int
    run_at: datetime
    max_attempts: int
    backoff: RetryPolicy
    timeout_s: float | None
    idempotency_key: str | None
    depends_on: tuple[UUID, ...]
    state: JobState
    attempt: int
    attempt_limit: int
    """The highest attempt number this job may reach before it ends `dead`.

    Starts at `max_attempts`; a manual retry sets it to `attempt + max_attempts` (a fresh
    budget); a lease handed back at a graceful shutdown raises it by one, since the
    attempt was interrupted by the operator, not by the job.
    """
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    lease: Lease | None = None
    cancel_requested: bool = False
    checkpoint: JsonValue = None
    result: JsonValue = None
    last_error: ErrorInfo | None = None
    correlation_id: str | None = None
    schedule: FireId | None = None
    """The schedule fire that enqueued this job, if one did."""
    fingerprint: str | None = None
    """A digest of the submission as sent (defaults filled), to tell a replay from a conflict."""
    trace_context: Mapping[str, str] | None = None
    """The trace its enqueue ran in (W3C `traceparent`, `tracestate`), for its attempts'
    spans (`domain/hooks.py`, `taskyard.otel`); never shown by the API."""
    concurrency_key: str | None = None
    """What the queue's per-key limits and turns count by (a tenant, an account)."""

    def ref(self) -> LeaseRef:
        assert self.lease is not None, f"job {self.id} holds no lease"
        return LeaseRef(job_id=self.id, attempt=self.attempt, worker=self.lease.worker)

    def to_json(self) -> dict[str, Any]:
        """The job as the API returns it (`api.md`)."""
        return {
            "id": str(self.id),
            "task": self.task,
            "args": dict(self.args),
            "queue": self.queue,
            "priority": self.priority,
            "run_at": format_time(self.run_at),
            "max_attempts": self.max_attempts,
            "backoff": self.backoff.to_json(),
            "timeout_seconds": self.timeout_s,
            "idempotency_key": self.idempotency_key,
            "depends_on": [str(d) for d in self.depends_on],
            "state": self.state.value,
            "attempt": self.attempt,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "finished_at": format_time(self.finished_at) if self.finished_at else None,
            "lease": (
                {"worker": self.lease.worker, "expires_at": format_time(self.lease.expires_at)}
                if self.lease
                else None
            ),
            "cancel_requested": self.cancel_requested,
            "checkpoint": self.checkpoint,
            "result": self.result,
            "last_error": self.last_error.to_json() if self.last_error else None,
            "correlation_id": self.correlation_id,
            "schedule": self.schedule.to_json() if self.schedule else None,
            "concurrency_key": self.concurrency_key,
        }


@attrs.frozen(kw_only=True)
class Attempt:
    job_id: UUID
    attempt: int
    worker: str
    started_at: datetime
    """Store time of the claim."""
    lease_expires_at: datetime
    """The lease's expiry when the attempt ended (or as claimed, while it runs)."""
    finished_at: datetime | None = None
    outcome: Outcome = Outcome.RUNNING
    error: ErrorInfo | None = None

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return seconds_between(self.started_at, self.finished_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "worker": self.worker,
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at) if self.finished_at else None,
            "outcome": self.outcome.value,
            "error": self.error.to_json(with_traceback=True) if self.error else None,
            "duration_seconds": self.duration_s,
        }


@attrs.frozen(kw_only=True)
class NewJob:
    """A validated submission with its id chosen, ready for `JobStore.enqueue`.

    Exactly one of `run_at` and `delay_s` may be set; with neither, the job is due at
    once. `delay_s` is added to the *store's* clock, never the caller's.
    """

    id: UUID
    task: str
    args: JsonObject
    queue: str
    priority: int
    run_at: datetime | None
    delay_s: float | None
    max_attempts: int
    backoff: RetryPolicy
    timeout_s: float | None
    idempotency_key: str | None
    depends_on: tuple[UUID, ...]
    correlation_id: str | None
    fingerprint: str | None
    """What tells a replay of an idempotency key from a conflict: set exactly when
    `idempotency_key` is (nothing else compares it)."""
    trace_context: Mapping[str, str] | None = None
    schedule: FireId | None = None
    """The schedule fire this job is (only a scheduler's pass sets it)."""
    concurrency_key: str | None = None

    def __attrs_post_init__(self) -> None:
        assert self.run_at is None or self.delay_s is None, "run_at and delay_s exclude each other"
        assert (self.fingerprint is None) == (self.idempotency_key is None), (
            "a fingerprint goes with an idempotency key"
        )


@attrs.frozen(kw_only=True)
class Enqueued:
    job: Job
    created: bool
    """False when the idempotency key matched an existing job with the same body."""


@attrs.frozen(kw_only=True)
class QueueInfo:
    name: str
    paused: bool
    counts: Mapping[JobState, int]
    oldest_queued_age_s: float | None
    limits: QueueLimits = attrs.field(factory=QueueLimits)
    """None of them when the queue has no settings."""
    usage: QueueUsage = attrs.field(factory=lambda: QueueUsage(running=0, started_in_window=None))


@attrs.frozen(kw_only=True)
class DeadGroup:
    """Dead jobs of one task and error type (None: the job has no error recorded)."""

    task: str
    error_type: str | None
    count: int
    newest: Job


@attrs.frozen(kw_only=True)
class OutcomeBucket:
    """What ended in one slice of time: jobs that succeeded, jobs that went dead, and
    attempts charged to a job's budget (`transitions.charged`)."""

    start: datetime
    succeeded: int
    dead: int
    failed_attempts: int


@attrs.frozen(kw_only=True)
class Stats:
    window_s: float
    succeeded: int
    dead: int
    failed_attempts: int
    throughput_per_s: float
    run_s_p50: float | None
    run_s_p95: float | None


RUN_S_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
)  # fmt: skip
"""The run-time histogram's bounds in seconds (the `taskyard_attempt_run_seconds` buckets).
A SQL store keeps its attempt totals as counters over this ladder (its `run_s_ladder`
table holds the same numbers), so a histogram is asked for with bounds among these."""


@attrs.frozen(kw_only=True)
class AttemptTotals:
    """Attempts so far by outcome, and a cumulative histogram of reported run times.

    `run_s_counts[i]` is the number of reported attempts that ran at most
    `run_s_buckets[i]` seconds; `run_s_count` and `run_s_sum_s` cover all of them (the
    Prometheus `+Inf` bucket, count and sum).
    """

    by_outcome: Mapping[Outcome, int]
    run_s_buckets: tuple[float, ...]
    run_s_counts: tuple[int, ...]
    run_s_count: int
    run_s_sum_s: float

    def __attrs_post_init__(self) -> None:
        assert len(self.run_s_buckets) == len(self.run_s_counts), "one count per bucket"
        assert list(self.run_s_buckets) == sorted(self.run_s_buckets), "buckets ascend"
        assert all(a <= b for a, b in zip(self.run_s_counts, self.run_s_counts[1:], strict=False))
        assert not self.run_s_counts or self.run_s_counts[-1] <= self.run_s_count


def claim_order_key(job: Job) -> tuple[int, datetime, UUID]:
    """Within a queue: higher priority first, then earlier `run_at`, then the older id."""
    return (-job.priority, job.run_at, job.id)
