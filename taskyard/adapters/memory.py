"""In-memory adapters: a real `JobStore` and `Coordinator`, safe under threads.

They serve users' unit tests (`taskyard.testing`), the `memory://` URL, and the
simulator, which wraps them with fault injection. Every transition goes through the
pure functions of `taskyard.domain.transitions`; the store only looks jobs up, keeps
its indexes, and keeps an optional history of every step for the simulator's checker.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from uuid import UUID

import attrs

from taskyard.domain import transitions as t
from taskyard.domain.errors import (
    IdempotencyConflict,
    JobNotFound,
    Refusal,
    UnknownDependency,
)
from taskyard.domain.model import (
    REPORTED_OUTCOMES,
    Attempt,
    AttemptTotals,
    Enqueued,
    Job,
    JobState,
    LeaseRef,
    NewJob,
    Outcome,
    QueueInfo,
    Stats,
    claim_order_key,
)
from taskyard.domain.ports import (
    ClaimRequest,
    Clock,
    Heard,
    JobFilter,
    JobPage,
    JobQuery,
    Leadership,
    LeaseStatus,
    Promoted,
    ReportResult,
    ReportStatus,
    SchedulerInfo,
    WorkerInfo,
)
from taskyard.domain.timefmt import after, seconds_between

S = JobState
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


class MemoryState:
    """The data of an in-memory store. Several `InMemoryJobStore` views may share one (the
    simulator gives each node its own view with its own fault injection)."""

    def __init__(self, *, keep_history: bool = False) -> None:
        self.lock = threading.RLock()
        self.jobs: dict[UUID, Job] = {}
        self.attempts: dict[UUID, list[Attempt]] = {}
        self.by_state: dict[JobState, set[UUID]] = {state: set() for state in JobState}
        self.idempotency: dict[str, UUID] = {}
        self.dependents: dict[UUID, set[UUID]] = defaultdict(set)
        self.paused: set[str] = set()
        self.history: list[Recorded] | None = [] if keep_history else None


def _matches(job: Job, job_filter: JobFilter) -> bool:
    return (
        (not job_filter.states or job.state in job_filter.states)
        and (not job_filter.queues or job.queue in job_filter.queues)
        and (not job_filter.tasks or job.task in job_filter.tasks)
    )


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class InMemoryJobStore:
    def __init__(self, clock: Clock, *, state: MemoryState | None = None) -> None:
        self._clock = clock
        self._s = state if state is not None else MemoryState()

    @property
    def state(self) -> MemoryState:
        return self._s

    @property
    def history(self) -> list[Recorded]:
        assert self._s.history is not None, "this store keeps no history"
        return self._s.history

    def now(self) -> datetime:
        return self._clock.now()

    # --- internal -----------------------------------------------------------------------

    def _get(self, job_id: UUID) -> Job:
        job = self._s.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _attempt(self, job_id: UUID, number: int) -> Attempt | None:
        for record in reversed(self._s.attempts.get(job_id, ())):
            if record.attempt == number:
                return record
        return None

    def _put_attempt(self, record: Attempt) -> None:
        records = self._s.attempts.setdefault(record.job_id, [])
        for index in range(len(records) - 1, -1, -1):
            if records[index].attempt == record.attempt:
                records[index] = record
                return
        records.append(record)

    def _write(self, job: Job, before: Job | None) -> None:
        if before is not None:
            current = self._s.jobs[job.id]
            # The compare-and-set every adapter performs: (id, state, attempt) unchanged.
            assert (current.state, current.attempt) == (before.state, before.attempt)
            self._s.by_state[before.state].discard(job.id)
        self._s.jobs[job.id] = job
        self._s.by_state[job.state].add(job.id)

    def _record(
        self,
        now: datetime,
        event: t.Event,
        before: Job | None,
        after_job: Job,
        attempt: Attempt | None,
        worker: str | None = None,
    ) -> None:
        if self._s.history is not None:
            self._s.history.append(
                Recorded(
                    at=now,
                    event=event,
                    before=before,
                    after=after_job,
                    attempt=attempt,
                    worker=worker,
                )
            )

    def _apply(self, now: datetime, step: t.Step, *, worker: str | None = None) -> Job:
        self._write(step.job, step.before)
        if step.attempt is not None:
            self._put_attempt(step.attempt)
        self._record(now, step.event, step.before, step.job, step.attempt, worker)
        return step.job

    def _dependency_states(
        self, job_ids: Iterable[UUID], extra: dict[UUID, Job] | None = None
    ) -> dict[UUID, JobState]:
        states: dict[UUID, JobState] = {}
        for dep in job_ids:
            job = (extra or {}).get(dep) or self._s.jobs.get(dep)
            assert job is not None, dep
            states[dep] = job.state
        return states

    def _sorted(self, state: JobState) -> list[Job]:
        return [self._s.jobs[i] for i in sorted(self._s.by_state[state])]

    # --- submission and reading ---------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        with self._s.lock:
            now = self.now()
            pending: dict[UUID, Job] = {}
            keys: dict[str, Job] = {}
            out: list[Enqueued] = []
            for new in jobs:
                if new.idempotency_key is not None:
                    existing = keys.get(new.idempotency_key)
                    if existing is None and new.idempotency_key in self._s.idempotency:
                        existing = self._s.jobs[self._s.idempotency[new.idempotency_key]]
                    if existing is not None:
                        if existing.fingerprint != new.fingerprint:
                            raise IdempotencyConflict(
                                new.idempotency_key, None if existing.id in pending else existing.id
                            )
                        out.append(Enqueued(job=existing, created=False))
                        continue
                for dep in new.depends_on:
                    if dep not in self._s.jobs and dep not in pending:
                        raise UnknownDependency(dep)
                assert new.id not in self._s.jobs and new.id not in pending, new.id
                job = t.create(
                    new, now=now, dependency_states=self._dependency_states(new.depends_on, pending)
                )
                pending[job.id] = job
                if new.idempotency_key is not None:
                    keys[new.idempotency_key] = job
                out.append(Enqueued(job=job, created=True))
            for job in pending.values():
                self._write(job, None)
                self._s.attempts[job.id] = []
                for dep in job.depends_on:
                    self._s.dependents[dep].add(job.id)
                if job.idempotency_key is not None:
                    self._s.idempotency[job.idempotency_key] = job.id
                self._record(now, t.Event.ENQUEUE, None, job, None)
            return out

    def get(self, job_id: UUID) -> Job:
        with self._s.lock:
            return self._get(job_id)

    def list_jobs(self, query: JobQuery) -> JobPage:
        with self._s.lock:
            rows = [job for job in self._s.jobs.values() if _matches(job, query.filter)]
        rows.sort(key=lambda job: (job.created_at, job.id), reverse=True)
        if query.cursor is not None:
            rows = [job for job in rows if (job.created_at, job.id) < query.cursor]
        page = rows[: query.limit]
        more = len(rows) > query.limit
        next_cursor = (page[-1].created_at, page[-1].id) if more and page else None
        return JobPage(jobs=page, next_cursor=next_cursor)

    def attempts(self, job_id: UUID) -> list[Attempt]:
        with self._s.lock:
            self._get(job_id)
            return sorted(self._s.attempts.get(job_id, ()), key=lambda a: a.attempt)

    # --- the worker's path --------------------------------------------------------------

    def claim(self, request: ClaimRequest) -> list[Job]:
        with self._s.lock:
            now = self.now()
            candidates = [
                job
                for job in (self._s.jobs[i] for i in self._s.by_state[S.QUEUED])
                if job.run_at <= now
                and job.queue not in self._s.paused
                and (request.queues is None or job.queue in request.queues)
                and (request.tasks is None or job.task in request.tasks)
            ]
            candidates.sort(key=claim_order_key)
            claimed: list[Job] = []
            for job in candidates[: request.limit]:
                step = t.claim(job, now=now, worker=request.worker, lease_ttl_s=request.lease_ttl_s)
                assert isinstance(step, t.Step), step
                claimed.append(self._apply(now, step, worker=request.worker))
            return claimed

    def heartbeat(self, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
        with self._s.lock:
            now = self.now()
            out: list[LeaseStatus] = []
            for ref in refs:
                job = self._s.jobs.get(ref.job_id)
                step = (
                    None if job is None else t.heartbeat(job, ref, now=now, lease_ttl_s=lease_ttl_s)
                )
                if isinstance(step, t.Step):
                    extended = self._apply(now, step, worker=ref.worker)
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
            return out

    def checkpoint(self, ref: LeaseRef, state: object) -> None:
        with self._s.lock:
            now = self.now()
            step = t.save_checkpoint(self._get(ref.job_id), ref, now=now, state=state)
            if isinstance(step, Refusal):
                raise step
            self._apply(now, step, worker=ref.worker)

    def report(self, reports: Sequence[t.Report]) -> list[ReportResult]:
        with self._s.lock:
            now = self.now()
            out: list[ReportResult] = []
            for report in reports:
                job = self._s.jobs.get(report.ref.job_id)
                if job is None:
                    out.append(ReportResult(ref=report.ref, status=ReportStatus.NOT_FOUND))
                    continue
                verdict = t.apply_report(
                    job, self._attempt(job.id, report.ref.attempt), report, now=now
                )
                if isinstance(verdict, t.Step):
                    done = self._apply(now, verdict, worker=report.ref.worker)
                    out.append(
                        ReportResult(ref=report.ref, status=ReportStatus.APPLIED, state=done.state)
                    )
                elif isinstance(verdict, t.AlreadyApplied):
                    out.append(
                        ReportResult(
                            ref=report.ref, status=ReportStatus.ALREADY_APPLIED, state=job.state
                        )
                    )
                else:
                    if verdict.attempt is not None:
                        self._put_attempt(verdict.attempt)
                    out.append(
                        ReportResult(ref=report.ref, status=ReportStatus.STALE, state=job.state)
                    )
            return out

    def release(self, refs: Sequence[LeaseRef]) -> list[ReportResult]:
        with self._s.lock:
            now = self.now()
            out: list[ReportResult] = []
            for ref in refs:
                job = self._s.jobs.get(ref.job_id)
                if job is None:
                    out.append(ReportResult(ref=ref, status=ReportStatus.NOT_FOUND))
                    continue
                step = t.release(job, self._attempt(job.id, ref.attempt), ref, now=now)
                if isinstance(step, t.Step):
                    done = self._apply(now, step, worker=ref.worker)
                    out.append(ReportResult(ref=ref, status=ReportStatus.APPLIED, state=done.state))
                else:
                    out.append(ReportResult(ref=ref, status=ReportStatus.STALE, state=job.state))
            return out

    # --- the scheduler's path -----------------------------------------------------------

    def promote_due(self, *, limit: int) -> Promoted:
        with self._s.lock:
            now = self.now()
            waiting = [
                job
                for state in (S.SCHEDULED, S.RETRYING)
                for job in (self._s.jobs[i] for i in self._s.by_state[state])
                if job.run_at <= now
            ]
            waiting.sort(key=lambda job: (job.run_at, job.id))
            by_queue: dict[str, int] = defaultdict(int)
            for job in waiting:
                if sum(by_queue.values()) >= limit:
                    break
                step = t.promote(
                    job, now=now, dependency_states=self._dependency_states(job.depends_on)
                )
                if isinstance(step, t.Step):
                    self._apply(now, step)
                    by_queue[job.queue] += 1
            return Promoted(by_queue=dict(by_queue))

    def reap_expired(self, *, limit: int) -> list[Job]:
        with self._s.lock:
            now = self.now()
            expired = [
                job
                for job in self._sorted(S.RUNNING)
                if job.lease is not None and job.lease.expires_at < now
            ]
            reaped: list[Job] = []
            for job in expired[:limit]:
                step = t.expire(job, self._attempt(job.id, job.attempt), now=now)
                assert isinstance(step, t.Step), step
                reaped.append(self._apply(now, step))
            return reaped

    def resolve_dependencies(self, *, limit: int) -> list[Job]:
        with self._s.lock:
            now = self.now()
            cancelled: list[Job] = []
            ended: set[UUID] = set()
            for job in self._sorted(S.SCHEDULED):
                if len(cancelled) >= limit:
                    break
                if not job.depends_on:
                    continue
                # Judged on the states at the start of the call, as one SQL statement sees
                # them: a job cancelled in this pass still counts as scheduled, so a chain
                # resolves one level per call.
                states = {
                    dep: S.SCHEDULED if dep in ended else state
                    for dep, state in self._dependency_states(job.depends_on).items()
                }
                step = t.fail_dependency(job, now=now, dependency_states=states)
                if isinstance(step, t.Step):
                    cancelled.append(self._apply(now, step))
                    ended.add(job.id)
            return cancelled

    def next_wakeup(self) -> datetime | None:
        with self._s.lock:
            now = self.now()
            moments = [
                self._s.jobs[i].run_at
                for state in (S.SCHEDULED, S.RETRYING)
                for i in self._s.by_state[state]
            ]
            moments.extend(
                lease.expires_at + t.REAPABLE_AFTER
                for i in self._s.by_state[S.RUNNING]
                if (lease := self._s.jobs[i].lease) is not None
            )
            ahead = [moment for moment in moments if moment > now]
            return min(ahead) if ahead else None

    # --- a person's path ----------------------------------------------------------------

    def _change(self, job_id: UUID, decide: Callable[[Job, datetime], t.Step | Refusal]) -> Job:
        with self._s.lock:
            now = self.now()
            step = decide(self._get(job_id), now)
            if isinstance(step, Refusal):
                raise step
            if step.job == step.before:
                return step.job
            return self._apply(now, step)

    def cancel(self, job_id: UUID) -> Job:
        return self._change(job_id, lambda job, now: t.cancel(job, now=now))

    def retry(self, job_id: UUID) -> Job:
        return self._change(
            job_id,
            lambda job, now: t.retry(
                job, now=now, dependency_states=self._dependency_states(job.depends_on)
            ),
        )

    def reschedule(
        self, job_id: UUID, *, priority: int | None = None, run_at: datetime | None = None
    ) -> Job:
        return self._change(
            job_id, lambda job, now: t.reschedule(job, now=now, priority=priority, run_at=run_at)
        )

    def _change_many(
        self, job_filter: JobFilter, states: frozenset[JobState], change: Callable[[UUID], Job]
    ) -> int:
        with self._s.lock:
            ids = sorted(
                job.id
                for job in self._s.jobs.values()
                if job.state in states and _matches(job, job_filter)
            )
            count = 0
            for job_id in ids:
                before = self._s.jobs[job_id]
                if change(job_id) != before:
                    count += 1
            return count

    def cancel_many(self, job_filter: JobFilter) -> int:
        active = frozenset({S.SCHEDULED, S.QUEUED, S.RUNNING, S.RETRYING})
        return self._change_many(job_filter, active, self.cancel)

    def retry_many(self, job_filter: JobFilter) -> int:
        return self._change_many(job_filter, frozenset({S.DEAD, S.CANCELLED}), self.retry)

    def set_paused(self, queue: str, *, paused: bool) -> None:
        with self._s.lock:
            if paused:
                self._s.paused.add(queue)
            else:
                self._s.paused.discard(queue)

    def queues(self) -> list[QueueInfo]:
        with self._s.lock:
            now = self.now()
            counts: dict[str, dict[JobState, int]] = defaultdict(lambda: defaultdict(int))
            oldest: dict[str, datetime] = {}
            for job in self._s.jobs.values():
                counts[job.queue][job.state] += 1
                if job.state is S.QUEUED and (
                    job.queue not in oldest or job.run_at < oldest[job.queue]
                ):
                    oldest[job.queue] = job.run_at
            names = sorted(set(counts) | self._s.paused)
            return [
                QueueInfo(
                    name=name,
                    paused=name in self._s.paused,
                    counts={state: counts[name].get(state, 0) for state in JobState},
                    oldest_queued_age_s=(
                        max(0.0, seconds_between(oldest[name], now)) if name in oldest else None
                    ),
                )
                for name in names
            ]

    def stats(self, *, window_s: float) -> Stats:
        with self._s.lock:
            now = self.now()
            since = after(now, -window_s)
            succeeded = dead = failed = 0
            durations: list[float] = []
            for job in self._s.jobs.values():
                if job.finished_at is not None and job.finished_at >= since:
                    succeeded += job.state is S.SUCCEEDED
                    dead += job.state is S.DEAD
            for records in self._s.attempts.values():
                for record in records:
                    if record.finished_at is None or record.finished_at < since:
                        continue
                    failed += t.charged_failure(record)
                    if record.outcome is Outcome.SUCCEEDED and record.duration_s is not None:
                        durations.append(record.duration_s)
            return Stats(
                window_s=window_s,
                succeeded=succeeded,
                dead=dead,
                failed_attempts=failed,
                throughput_per_s=(succeeded + dead) / window_s,
                run_s_p50=_percentile(durations, 0.5),
                run_s_p95=_percentile(durations, 0.95),
            )

    def attempt_totals(self, *, run_s_buckets: Sequence[float]) -> AttemptTotals:
        bounds = tuple(float(b) for b in run_s_buckets)
        with self._s.lock:
            records = [r for rs in self._s.attempts.values() for r in rs]
        by_outcome = dict.fromkeys(Outcome, 0)
        durations: list[float] = []
        for record in records:
            by_outcome[record.outcome] += 1
            if record.outcome in REPORTED_OUTCOMES and record.duration_s is not None:
                durations.append(record.duration_s)
        return AttemptTotals(
            by_outcome=by_outcome,
            run_s_buckets=bounds,
            run_s_counts=tuple(sum(1 for d in durations if d <= bound) for bound in bounds),
            run_s_count=len(durations),
            run_s_sum_s=sum(durations),
        )


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
            self._any_generation += 1
            self._lock.notify_all()

    def _take_pending(self, queues: Sequence[str] | None) -> bool:
        if queues is None:
            rung = bool(self._pending)
            self._pending.clear()
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
