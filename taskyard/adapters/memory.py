"""In-memory adapters: a real `JobStore` and `Coordinator`, safe under threads.

They serve users' unit tests (`taskyard.testing`), the `memory://` URL, and the
simulator, which wraps them with fault injection. The store is the domain's
`StoreEngine` over dictionaries: a transaction holds one lock, and each write can be kept
in a history of every step for the simulator's checker.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID

import attrs

from taskyard.domain import transitions as t
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.flow import Headroom, QueueLimits, Start, proposed
from taskyard.domain.model import (
    Attempt,
    Job,
    JobState,
    Outcome,
    claim_order_key,
)
from taskyard.domain.ports import (
    SCHEDULER_BELL,
    ClaimRequest,
    Clock,
    Heard,
    JobFilter,
    JobQuery,
    Leadership,
    SchedulerInfo,
    WorkerInfo,
)
from taskyard.domain.retention import Periods, Prunable
from taskyard.domain.schedules import Schedule
from taskyard.domain.store import Changes, Rows, StoreEngine, plans
from taskyard.domain.store.rows import (
    JobCount,
    OutcomeCount,
    Promotable,
    QueueSettings,
    Running,
    RunTimes,
)
from taskyard.domain.timefmt import after

T = TypeVar("T")
FINISHED_KEPT = 1000
"""How many announcements of finished jobs the in-memory coordinator keeps."""


@attrs.frozen(kw_only=True)
class Recorded:
    """One change the store committed, at store time `at`, for the simulator's checker."""

    at: datetime
    event: t.Event
    before: Job | None
    after: Job
    attempt: Attempt | None
    worker: str | None = None
    """For worker writes (heartbeat, checkpoint, report, release): the writer."""


@attrs.frozen(kw_only=True)
class Pruned:
    """A job a prune deleted at store time `at`, as it was, with its attempt records."""

    at: datetime
    job: Job
    attempts: tuple[Attempt, ...]


class MemoryState:
    """The data of an in-memory store. Several `InMemoryJobStore` views may share one (the
    simulator gives each node its own view with its own fault injection)."""

    def __init__(self, *, keep_history: bool = False) -> None:
        self.lock = threading.RLock()
        self.jobs: dict[UUID, Job] = {}
        self.attempts: dict[UUID, list[Attempt]] = {}
        self.by_state: dict[JobState, set[UUID]] = {state: set() for state in JobState}
        self.idempotency: dict[str, UUID] = {}
        self.paused: set[str] = set()
        self.tasks: dict[str, TaskInfo] = {}
        self.retention: dict[str, dict[JobState, int]] = {}
        self.schedules: dict[str, Schedule] = {}
        self.settings: dict[str, QueueSettings] = {}
        self.starts: dict[str, list[Start]] = {}
        """Each rate-limited queue's starts log (one longest period of it)."""
        self.history: list[Recorded] | None = [] if keep_history else None
        self.pruned: list[Pruned] | None = [] if keep_history else None
        """With a history: every job deleted by a prune, as it was, in order."""
        self.pruned_attempts: list[Attempt] = []
        """The attempt records of pruned jobs: the totals count every attempt since the
        store began, as the SQL stores' counters do."""


def _matches(job: Job, job_filter: JobFilter) -> bool:
    return (
        (not job_filter.states or job.state in job_filter.states)
        and (not job_filter.queues or job.queue in job_filter.queues)
        and (not job_filter.tasks or job.task in job_filter.tasks)
    )


def _error_type(job: Job) -> str | None:
    return job.last_error.type if job.last_error is not None else None


