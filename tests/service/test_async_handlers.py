"""`async def` handlers: awaited (not stored as a coroutine), classified as plain handlers
are, run by `TestRunner`, and given slots of their own by the worker."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import taskyard
from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.context import (
    CancelReason,
    JobContext,
    PermanentFailure,
    Registry,
    TaskSpec,
    stopped_result,
)
from taskyard.domain.model import Job, JobState, Outcome
from taskyard.domain.transitions import ReportKind
from taskyard.domain.worker import Worker, WorkerConfig
from taskyard.testing import TestRunner
from tests.factories import enqueue

app = taskyard.App("memory://")


@app.task(max_attempts=2)
async def add(a: int, b: int) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"sum": a + b}


@app.task(max_attempts=3)
async def flaky(ctx: taskyard.JobContext) -> str:
    await asyncio.sleep(0)
    if ctx.attempt < 3:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return f"ok on attempt {ctx.attempt}"


@app.task(max_attempts=5)
async def refuses() -> None:
    raise PermanentFailure("never")


@app.task()
def plain(n: int) -> int:
    return n * 2


def test_an_async_handler_is_awaited_and_its_value_is_the_result() -> None:
    with TestRunner(app) as runner:
        job = add.enqueue(a=2, b=3)
        runner.run_until_idle()
        done = runner.get(job)
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"sum": 5}


def test_async_outcomes_are_classified_as_plain_ones() -> None:
    with TestRunner(app) as runner:
        retried = flaky.enqueue()
        dead = refuses.enqueue()
        doubled = plain.enqueue(n=21)
        runner.drain()
        assert runner.get(retried).result == "ok on attempt 3"
        outcomes = [a.outcome for a in runner.attempts(retried)]
        assert outcomes == [Outcome.FAILED, Outcome.FAILED, Outcome.SUCCEEDED]
        assert runner.get(dead).state is JobState.DEAD
        assert len(runner.attempts(dead)) == 1, "a PermanentFailure is not retried"
        assert runner.get(doubled).result == 42


def test_the_test_runner_runs_async_handlers_inside_a_running_event_loop() -> None:
    async def an_async_test() -> Any:
        with TestRunner(app) as runner:
            job = add.enqueue(a=1, b=1)
            runner.run_until_idle()
            return runner.get(job).result

    assert asyncio.run(an_async_test()) == {"sum": 2}


def test_a_spec_knows_an_async_handler() -> None:
    assert app.tasks.get(add.name) is not None and app.tasks.get(add.name).is_async  # type: ignore[union-attr]
    assert not app.tasks.get(plain.name).is_async  # type: ignore[union-attr]


# --- the worker's lanes -------------------------------------------------------------------


async def _coroutine_handler() -> None:
    return None


class _Stuck:
    """Starts handlers that never return on their own."""

    def __init__(self) -> None:
        self.started: list[tuple[Job, JobContext]] = []

    def start(self, job: Job, context: JobContext) -> None:
        self.started.append((job, context))


def test_async_and_plain_handlers_have_slots_of_their_own() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    registry = Registry()
    registry.add(TaskSpec(name="plain", handler=lambda: None))
    registry.add(TaskSpec(name="coro", handler=_coroutine_handler))
    for _ in range(5):
        enqueue(store, task="plain")
        enqueue(store, task="coro")
    executor = _Stuck()
    worker = Worker(
        store=store,
        coordinator=None,
        clock=clock,
        rng=random.Random(0),
        registry=registry,
        executor=executor,
        config=WorkerConfig(worker_id="w1", concurrency=1, async_concurrency=3),
    )
    worker.tick()
    worker.tick()
    started = sorted(job.task for job, _ in executor.started)
    assert started == ["coro", "coro", "coro", "plain"]
    assert worker.free_slots == 0


def test_an_aborted_context_calls_its_stoppers_once_registered_or_at_once() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    enqueue(store, task="t")
    executor = _Stuck()
    registry = Registry()
    registry.add(TaskSpec(name="t", handler=lambda: None))
    worker = Worker(
        store=store,
        coordinator=None,
        clock=clock,
        rng=random.Random(0),
        registry=registry,
        executor=executor,
        config=WorkerConfig(worker_id="w1"),
    )
    worker.tick()
    [(_, context)] = executor.started
    calls: list[str] = []
    context.on_abort(lambda: calls.append("early"))
    assert calls == []
    context.abort(CancelReason.TIMEOUT)
    context.on_abort(lambda: calls.append("late"))
    assert calls == ["early", "late"]
    stopped = stopped_result(context)
    assert stopped.kind is ReportKind.TIMEOUT
