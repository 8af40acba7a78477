"""Claim ahead within a bound (`WorkerConfig.prefetch`): a worker holds up to `prefetch`
claimed jobs per lane waiting for a slot. A freed slot takes the next one without a store
call; a held job is leased and heartbeated, counts as the worker's, and goes back to the
queue when it waited `prefetch_hold_s` (a slow handler holds no job hostage), when the
worker stops, or when a cancel is requested. `prefetch=0` is the worker without it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from uuid import UUID

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.context import CancelReason, HandlerResult, JobContext, TaskSpec
from taskyard.domain.model import Job, JobState, LeaseRef, Outcome
from taskyard.domain.ports import ClaimRequest, LeaseStatus, ReportResult
from taskyard.domain.transitions import Report, ReportKind
from taskyard.domain.worker import Worker, WorkerConfig
from tests.factories import enqueue_many


class Registry:
    def names(self) -> frozenset[str]:
        return frozenset({"work"})

    def get(self, name: str) -> TaskSpec | None:
        return TaskSpec(name=name, handler=lambda: None) if name == "work" else None


class Recording(InMemoryJobStore):
    """The in-memory store, writing each worker call into a shared log."""

    def __init__(self, clock: ManualClock, log: list[str]) -> None:
        super().__init__(clock)
        self.log = log
        self.claims: list[int] = []
        self.claimed: list[UUID] = []
        """The jobs claimed, in the order the claims returned them."""

    def claim(self, request: ClaimRequest) -> list[Job]:
        self.claims.append(request.limit)
        jobs = super().claim(request)
        self.claimed += [job.id for job in jobs]
        self.log.append(f"claim {len(jobs)}")
        return jobs

    def report(self, reports: Sequence[Report]) -> list[ReportResult]:
        self.log.append(f"report {len(reports)}")
        return super().report(reports)

    def release(self, refs: Sequence[LeaseRef]) -> list[ReportResult]:
        self.log.append(f"release {len(refs)}")
        return super().release(refs)

    def heartbeat(self, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
        self.log.append(f"heartbeat {len(refs)}")
        return super().heartbeat(refs, lease_ttl_s=lease_ttl_s)


class Slots:
    """Starts handlers that run until the test finishes them."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.started: list[tuple[Job, JobContext]] = []

    def start(self, job: Job, context: JobContext) -> None:
        self.log.append(f"start {job.id}")
        self.started.append((job, context))

    def ids(self) -> list[UUID]:
        return [job.id for job, _ in self.started]


def _world(
    *, jobs: int, slots: int, prefetch: int, lease_ttl_s: float = 10.0, worker_id: str = "w1"
) -> tuple[ManualClock, Recording, Slots, Worker, list[UUID]]:
    clock = ManualClock()
    log: list[str] = []
    store = Recording(clock, log)
    ids = [e.job.id for e in enqueue_many(store, jobs, task="work")]
    executor = Slots(log)
    return (
        clock,
        store,
        executor,
        _worker(store, clock, executor, slots, prefetch, worker_id, lease_ttl_s),
        ids,
    )


def _in_claim_order(store: Recording, ids: list[UUID]) -> list[UUID]:
    """`ids`, those claimed so far first, in the order their claims returned them."""
    return store.claimed + [i for i in ids if i not in store.claimed]


def _worker(
    store: InMemoryJobStore,
    clock: ManualClock,
    executor: Slots,
    slots: int,
    prefetch: int,
    worker_id: str = "w1",
    lease_ttl_s: float = 10.0,
) -> Worker:
    return Worker(
        store=store,
        coordinator=None,
        clock=clock,
        rng=random.Random(0),
        registry=Registry(),
        executor=executor,
        config=WorkerConfig(
            worker_id=worker_id,
            concurrency=slots,
            prefetch=prefetch,
            lease_ttl_s=lease_ttl_s,
        ),
    )


def _finish(worker: Worker, context: JobContext) -> None:
    worker.handler_finished(HandlerResult(ref=context.ref, kind=ReportKind.SUCCEEDED))