def _bucket(moment: datetime, since: datetime, bucket_s: float, buckets: int) -> int:
    return min(buckets - 1, int((moment - since).total_seconds() // bucket_s))


class MemoryRows:
    """`Rows` over a `MemoryState` whose lock the caller holds."""

    def __init__(self, state: MemoryState, now: datetime) -> None:
        self._s = state
        self._now = now

    def now(self) -> datetime:
        return self._now

    def _in(self, states: Collection[JobState]) -> list[Job]:
        """The jobs in `states`, in id order."""
        return [self._s.jobs[i] for i in sorted(i for s in states for i in self._s.by_state[s])]

    def _records(self) -> list[Attempt]:
        return [record for records in self._s.attempts.values() for record in records]

    def _record(self, job_id: UUID, number: int) -> Attempt | None:
        for record in reversed(self._s.attempts.get(job_id, ())):
            if record.attempt == number:
                return record
        return None

    # --- loading by key -------------------------------------------------------------------

    def jobs(self, ids: Collection[UUID]) -> list[Job]:
        return [self._s.jobs[i] for i in sorted(set(ids)) if i in self._s.jobs]

    def attempt_records(self, keys: Collection[tuple[UUID, int]]) -> list[Attempt]:
        found = (self._record(job_id, number) for job_id, number in keys)
        return [record for record in found if record is not None]

    def keyed(self, keys: Collection[str]) -> list[Job]:
        return [self._s.jobs[self._s.idempotency[k]] for k in keys if k in self._s.idempotency]

    def states(self, ids: Collection[UUID]) -> dict[UUID, JobState]:
        return {i: self._s.jobs[i].state for i in ids if i in self._s.jobs}

    # --- candidates -----------------------------------------------------------------------

    def _due(self, request: ClaimRequest, state: JobState, now: datetime) -> list[Job]:
        return [
            job
            for job in self._in([state])
            if job.run_at <= now
            and job.queue not in self._s.paused
            and (request.queues is None or job.queue in request.queues)
            and (request.tasks is None or job.task in request.tasks)
        ]

    def claimable(
        self,
        request: ClaimRequest,
        *,
        state: JobState,
        now: datetime,
        other_than: Collection[str] = (),
    ) -> list[Job]:
        skip = set(other_than)
        found = [job for job in self._due(request, state, now) if job.queue not in skip]
        return sorted(found, key=claim_order_key)[: request.limit]

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
        found = [job for job in self._due(request, state, now) if job.queue == queue]
        return proposed(found, room, after=after, limit=limit)

    def promotable(self, rule: Promotable, *, now: datetime, limit: int) -> list[Job]:
        """Here the rule itself picks (a variant of it under test picks what it would)."""
        due = sorted(
            (j for j in self._in(rule.states) if j.run_at <= now), key=lambda j: (j.run_at, j.id)
        )
        found = (
            job
            for job in due
            if isinstance(
                t.promote(job, now=now, dependency_states=self.states(job.depends_on)), t.Step
            )
        )
        return [job for job, _ in zip(found, range(limit), strict=False)]

    def expired(self, *, state: JobState, now: datetime, limit: int) -> list[Job]:
        found = (j for j in self._in([state]) if j.lease is not None and j.lease.expires_at < now)
        return [job for job, _ in zip(found, range(limit), strict=False)]

    def blocked(self, *, state: JobState, failed: Collection[JobState], limit: int) -> list[Job]:
        found = (
            job
            for job in self._in([state])
            if any(s in failed for s in self.states(job.depends_on).values())
        )
        return [job for job, _ in zip(found, range(limit), strict=False)]

    def matching(self, job_filter: JobFilter, *, states: Collection[JobState]) -> list[Job]:
        return [job for job in self._in(states) if _matches(job, job_filter)]

    def prunable(self, rule: Prunable, *, limit: int) -> list[Job]:
        depended_on = {dep for job in self._s.jobs.values() for dep in job.depends_on}
        found = [
            job
            for job in self._in([rule.state])
            if job.id not in depended_on
            and rule.takes(state=job.state, finished_at=job.finished_at, queue=job.queue)
        ]
        found.sort(key=lambda job: (job.finished_at or job.created_at, job.id))
        return found[:limit]

    # --- writing --------------------------------------------------------------------------

    def delete(self, jobs: Sequence[Job]) -> None:
        s = self._s
        for job in jobs:
            current = s.jobs.pop(job.id)
            assert (current.state, current.attempt) == (job.state, job.attempt)
            s.by_state[current.state].discard(current.id)
            records = s.attempts.pop(current.id, [])
            s.pruned_attempts.extend(records)
            key = current.idempotency_key
            if key is not None and s.idempotency.get(key) == current.id:
                del s.idempotency[key]
            if s.pruned is not None:
                s.pruned.append(Pruned(at=self._now, job=current, attempts=tuple(records)))

    def set_retention(self, queue: str, periods: Periods) -> None:
        if periods:
            self._s.retention[queue] = dict(periods)
        else:
            self._s.retention.pop(queue, None)

    def write(self, changes: Changes) -> None:
        s = self._s
        for job in changes.created:
            assert job.id not in s.jobs, job.id
            s.jobs[job.id] = job
            s.by_state[job.state].add(job.id)
            s.attempts[job.id] = []
            if job.idempotency_key is not None:
                s.idempotency[job.idempotency_key] = job.id
            self._remember(
                Recorded(at=changes.at, event=t.Event.ENQUEUE, before=None, after=job, attempt=None)
            )
        for w in changes.updated:
            current = s.jobs[w.before.id]
            # The compare-and-set every adapter performs: (id, state, attempt) unchanged.
            assert (current.state, current.attempt) == (w.before.state, w.before.attempt)
            s.by_state[current.state].discard(current.id)
            s.jobs[current.id] = w.after
            s.by_state[w.after.state].add(current.id)
        for record in changes.attempts:
            records = s.attempts.setdefault(record.job_id, [])
            index = next((i for i, r in enumerate(records) if r.attempt == record.attempt), None)
            if index is None:
                records.append(record)
            elif records[index].outcome is plans.OPEN:
                records[index] = record
        for applied in changes.steps:
            step = applied.step
            self._remember(
                Recorded(
                    at=changes.at,
                    event=step.event,
                    before=step.before,
                    after=step.job,
                    attempt=step.attempt,
                    worker=applied.worker,
                )
            )

    def _remember(self, record: Recorded) -> None:
        if self._s.history is not None:
            self._s.history.append(record)

    def set_paused(self, queue: str, *, paused: bool) -> None:
        if paused:
            self._s.paused.add(queue)
        else:
            self._s.paused.discard(queue)

    def put_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        if limits.governed:
            old = self._s.settings.get(queue)
            self._s.settings[queue] = QueueSettings(
                limits=limits, turn_after=old.turn_after if old is not None else None
            )
        else:
            self._s.settings.pop(queue, None)
            self._s.starts.pop(queue, None)

    def set_turns(self, turns: Mapping[str, str]) -> None:
        for queue, key in turns.items():
            self._s.settings[queue] = attrs.evolve(self._s.settings[queue], turn_after=key)

    def record_starts(self, queue: str, starts: Sequence[Start], *, keep_after: datetime) -> None:
        kept = [s for s in self._s.starts.get(queue, ()) if s.at > keep_after]
        self._s.starts[queue] = kept + list(starts)

    def put_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        self._s.tasks.update((task.name, task) for task in tasks)

    def put_schedules(self, schedules: Sequence[Schedule]) -> None:
        self._s.schedules.update((schedule.name, schedule) for schedule in schedules)

    def delete_schedule(self, name: str) -> bool:
        return self._s.schedules.pop(name, None) is not None

    def due_schedules(self, *, now: datetime, limit: int) -> list[Schedule]:
        due = [s for s in self._s.schedules.values() if not s.paused and s.next_fire_at <= now]
        return sorted(due, key=lambda s: (s.next_fire_at, s.name))[:limit]

    def schedule_rows(self, names: Collection[str] | None = None) -> list[Schedule]:
        if names is None:
            return list(self._s.schedules.values())
        return [self._s.schedules[name] for name in names if name in self._s.schedules]

    # --- reading --------------------------------------------------------------------------

    def page(self, query: JobQuery) -> list[Job]:
        found = [job for job in self._s.jobs.values() if _matches(job, query.filter)]
        found.sort(key=lambda job: (job.created_at, job.id), reverse=True)
        if query.cursor is not None:
            found = [job for job in found if (job.created_at, job.id) < query.cursor]
        return found[: query.limit + 1]

    def job_attempts(self, job_id: UUID) -> list[Attempt] | None:
        if job_id not in self._s.jobs:
            return None
        return sorted(self._s.attempts.get(job_id, ()), key=lambda a: a.attempt)

    def earliest_run_at(self, *, states: Collection[JobState], after: datetime) -> datetime | None:
        return min((j.run_at for j in self._in(states) if j.run_at > after), default=None)

    def earliest_expiry(self, *, state: JobState, after: datetime) -> datetime | None:
        leases = (j.lease.expires_at for j in self._in([state]) if j.lease is not None)
        return min((moment for moment in leases if moment > after), default=None)

    def earliest_fire_at(self, *, after: datetime) -> datetime | None:
        fires = (s.next_fire_at for s in self._s.schedules.values() if not s.paused)
        return min((moment for moment in fires if moment > after), default=None)

    def job_counts(self) -> list[JobCount]:
        groups: dict[tuple[str, str, JobState, str | None], int] = defaultdict(int)
        for job in self._s.jobs.values():
            groups[job.queue, job.task, job.state, _error_type(job)] += 1
        return [
            JobCount(queue=queue, task=task, state=state, error_type=error_type, count=count)
            for (queue, task, state, error_type), count in groups.items()
        ]

    def earliest_run_at_by_queue(self, *, state: JobState) -> dict[str, datetime]:
        earliest: dict[str, datetime] = {}
        for job in self._in([state]):
            if job.queue not in earliest or job.run_at < earliest[job.queue]:
                earliest[job.queue] = job.run_at
        return earliest

    def error_ids(
        self, *, state: JobState, task: str, error_type: str | None, limit: int
    ) -> list[UUID]:
        jobs = [
            job for job in self._in([state]) if job.task == task and _error_type(job) == error_type
        ]
        jobs.sort(key=lambda job: (job.created_at, job.id), reverse=True)
        return [job.id for job in jobs[:limit]]

    def dependents(self, job_id: UUID, *, limit: int) -> list[Job]:
        found = [job for job in self._s.jobs.values() if job_id in job.depends_on]
        found.sort(key=lambda job: (job.created_at, job.id))
        return found[:limit]

    def paused(self) -> set[str]:
        return set(self._s.paused)

    def queue_settings(self, queues: Collection[str] | None = None) -> dict[str, QueueSettings]:
        names = sorted(self._s.settings if queues is None else set(queues) & set(self._s.settings))
        return {name: self._s.settings[name] for name in names}

    def running(
        self, queues: Collection[str] | None, *, state: JobState, now: datetime
    ) -> list[Running]:
        wanted = None if queues is None else set(queues)
        counts: dict[tuple[str, str | None], int] = defaultdict(int)
        for job in self._in([state]):
            if (wanted is None or job.queue in wanted) and t.lease_live(job, now=now):
                counts[job.queue, job.concurrency_key] += 1
        return [
            Running(queue=q, key=k, count=n)
            for (q, k), n in sorted(counts.items(), key=lambda item: (item[0][0], item[0][1] or ""))
        ]

    def starts(self, queue: str, *, after: datetime, key: str | None = None) -> list[Start]:
        return [
            s
            for s in self._s.starts.get(queue, ())
            if s.at > after and (key is None or s.key == key)
        ]

    def retention_overrides(self) -> dict[str, dict[JobState, int]]:
        return {queue: dict(periods) for queue, periods in self._s.retention.items()}

    def task_entries(self) -> list[TaskInfo]:
        return list(self._s.tasks.values())

    def finished_counts(self, *, since: datetime) -> dict[JobState, int]:
        counts: dict[JobState, int] = defaultdict(int)
        for job in self._s.jobs.values():
            if job.finished_at is not None and job.finished_at >= since:
                counts[job.state] += 1
        return dict(counts)

    def outcome_counts(self, *, since: datetime) -> list[OutcomeCount]:
        counts: dict[tuple[Outcome, str | None], int] = defaultdict(int)
        for r in self._records():
            if r.finished_at is not None and r.finished_at >= since:
                counts[r.outcome, r.error.type if r.error else None] += 1
        return [OutcomeCount(outcome=o, error_type=e, count=n) for (o, e), n in counts.items()]

    def finished_by_bucket(
        self, *, since: datetime, bucket_s: float, buckets: int
    ) -> list[tuple[int, JobState, int]]:
        counts: dict[tuple[int, JobState], int] = defaultdict(int)
        for job in self._s.jobs.values():
            if job.finished_at is not None and job.finished_at >= since:
                counts[_bucket(job.finished_at, since, bucket_s, buckets), job.state] += 1
        return [(index, state, n) for (index, state), n in counts.items()]

    def outcomes_by_bucket(
        self, *, since: datetime, bucket_s: float, buckets: int
    ) -> list[tuple[int, OutcomeCount]]:
        counts: dict[tuple[int, Outcome, str | None], int] = defaultdict(int)
        for r in self._records():
            if r.finished_at is not None and r.finished_at >= since:
                index = _bucket(r.finished_at, since, bucket_s, buckets)
                counts[index, r.outcome, r.error.type if r.error else None] += 1
        return [
            (index, OutcomeCount(outcome=o, error_type=e, count=n))
            for (index, o, e), n in counts.items()
        ]

    def run_seconds_at(
        self, *, since: datetime, outcome: Outcome, ranks: Sequence[int]
    ) -> list[float]:
        ordered = sorted(
            r.duration_s
            for r in self._records()
            if r.outcome is outcome
            and r.finished_at is not None
            and r.finished_at >= since
            and r.duration_s is not None
        )
        return [ordered[rank] for rank in ranks]

    def run_times(self, *, bounds: Sequence[float]) -> list[RunTimes]:
        groups: dict[Outcome, list[float | None]] = defaultdict(list)
        for r in [*self._records(), *self._s.pruned_attempts]:
            groups[r.outcome].append(r.duration_s)
        out: list[RunTimes] = []
        for outcome, durations in groups.items():
            ran = [d for d in durations if d is not None]
            out.append(
                RunTimes(
                    outcome=outcome,
                    count=len(durations),
                    sum_s=sum(ran),
                    at_most=tuple(sum(1 for d in ran if d <= bound) for bound in bounds),
                )
            )
        return out


class InMemoryJobStore(StoreEngine):
    def __init__(self, clock: Clock, *, state: MemoryState | None = None) -> None:
        super().__init__(self)
        self._clock = clock
        self._s = state if state is not None else MemoryState()

    @property
    def state(self) -> MemoryState:
        return self._s

    @property
    def history(self) -> list[Recorded]:
        assert self._s.history is not None, "this store keeps no history"
        return self._s.history

    def writing(self, work: Callable[[Rows], T]) -> T:
        """A transaction holds the lock from the clock's reading to the last write."""
        with self._s.lock:
            return work(MemoryRows(self._s, self._clock.now()))

    reading = writing


# --- the coordinator ----------------------------------------------------------------------


class InMemoryCoordinator:
    """Leader lease, registries and doorbells for one process (and the simulator's base).

    Expiry is judged by the injected clock, never by the wall clock.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._leader: tuple[str, int, datetime] | None = None
        self._term = 0
        self._workers: dict[str, tuple[WorkerInfo, datetime]] = {}
        self._schedulers: dict[str, tuple[SchedulerInfo, datetime]] = {}
        self._pending: set[str] = set()
        self._generation: dict[str, int] = defaultdict(int)
        self._any_generation = 0
        self._finished: deque[tuple[int, frozenset[UUID]]] = deque(maxlen=FINISHED_KEPT)
        self._finished_seq = 0

    def forget_everything(self) -> None:
        """Lose everything at once, as a Redis FLUSHALL or a restart without persistence
        would: the leader lease, the registries, pending doorbells. The term counter is
        kept, so a term never goes backwards (the Redis adapter makes the same promise)."""
        with self._lock:
            self._leader = None
            self._workers.clear()
            self._schedulers.clear()
            self._pending.clear()
            self._finished.clear()

    def _live_leader(self, now: datetime) -> tuple[str, int, datetime] | None:
        if self._leader is not None and self._leader[2] <= now:
            self._leader = None
        return self._leader

    def campaign(self, *, candidate: str, ttl_s: float) -> Leadership | None:
        with self._lock:
            now = self._clock.now()
            current = self._live_leader(now)
            if current is not None and current[0] != candidate:
                return None
            expires_at = after(now, ttl_s)
            if current is None:
                self._term += 1
                term = self._term
            else:
                term = current[1]
            self._leader = (candidate, term, expires_at)
            return Leadership(holder=candidate, term=term, expires_at=expires_at)

    def resign(self, *, candidate: str) -> bool:
        with self._lock:
            current = self._live_leader(self._clock.now())
            if current is None or current[0] != candidate:
                return False
            self._leader = None
            return True

    def leader(self) -> Leadership | None:
        with self._lock:
            current = self._live_leader(self._clock.now())
            if current is None:
                return None
            return Leadership(holder=current[0], term=current[1], expires_at=current[2])

    def register_worker(self, info: WorkerInfo, *, ttl_s: float) -> None:
        with self._lock:
            self._workers[info.id] = (info, after(self._clock.now(), ttl_s))

    def unregister_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            now = self._clock.now()
            return [
                info
                for info, until in sorted(self._workers.values(), key=lambda w: w[0].id)
                if until > now
            ]

    def register_scheduler(self, info: SchedulerInfo, *, ttl_s: float) -> None:
        with self._lock:
            self._schedulers[info.id] = (info, after(self._clock.now(), ttl_s))

    def unregister_scheduler(self, scheduler_id: str) -> None:
        with self._lock:
            self._schedulers.pop(scheduler_id, None)

    def schedulers(self) -> list[SchedulerInfo]:
        with self._lock:
            now = self._clock.now()
            leader = self._live_leader(now)
            out = []
            for info, until in sorted(self._schedulers.values(), key=lambda s: s[0].id):
                if until <= now:
                    continue
                leads = leader is not None and leader[0] == info.id
                out.append(
                    attrs.evolve(info, leader=leads, term=leader[1] if leads and leader else None)
                )
            return out

    def ring(self, queues: Sequence[str]) -> None:
        with self._lock:
            for queue in queues:
                self._pending.add(queue)
                self._generation[queue] += 1
            if any(queue != SCHEDULER_BELL for queue in queues):
                self._any_generation += 1
            self._lock.notify_all()

    def _take_pending(self, queues: Sequence[str] | None) -> bool:
        if queues is None:
            rung = bool(self._pending - {SCHEDULER_BELL})
            self._pending.intersection_update({SCHEDULER_BELL})
            return rung
        rung = bool(self._pending.intersection(queues))
        self._pending.difference_update(queues)
        return rung

    def wait(self, queues: Sequence[str] | None, *, timeout_s: float) -> bool:
        """A ring that came while nobody waited is kept until someone does; a ring that
        comes while several wait wakes them all."""
        with self._lock:
            if self._take_pending(queues):
                return True
            start_any = self._any_generation
            start = {q: self._generation[q] for q in queues} if queues is not None else {}

            def rung() -> bool:
                if queues is None:
                    return self._any_generation != start_any
                return any(self._generation[q] != start[q] for q in queues)

            woke = self._lock.wait_for(rung, timeout=max(0.0, timeout_s))
            if woke:
                self._take_pending(queues)
            return woke

    def announce_finished(self, job_ids: Sequence[UUID]) -> None:
        if not job_ids:
            return
        with self._lock:
            self._finished_seq += 1
            self._finished.append((self._finished_seq, frozenset(job_ids)))
            self._lock.notify_all()

    def finished_mark(self) -> str:
        with self._lock:
            return str(self._finished_seq)

    def wait_finished(self, job_ids: Collection[UUID], *, after: str, timeout_s: float) -> Heard:
        """The last `FINISHED_KEPT` announcements are kept: a waiter further behind has
        missed some (and looks at the store, as after any lost announcement)."""
        wanted = frozenset(job_ids)
        seen = int(after) if after.isdigit() else 0
        heard: set[UUID] = set()

        def news() -> bool:
            nonlocal seen
            for seq, ids in self._finished:
                if seq > seen:
                    heard.update(ids & wanted)
            seen = self._finished_seq
            return bool(heard)

        with self._lock:
            self._lock.wait_for(news, timeout=max(0.0, timeout_s))
            return Heard(finished=frozenset(heard), mark=str(seen))
