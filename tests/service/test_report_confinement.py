"""A store call on the report path that fails with something other than an outage (a bug,
a value the store refuses) is confined to the outcomes it concerns: the other reports
land, the worker keeps heartbeating its other leases and keeps claiming, and the refused
outcome ends somewhere visible (a failed attempt, or a lapsed lease the scheduler reaps)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.context import HandlerResult, JobContext, TaskSpec, invoke
from taskyard.domain.model import Job, JobState, LeaseRef, Outcome
from taskyard.domain.ports import ReportResult
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.transitions import Report
from taskyard.domain.worker import REPORT_REFUSED, Worker
from tests import factories as f
from tests.factories import enqueue

LEASE_TTL_S = 10.0


class StoreBug(RuntimeError):
    """What a store raises for a value it cannot hold (psycopg's DataError, say)."""


class RefusingStore(InMemoryJobStore):
    """The in-memory store, refusing (with `StoreBug`, nothing written) every report and
    release call that carries something `refuses` picks out."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.refuses_report: Callable[[Report], bool] = lambda report: False
        self.refuses_release: Callable[[LeaseRef], bool] = lambda ref: False
        self.calls: list[int] = []

    def report(self, reports: Sequence[Report]) -> list[ReportResult]:
        self.calls.append(len(reports))
        if any(self.refuses_report(r) for r in reports):
            raise StoreBug("cannot hold this value")
        return super().report(reports)

    def release(self, refs: Sequence[LeaseRef]) -> list[ReportResult]:
        if any(self.refuses_release(ref) for ref in refs):
            raise StoreBug("cannot release this lease")
        return super().release(refs)


class Held:
    """An executor whose handlers run only when the test says so."""

    def __init__(self) -> None:
        self.started: dict[UUID, tuple[Job, JobContext]] = {}
        self.worker: Worker | None = None

    def names(self) -> frozenset[str]:
        return frozenset({"work"})

    def get(self, name: str) -> TaskSpec | None:
        return TaskSpec(name="work", handler=lambda n: {"n": n}) if name == "work" else None

    def start(self, job: Job, context: JobContext) -> None:
        self.started[job.id] = (job, context)

    def finish(self, job: Job) -> None:
        started, context = self.started.pop(job.id)
        result: HandlerResult = invoke(self.get("work"), started, context)  # type: ignore[arg-type]
        assert self.worker is not None
        self.worker.handler_finished(result)


def setup(**config: Any) -> tuple[RefusingStore, ManualClock, Held, Worker]:
    clock = ManualClock()
    store = RefusingStore(clock)
    held = Held()
    worker = f.worker(
        store, clock, registry=held, executor=held, lease_ttl_s=LEASE_TTL_S, concurrency=4, **config
    )
    held.worker = worker
    return store, clock, held, worker


def job(store: InMemoryJobStore, n: int, **kwargs: Any) -> Job:
    kwargs.setdefault("backoff", RetryPolicy(base_s=1.0, max_s=1.0, jitter=Jitter.NONE))
    return enqueue(store, task="work", args={"n": n}, **kwargs)


def run_for(worker: Worker, clock: ManualClock, seconds: float, step_s: float = 0.5) -> None:
    """Tick the worker as its driver would, for `seconds` of its clock."""
    for _ in range(round(seconds / step_s)):
        clock.advance(step_s)
        worker.tick()


def outcomes(store: InMemoryJobStore, j: Job) -> list[tuple[Outcome, str | None]]:
    return [(a.outcome, a.error.type if a.error else None) for a in store.attempts(j.id)]


def test_a_refused_report_becomes_a_failed_attempt_and_the_others_land() -> None:
    store, clock, held, worker = setup()
    long, poisoned, fine = job(store, 0), job(store, 1, max_attempts=2), job(store, 2)
    store.refuses_report = lambda r: isinstance(r.result, dict) and r.result.get("n") == 1
    worker.tick()
    assert set(held.started) == {long.id, poisoned.id, fine.id}
    held.finish(poisoned)
    held.finish(fine)
    worker.tick()  # one batch of two, refused; then one by one
    assert store.calls == [2, 1, 1, 1]
    assert store.get(fine.id).state is JobState.SUCCEEDED
    assert store.get(poisoned.id).state is JobState.RETRYING
    [(outcome, error)] = outcomes(store, poisoned)
    assert (outcome, error) == (Outcome.FAILED, REPORT_REFUSED)
    error_info = store.attempts(poisoned.id)[0].error
    assert error_info is not None and "StoreBug: cannot hold this value" in error_info.message

    run_for(worker, clock, 3 * LEASE_TTL_S)  # the long job's lease is kept alive meanwhile
    assert store.reap_expired(limit=10) == []
    store.promote_due(limit=10)  # the scheduler's part: its backoff is over
    worker.doorbell()
    worker.tick()
    assert store.get(poisoned.id).state is JobState.RUNNING, "claimed again"
    held.finish(poisoned)
    held.finish(long)
    worker.tick()
    assert store.get(long.id).state is JobState.SUCCEEDED
    assert store.get(poisoned.id).state is JobState.DEAD, "the attempt budget still ends it"
    assert [o for o, _ in outcomes(store, long)] == [Outcome.SUCCEEDED]

    later = job(store, 3)
    worker.doorbell()
    worker.tick()
    assert later.id in held.started, "the worker still claims"


def test_a_report_refused_even_as_a_failure_is_left_to_lapse_and_runs_again() -> None:
    store, clock, held, worker = setup()
    long, poisoned = job(store, 0), job(store, 1)
    store.refuses_report = lambda r: r.ref.job_id == poisoned.id and r.ref.attempt == 1
    worker.tick()
    held.finish(poisoned)
    worker.tick()
    assert worker.pending_reports() == [], "nothing is resent forever"
    assert store.get(poisoned.id).state is JobState.RUNNING

    run_for(worker, clock, LEASE_TTL_S + 1)
    [reaped] = store.reap_expired(limit=10)
    assert reaped.id == poisoned.id, "only the refused attempt's lease lapsed"
    assert outcomes(store, poisoned)[0][0] is Outcome.WORKER_LOST
    worker.doorbell()
    worker.tick()
    held.finish(poisoned)
    held.finish(long)
    worker.tick()
    assert store.get(poisoned.id).state is JobState.SUCCEEDED
    assert store.get(long.id).state is JobState.SUCCEEDED
    assert [o for o, _ in outcomes(store, long)] == [Outcome.SUCCEEDED]


def test_a_refused_release_leaves_that_lease_to_lapse_and_hands_back_the_others() -> None:
    store, clock, _, worker = setup()
    kept, refused = job(store, 0), job(store, 1)
    store.refuses_release = lambda ref: ref.job_id == refused.id
    worker.tick()
    worker.stop_claiming()
    assert worker.release_unfinished() == 1
    assert store.get(kept.id).state is JobState.QUEUED
    assert store.get(refused.id).state is JobState.RUNNING
    clock.advance(LEASE_TTL_S + 1)
    [reaped] = store.reap_expired(limit=10)
    assert reaped.id == refused.id