def test_a_freed_slot_takes_a_buffered_job_without_a_claim() -> None:
    _clock, store, executor, worker, ids = _world(jobs=6, slots=1, prefetch=2)
    worker.tick()
    ids = _in_claim_order(store, ids)
    assert store.claims == [3], "a claim asks for the free slot plus the buffer's room"
    assert executor.ids() == ids[:1]
    # The buffered jobs are leased to this worker and listed as its jobs.
    for job_id in ids[:3]:
        job = store.get(job_id)
        assert job.state is JobState.RUNNING
        assert job.lease is not None and job.lease.worker == "w1"
    assert worker.running_job_ids() == tuple(sorted(ids[:3]))
    assert not worker.idle

    store.log.clear()
    _finish(worker, executor.started[0][1])
    worker.tick()
    assert executor.ids() == ids[:2]
    assert store.log[0] == f"start {ids[1]}", "the slot took its job before any store call"
    assert store.log[1:] == ["report 1", "claim 1"], "then the buffer is topped up"
    assert store.get(ids[0]).state is JobState.SUCCEEDED


def test_buffered_leases_are_heartbeated_with_the_running_ones() -> None:
    clock = ManualClock()
    store = Recording(clock, [])
    enqueue_many(store, 3, task="work")
    config = WorkerConfig(
        worker_id="w1", concurrency=1, prefetch=2, lease_ttl_s=4.0, heartbeat_interval_s=0.5
    )
    worker = Worker(
        store=store,
        coordinator=None,
        clock=clock,
        rng=random.Random(0),
        registry=Registry(),
        executor=Slots([]),
        config=config,
    )
    worker.tick()
    claimed = [store.get(i).lease for i in store.claimed]
    clock.advance(0.5)
    worker.tick()
    assert "heartbeat 3" in store.log, store.log
    for job_id, lease in zip(store.claimed, claimed, strict=True):
        job = store.get(job_id)
        assert job.state is JobState.RUNNING and job.attempt == 1
        assert lease is not None and job.lease is not None
        assert job.lease.expires_at > lease.expires_at, "extended while it waits"


def test_a_slow_job_does_not_hold_buffered_jobs_beyond_the_bound() -> None:
    # Lease TTL 4 s: a buffered job waits at most 1 s for a slot.
    clock, store, executor, worker, ids = _world(jobs=3, slots=1, prefetch=2, lease_ttl_s=4.0)
    assert worker.config.prefetch_hold_s == 1.0
    worker.tick()
    ids = _in_claim_order(store, ids)
    assert executor.ids() == ids[:1]  # the slow one: it never returns in this test
    clock.advance(0.9)
    worker.tick()
    assert all(store.get(i).state is JobState.RUNNING for i in ids[1:])
    clock.advance(0.1)
    worker.tick()
    for job_id in ids[1:]:
        job = store.get(job_id)
        assert job.state is JobState.QUEUED, "handed back at the bound"
        assert job.attempt_limit == 4, "a hand-back is not charged to the job's attempts"
        (attempt,) = store.attempts(job_id)
        assert attempt.outcome is Outcome.WORKER_LOST
    assert worker.running_job_ids() == (ids[0],)

    # This worker takes no more than its free slots (none) until its slow handler ends...
    store.log.clear()
    clock.advance(2.0)
    worker.doorbell()
    worker.tick()
    assert not any(line.startswith("claim") for line in store.log), store.log
    # ... so the jobs run elsewhere, on a worker with a free slot.
    other = Slots([])
    elsewhere = _worker(store, clock, other, slots=2, prefetch=0, worker_id="w2")
    elsewhere.tick()
    assert sorted(other.ids()) == sorted(ids[1:])
    for _, context in other.started:
        _finish(elsewhere, context)
    elsewhere.tick()
    assert all(store.get(i).state is JobState.SUCCEEDED for i in ids[1:])

    # Once its slot frees, the first worker claims ahead again.
    enqueue_many(store, 3, task="work")
    _finish(worker, executor.started[0][1])
    worker.tick()
    assert store.claims[-1] == 3


