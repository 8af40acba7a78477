"""`async def` handlers: awaited (not stored as a coroutine), classified as plain handlers
are, run by `TestRunner`, and given slots of their own by the worker."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import taskyard
from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.context import (
    CancelReason,
    HandlerResult,
    JobContext,
    PermanentFailure,
    Registry,
    TaskSpec,
    stopped_result,
)
from taskyard.domain.model import Job, JobState, Outcome
from taskyard.domain.transitions import ReportKind
from taskyard.testing import TestRunner
from tests import factories
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
    coroutine, function = app.tasks.get(add.name), app.tasks.get(plain.name)
    assert coroutine is not None and coroutine.is_async
    assert function is not None and not function.is_async


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
    worker = factories.worker(
        store, clock, registry=registry, executor=executor, concurrency=1, async_concurrency=3
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
    worker = factories.worker(store, clock, registry=registry, executor=executor)
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


@settings(max_examples=40, deadline=None)
@given(
    plain_jobs=st.integers(0, 8),
    async_jobs=st.integers(0, 8),
    threads=st.integers(1, 4),
    coroutines=st.integers(1, 6),
    finish=st.lists(st.integers(0, 30), max_size=6),
)
def test_each_lane_runs_at_most_its_slots_and_fills_them(
    plain_jobs: int, async_jobs: int, threads: int, coroutines: int, finish: list[int]
) -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    registry = Registry()
    registry.add(TaskSpec(name="plain", handler=lambda: None))
    registry.add(TaskSpec(name="coro", handler=_coroutine_handler))
    for _ in range(plain_jobs):
        enqueue(store, task="plain")
    for _ in range(async_jobs):
        enqueue(store, task="coro")
    executor = _Stuck()
    worker = factories.worker(
        store,
        clock,
        registry=registry,
        executor=executor,
        concurrency=threads,
        async_concurrency=coroutines,
    )
    done: set[int] = set()
    for pick in [-1, *finish]:
        if pick >= 0 and executor.started:
            index = pick % len(executor.started)
            if index not in done:  # a handler returns: its slot is free again
                done.add(index)
                _, context = executor.started[index]
                worker.handler_finished(HandlerResult(ref=context.ref, kind=ReportKind.SUCCEEDED))
        worker.doorbell()
        worker.tick()
        worker.tick()
        running = [job.task for i, (job, _) in enumerate(executor.started) if i not in done]
        started = [job.task for job, _ in executor.started]
        lanes = (("plain", plain_jobs, threads), ("coro", async_jobs, coroutines))
        for task, total, slots in lanes:
            waiting = total - started.count(task)
            assert running.count(task) <= slots, (task, running)
            assert running.count(task) == slots or waiting == 0, "a lane left a slot idle"
