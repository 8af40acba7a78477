"""The row-access port: what a store adapter supplies so that the engine can be the store.

An adapter gives transactions (`RowStore`); a transaction gives `Rows`: the store's clock,
loads by key, a few candidate queries named by intent, grouped counts, and one
conditional batch write. Nothing here decides anything: a candidate query only proposes
rows (the engine judges each with the pure transitions), and a grouped count is folded
into an answer by the domain.

Candidate queries take the states they select as arguments, so an adapter states no rule
of its own. A candidate query may propose too little (work then waits for the next call),
never something the domain would refuse: the engine asserts that.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar
from uuid import UUID

import attrs

from taskyard.domain.catalog import TaskInfo
from taskyard.domain.flow import Headroom, QueueLimits, Start
from taskyard.domain.model import Attempt, Job, JobState, Outcome
from taskyard.domain.ports import ClaimRequest, JobFilter, JobQuery
from taskyard.domain.retention import Periods, Prunable
from taskyard.domain.schedules import Schedule
from taskyard.domain.transitions import Step

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class JobWrite:
    """Write `after` where the row still has `before`'s (id, state, attempt)."""

    before: Job
    after: Job


@attrs.frozen(kw_only=True)
class Applied:
    """A step as the engine applied it, with the worker that asked for it (for a history)."""

    step: Step
    worker: str | None = None


@attrs.frozen(kw_only=True)
class Changes:
    """Everything one transaction writes, in one call.

    * `created`: new jobs (with their dependency edges), in the order they were made;
    * `updated`: one write per changed job, in id order, each conditional on its `before`;
    * `attempts`: attempt records to insert, or to close where the stored one is still
      `running` (an outcome never changes once set), in `(job_id, attempt)` order;
    * `steps`: every transition applied, in order (a store that keeps a history records
      them; the others may ignore them).
    """

    at: datetime
    created: Sequence[Job] = ()
    updated: Sequence[JobWrite] = ()
    attempts: Sequence[Attempt] = ()
    steps: Sequence[Applied] = ()

    @property
    def empty(self) -> bool:
        return not (self.created or self.updated or self.attempts or self.steps)


@attrs.frozen(kw_only=True)
class JobCount:
    """How many jobs there are of one queue, task, state and type of last error (None: no
    error recorded; a SQL store keeps an empty type as none)."""

    queue: str
    task: str
    state: JobState
    error_type: str | None
    count: int


@attrs.frozen(kw_only=True)
class OutcomeCount:
    """Attempts that ended with one outcome and one error type (None: no error)."""

    outcome: Outcome
    error_type: str | None
    count: int


@attrs.frozen(kw_only=True)
class RunTimes:
    """The attempts of one outcome: how many, the sum of their run times (finished ones),
    and how many ran at most each bound (ascending), in seconds."""

    outcome: Outcome
    count: int
    sum_s: float
    at_most: tuple[int, ...]


@attrs.frozen(kw_only=True)
class Promotable:
    """Which waiting jobs a promotion may take: those in `states` whose `run_at` has come,
    but a job in `gated` only once every job it depends on is in `gate_open`."""

    states: frozenset[JobState]
    gated: JobState
    gate_open: JobState


@attrs.frozen(kw_only=True)
class QueueSettings:
    """A queue's stored limits, and the key its last governed claim served last (its next
    claim's turns start after it)."""

    limits: QueueLimits
    turn_after: str | None = None


@attrs.frozen(kw_only=True)
class Running:
    """How many jobs of one queue and concurrency key (None: none) hold a live lease."""

    queue: str
    key: str | None
    count: int