def test_stop_releases_buffered_jobs_at_once() -> None:
    _clock, store, executor, worker, ids = _world(jobs=4, slots=1, prefetch=3)
    worker.tick()
    ids = _in_claim_order(store, ids)
    worker.stop_claiming()
    worker.tick()
    assert [store.get(i).state for i in ids[1:]] == [JobState.QUEUED] * 3
    assert store.get(ids[0]).state is JobState.RUNNING, "the running job may finish"
    assert not worker.idle
    _finish(worker, executor.started[0][1])
    worker.tick()
    assert store.get(ids[0]).state is JobState.SUCCEEDED
    assert worker.idle
    assert executor.ids() == ids[:1], "a stopping worker starts no buffered job"


def test_a_slot_freed_as_the_worker_stops_takes_no_buffered_job() -> None:
    _clock, store, executor, worker, ids = _world(jobs=3, slots=1, prefetch=2)
    worker.tick()
    ids = _in_claim_order(store, ids)
    worker.stop_claiming()
    _finish(worker, executor.started[0][1])
    worker.tick()
    assert executor.ids() == ids[:1]
    assert [store.get(i).state for i in ids] == [JobState.SUCCEEDED] + [JobState.QUEUED] * 2
    assert worker.idle


def test_release_unfinished_hands_back_buffered_jobs_with_the_running_ones() -> None:
    _clock, store, _executor, worker, ids = _world(jobs=3, slots=1, prefetch=2)
    worker.tick()
    ids = _in_claim_order(store, ids)
    worker.abort_running()
    assert worker.release_unfinished() == 3
    assert [store.get(i).state for i in ids] == [JobState.QUEUED] * 3
    assert worker.running_job_ids() == (ids[0],), "only the handler yet to return"


def test_a_buffered_job_whose_cancel_is_requested_is_cancelled_without_running() -> None:
    clock, store, executor, worker, ids = _world(jobs=2, slots=1, prefetch=1)
    worker.tick()
    ids = _in_claim_order(store, ids)
    store.cancel(ids[1])
    clock.advance(worker.config.heartbeat_every_s)
    worker.tick()
    assert store.get(ids[1]).state is JobState.CANCELLED
    _finish(worker, executor.started[0][1])
    worker.tick()
    assert executor.ids() == ids[:1]


def test_a_buffered_jobs_timeout_counts_from_its_handlers_start() -> None:
    clock = ManualClock()
    log: list[str] = []
    store = Recording(clock, log)
    ids = [e.job.id for e in enqueue_many(store, 2, task="work", timeout_s=1.0)]
    executor = Slots(log)
    worker = _worker(store, clock, executor, slots=1, prefetch=1, lease_ttl_s=8.0)
    worker.tick()
    ids = _in_claim_order(store, ids)
    clock.advance(0.8)
    _finish(worker, executor.started[0][1])
    worker.tick()  # the buffered job starts 0.8 s after its claim
    assert executor.ids() == ids
    second = executor.started[1][1]
    clock.advance(0.9)  # 1.7 s after the claim, 0.9 s after the start
    worker.tick()
    assert not second.cancelled
    assert store.get(ids[1]).state is JobState.RUNNING
    clock.advance(0.1)
    worker.tick()
    assert second.cancel_reason is CancelReason.TIMEOUT
    (attempt,) = store.attempts(ids[1])
    assert attempt.outcome is Outcome.TIMEOUT


def test_prefetch_0_claims_only_for_free_slots() -> None:
    _clock, store, executor, worker, ids = _world(jobs=5, slots=2, prefetch=0)
    worker.tick()
    ids = _in_claim_order(store, ids)
    assert store.claims == [2]
    assert worker.running_job_ids() == tuple(sorted(ids[:2]))
    assert [store.get(i).state for i in ids[2:]] == [JobState.QUEUED] * 3
    _finish(worker, executor.started[0][1])
    worker.tick()
    assert store.claims == [2, 1]
    assert store.log[-2:] == ["claim 1", f"start {store.claimed[2]}"], "claimed, then started"
    worker.stop_claiming()
    worker.tick()
    assert not any(line.startswith("release") for line in store.log)
