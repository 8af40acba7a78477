"""Regression: a handler the worker gave up on keeps its slot until it returns.

Found by the simulator (a job with a timeout whose handler ignores cancellation, claimed
again by the same worker): the new attempt replaced the old one in the worker's books, so
the abandoned handler no longer counted and the worker ran more handlers than its
concurrency.
"""

from __future__ import annotations

import random

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.context import HandlerResult, JobContext, TaskSpec
from taskyard.domain.model import Job, JobState
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.transitions import ReportKind
from taskyard.domain.worker import Worker, WorkerConfig
from tests.factories import enqueue


class Registry:
    def names(self) -> frozenset[str]:
        return frozenset({"work"})

    def get(self, name: str) -> TaskSpec | None:
        return TaskSpec(name=name, handler=lambda: None) if name == "work" else None


class Stuck:
    """Starts handlers that never return on their own."""

    def __init__(self) -> None:
        self.started: list[tuple[Job, JobContext]] = []

    def start(self, job: Job, context: JobContext) -> None:
        self.started.append((job, context))


def _worker(store: InMemoryJobStore, clock: ManualClock, executor: Stuck, slots: int) -> Worker:
    return Worker(
        store=store,
        coordinator=None,
        clock=clock,
        rng=random.Random(0),
        registry=Registry(),
        executor=executor,
        config=WorkerConfig(worker_id="w1", concurrency=slots),
    )


def _time_out_and_requeue(worker: Worker, store: InMemoryJobStore, clock: ManualClock) -> None:
    clock.advance(1.5)
    worker.tick()  # the attempt times out: reported, its handler told to stop (it does not)
    clock.advance(0.5)
    assert store.promote_due(limit=10).count == 1
    worker.doorbell()
    worker.tick()


def test_handlers_that_ignore_their_timeout_keep_their_slots() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    job = enqueue(
        store,
        task="work",
        timeout_s=1.0,
        max_attempts=5,
        backoff=RetryPolicy(base_s=0.1, max_s=0.1, jitter=Jitter.NONE),
    )
    executor = Stuck()
    worker = _worker(store, clock, executor, slots=2)
    worker.tick()
    _time_out_and_requeue(worker, store, clock)  # attempt 2 takes the second slot
    assert [j.attempt for j, _ in executor.started] == [1, 2]
    _time_out_and_requeue(worker, store, clock)  # both slots hold stuck handlers
    assert worker.busy_slots == 2
    assert [j.attempt for j, _ in executor.started] == [1, 2], "no slot is free for attempt 3"
    assert store.get(job.id).state is JobState.QUEUED

    first = executor.started[0][1]
    worker.handler_finished(HandlerResult(ref=first.ref, kind=ReportKind.SUCCEEDED))
    worker.tick()
    assert [j.attempt for j, _ in executor.started] == [1, 2, 3]
    assert worker.busy_slots == 2
    assert store.get(job.id).state is JobState.RUNNING


def test_the_late_result_of_an_abandoned_attempt_is_void() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    job = enqueue(
        store,
        task="work",
        timeout_s=1.0,
        max_attempts=3,
        backoff=RetryPolicy(base_s=0.1, max_s=0.1, jitter=Jitter.NONE),
    )
    executor = Stuck()
    worker = _worker(store, clock, executor, slots=2)
    worker.tick()
    _time_out_and_requeue(worker, store, clock)  # attempt 2 starts beside the stuck attempt 1
    assert [j.attempt for j, _ in executor.started] == [1, 2]
    assert worker.busy_slots == 2

    first = executor.started[0][1]
    worker.handler_finished(HandlerResult(ref=first.ref, kind=ReportKind.SUCCEEDED))
    worker.tick()
    assert worker.busy_slots == 1
    assert not worker.idle
    assert store.get(job.id).state is JobState.RUNNING, "attempt 1's success must not land"
    assert store.get(job.id).attempt == 2