class Rows(Protocol):
    """One transaction. In a write transaction, what `jobs`, `keyed` and the candidate
    queries return is locked until the end (in id order where several rows are), so the
    write that follows lands; in a read, it is one consistent look (or close to it)."""

    def now(self) -> datetime:
        """The store's clock, the same for the whole transaction."""
        ...

    # --- loading by key -------------------------------------------------------------------

    def jobs(self, ids: Collection[UUID]) -> list[Job]:
        """The jobs of `ids` that exist, in id order."""
        ...

    def attempt_records(self, keys: Collection[tuple[UUID, int]]) -> list[Attempt]:
        """The attempt records of `(job_id, attempt)` keys that exist."""
        ...

    def keyed(self, keys: Collection[str]) -> list[Job]:
        """The jobs that hold these idempotency keys."""
        ...

    def states(self, ids: Collection[UUID]) -> dict[UUID, JobState]:
        """The state of each job of `ids` that exists."""
        ...

    # --- candidates -----------------------------------------------------------------------

    def claimable(
        self,
        request: ClaimRequest,
        *,
        state: JobState,
        now: datetime,
        other_than: Collection[str] = (),
    ) -> list[Job]:
        """Jobs in `state` with `run_at <= now` in queues not paused, of `request.queues`
        (but none of `other_than`) and `request.tasks` (None: any), in claim order
        (`priority` descending, `run_at`, `id`), at most `request.limit`; rows another
        claimer holds are skipped."""
        ...

    def claimable_in_turns(
        self,
        request: ClaimRequest,
        queue: str,
        *,
        state: JobState,
        now: datetime,
        after: str | None,
        room: Headroom,
        limit: int,
    ) -> list[Job]:
        """Of the jobs of `queue` (not paused) that `claimable` would take, those
        `flow.proposed(..., room, after=after, limit=limit)` picks (each key's first
        `room.key_room(key)` in turns), in any order; rows another claimer holds are
        skipped."""
        ...

    def promotable(self, rule: Promotable, *, now: datetime, limit: int) -> list[Job]:
        """Jobs `rule` allows with `run_at <= now`, in `(run_at, id)` order, at most `limit`."""
        ...

    def expired(self, *, state: JobState, now: datetime, limit: int) -> list[Job]:
        """Jobs in `state` whose lease expired before `now`, in id order, at most `limit`."""
        ...

    def blocked(self, *, state: JobState, failed: Collection[JobState], limit: int) -> list[Job]:
        """Jobs in `state` that depend on a job in `failed`, in id order, at most `limit`."""
        ...

    def matching(self, job_filter: JobFilter, *, states: Collection[JobState]) -> list[Job]:
        """Jobs in `states` that `job_filter` matches, in id order."""
        ...

    def prunable(self, rule: Prunable, *, limit: int) -> list[Job]:
        """Jobs `rule` takes that no job in the store depends on, oldest `finished_at`
        first, at most `limit`; rows another transaction holds are skipped."""
        ...

    # --- writing --------------------------------------------------------------------------

    def write(self, changes: Changes) -> None:
        """Insert, update (conditionally) and upsert, as `Changes` says. In a write
        transaction every conditional write must land: the rows are held."""
        ...

    def delete(self, jobs: Sequence[Job]) -> None:
        """Delete these jobs (each held since it was read: the delete lands), their attempt
        records and their own dependency rows."""
        ...

    def set_paused(self, queue: str, *, paused: bool) -> None: ...

    def set_retention(self, queue: str, periods: Periods) -> None:
        """Replace the queue's retention override whole (empty: remove it)."""
        ...

    def put_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        """Replace the queue's limits whole; `QueueLimits()` removes its settings and its
        starts log."""
        ...

    def set_turns(self, turns: Mapping[str, str]) -> None:
        """Record, per queue (each with settings, locked), the key its claim served last."""
        ...

    def record_starts(self, queue: str, starts: Sequence[Start], *, keep_after: datetime) -> None:
        """Add `starts` to the queue's starts log and drop its starts at or before
        `keep_after` (the log holds one longest rate period at most)."""
        ...

    def put_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        """Insert each task's catalog entry, or replace the entry of the same name whole."""
        ...

    def put_schedules(self, schedules: Sequence[Schedule]) -> None:
        """Insert each schedule, or replace the one of the same name whole."""
        ...

    def delete_schedule(self, name: str) -> bool:
        """Remove the schedule `name`; False when there was none."""
        ...

    def due_schedules(self, *, now: datetime, limit: int) -> list[Schedule]:
        """Up to `limit` unpaused schedules whose next fire is at or before `now`, earliest
        first, each locked for this transaction (a SQL store skips rows another
        transaction holds: that one is firing them)."""
        ...

    def schedule_rows(self, names: Collection[str] | None = None) -> list[Schedule]:
        """The schedules of `names` (all of them for None), in any order; in a writing
        transaction each is locked until it ends."""
        ...

    # --- reading --------------------------------------------------------------------------

    def page(self, query: JobQuery) -> list[Job]:
        """Up to `query.limit + 1` jobs `query.filter` matches, newest first by
        `(created_at, id)`, after `query.cursor`."""
        ...

    def job_attempts(self, job_id: UUID) -> list[Attempt] | None:
        """The attempt records of a job, oldest first; None when there is no such job."""
        ...

    def earliest_run_at(self, *, states: Collection[JobState], after: datetime) -> datetime | None:
        """The earliest `run_at` later than `after` among jobs in `states`."""
        ...

    def earliest_expiry(self, *, state: JobState, after: datetime) -> datetime | None:
        """The earliest lease expiry later than `after` among jobs in `state`."""
        ...

    def earliest_fire_at(self, *, after: datetime) -> datetime | None:
        """The earliest next fire later than `after` among schedules not paused."""
        ...

    def job_counts(self) -> list[JobCount]:
        """Jobs grouped by `(queue, task, state, error type)`, empty groups left out. A SQL
        store keeps these as counters (triggers), so this costs the number of groups, not
        of jobs."""
        ...

    def earliest_run_at_by_queue(self, *, state: JobState) -> dict[str, datetime]:
        """The earliest `run_at` among jobs in `state`, for each queue that has any."""
        ...

    def error_ids(
        self, *, state: JobState, task: str, error_type: str | None, limit: int
    ) -> list[UUID]:
        """Up to `limit` ids of the jobs in `state` of one task and error type, newest first
        by `(created_at, id)`."""
        ...

    def dependents(self, job_id: UUID, *, limit: int) -> list[Job]:
        """Up to `limit` jobs that depend on `job_id`, oldest first by `(created_at, id)`."""
        ...

    def paused(self) -> set[str]: ...

    def queue_settings(self, queues: Collection[str] | None = None) -> dict[str, QueueSettings]:
        """The settings of `queues` that have any (None: every queue that has). In a writing
        transaction each is locked until it ends, taken in queue-name order: that lock
        serialises the claims of a governed queue."""
        ...

    def running(
        self, queues: Collection[str] | None, *, state: JobState, now: datetime
    ) -> list[Running]:
        """Jobs of `queues` (None: any) in `state` whose lease is live at `now` (expiring at
        or after it), counted by queue and concurrency key."""
        ...

    def starts(self, queue: str, *, after: datetime, key: str | None = None) -> list[Start]:
        """The queue's recorded starts later than `after` (with `key`, that key's only)."""
        ...

    def retention_overrides(self) -> dict[str, dict[JobState, int]]:
        """Every queue's retention override, by queue."""
        ...

    def task_entries(self) -> list[TaskInfo]:
        """The task catalog's entries, in any order."""
        ...

    def finished_counts(self, *, since: datetime) -> dict[JobState, int]:
        """Jobs finished at or after `since`, by state."""
        ...

    def outcome_counts(self, *, since: datetime) -> list[OutcomeCount]:
        """Attempts finished at or after `since`, grouped by outcome and error type."""
        ...

    def finished_by_bucket(
        self, *, since: datetime, bucket_s: float, buckets: int
    ) -> list[tuple[int, JobState, int]]:
        """Jobs finished at or after `since` as `(bucket, state, count)`: bucket `i` holds
        those finished in `[since + i * bucket_s, since + (i + 1) * bucket_s)`, the last
        bucket (`buckets - 1`) also any later."""
        ...

    def outcomes_by_bucket(
        self, *, since: datetime, bucket_s: float, buckets: int
    ) -> list[tuple[int, OutcomeCount]]:
        """`outcome_counts` per bucket, the buckets as `finished_by_bucket`'s."""
        ...

    def run_seconds_at(
        self, *, since: datetime, outcome: Outcome, ranks: Sequence[int]
    ) -> list[float]:
        """Among attempts with `outcome` finished at or after `since`, ordered by run time,
        the run time (seconds) at each 0-based rank."""
        ...

    def run_times(self, *, bounds: Sequence[float]) -> list[RunTimes]:
        """Every attempt recorded since the store began, grouped by outcome. A SQL store
        keeps these as counters over `RUN_S_BUCKETS` (an attempt deleted later still
        counts), so each of `bounds` must be one of them."""
        ...


class RowStore(Protocol):
    """Transactions over an adapter's rows. `work` may run more than once (a transaction the
    server rolled back whole is run again), so it must not act outside `Rows`."""

    def writing(self, work: Callable[[Rows], T]) -> T:
        """Run `work` in one write transaction: all of it commits, or none of it."""
        ...

    def reading(self, work: Callable[[Rows], T]) -> T:
        """Run `work` to read; it writes nothing."""
        ...
