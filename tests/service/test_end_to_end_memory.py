"""End to end on the in-memory adapters with a manual clock: the production worker and
scheduler logic, run inline by `taskyard.testing.TestRunner` or stepped by hand."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

import taskyard
from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.context import HandlerResult, JobContext
from taskyard.domain.errors import IdempotencyConflict
from taskyard.domain.model import Job, JobState, Outcome
from taskyard.domain.ports import ClaimRequest
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from taskyard.domain.transitions import REAPABLE_AFTER, ReportKind
from taskyard.domain.worker import Worker, WorkerConfig
from taskyard.testing import TestRunner

S = JobState


@pytest.fixture
def app() -> taskyard.App:
    return taskyard.App("memory://")


def test_a_delayed_job_runs_when_its_time_comes(app: taskyard.App) -> None:
    ran: list[int] = []

    @app.task()
    def remind(n: int) -> None:
        ran.append(n)

    with TestRunner(app) as runner:
        job = remind.options(delay_seconds=30).enqueue(n=1)
        assert runner.run_until_idle() == 0
        runner.advance(29)
        assert ran == [] and runner.get(job).state is S.SCHEDULED
        runner.advance(1)
        assert ran == [1] and runner.get(job).state is S.SUCCEEDED
        [attempt] = runner.attempts(job)
        assert attempt.started_at >= runner.get(job).run_at


def test_failures_are_retried_with_backoff_then_dead_lettered(app: taskyard.App) -> None:
    @app.task(max_attempts=4, backoff={"base_seconds": 10, "factor": 3, "jitter": "none"})
    def always_fails() -> None:
        raise ValueError("the upstream said no")

    with TestRunner(app) as runner:
        job = always_fails.enqueue()
        runs = runner.drain()
        assert runs == 4
        dead = runner.get(job)
        assert dead.state is S.DEAD
        assert dead.last_error is not None and dead.last_error.type == "ValueError"
        attempts = runner.attempts(job)
        assert [a.outcome for a in attempts] == [Outcome.FAILED] * 4
        gaps = [
            (b.started_at - a.finished_at).total_seconds()  # type: ignore[operator]
            for a, b in itertools.pairwise(attempts)
        ]
        assert [round(g) for g in gaps] == [10, 30, 90]
        assert "ValueError: the upstream said no" in (attempts[0].error.traceback or "")  # type: ignore[union-attr]


def test_a_permanent_failure_is_not_retried(app: taskyard.App) -> None:
    @app.task(max_attempts=5)
    def bad_input() -> None:
        raise taskyard.PermanentFailure("invoice 42 does not exist")

    with TestRunner(app) as runner:
        job = bad_input.enqueue()
        assert runner.drain() == 1
        assert runner.get(job).state is S.DEAD


def test_a_dag_runs_in_dependency_order_and_a_failing_branch_cancels_its_dependents(
    app: taskyard.App,
) -> None:
    order: list[str] = []

    @app.task()
    def step(name: str, fail: bool = False) -> str:
        order.append(name)
        if fail:
            raise taskyard.PermanentFailure(f"{name} failed")
        return name

    with TestRunner(app) as runner:
        a = step.enqueue(name="a")
        b = step.options(depends_on=[a]).enqueue(name="b")
        c = step.options(depends_on=[a], priority=5).enqueue(name="c")
        d = step.options(depends_on=[b, c]).enqueue(name="d")
        bad = step.enqueue(name="bad", fail=True)
        after_bad = step.options(depends_on=[bad]).enqueue(name="after_bad")
        after_after = step.options(depends_on=[after_bad, a]).enqueue(name="after_after")
        runner.drain()
        assert order.index("a") < order.index("b") < order.index("d")
        assert order.index("a") < order.index("c") < order.index("d")
        assert "after_bad" not in order and "after_after" not in order
        assert [runner.get(j).state for j in (a, b, c, d)] == [S.SUCCEEDED] * 4
        for job, cause in ((after_bad, bad), (after_after, after_bad)):
            ended = runner.get(job)
            assert ended.state is S.CANCELLED
            assert ended.last_error is not None and ended.last_error.type == "dependency_failed"
            assert str(cause.id) in ended.last_error.message


def test_an_idempotency_key_makes_a_resubmission_harmless(app: taskyard.App) -> None:
    @app.task()
    def charge(invoice_id: int) -> None:
        pass

    with TestRunner(app) as runner:
        first = charge.options(idempotency_key="invoice-42").enqueue(invoice_id=42)
        again = charge.options(idempotency_key="invoice-42").enqueue(invoice_id=42)
        assert again.id == first.id
        with pytest.raises(IdempotencyConflict):
            charge.options(idempotency_key="invoice-42").enqueue(invoice_id=43)
        assert runner.drain() == 1
        assert len(runner.jobs()) == 1


def test_a_cancelled_queued_job_never_runs(app: taskyard.App) -> None:
    ran: list[bool] = []

    @app.task()
    def work() -> None:
        ran.append(True)

    with TestRunner(app) as runner:
        job = work.enqueue()
        app.cancel(job.id)
        assert runner.drain() == 0
        assert ran == [] and runner.get(job).state is S.CANCELLED


def test_cancelling_a_running_job_wins_over_its_result(app: taskyard.App) -> None:
    @app.task()
    def cancels_itself(ctx: JobContext) -> str:
        app.cancel(ctx.job.id)
        return "finished anyway"

    with TestRunner(app) as runner:
        job = cancels_itself.enqueue()
        runner.drain()
        ended = runner.get(job)
        assert ended.state is S.CANCELLED and ended.result is None
        assert [a.outcome for a in runner.attempts(job)] == [Outcome.CANCELLED]


def test_a_checkpoint_carries_over_to_the_next_attempt(app: taskyard.App) -> None:
    seen: list[Any] = []

    @app.task(backoff={"base_seconds": 1, "jitter": "none"})
    def resumable(ctx: JobContext) -> None:
        seen.append(ctx.last_checkpoint)
        if ctx.attempt == 1:
            ctx.checkpoint({"page": 7})
            raise RuntimeError("crashed on page 8")

    with TestRunner(app) as runner:
        job = resumable.enqueue()
        runner.drain()
        assert seen == [None, {"page": 7}]
        assert runner.get(job).state is S.SUCCEEDED


# --- stepping the worker by hand ----------------------------------------------------------


class HeldExecutor:
    """Starts nothing: the test decides when (and whether) each handler finishes."""

    def __init__(self) -> None:
        self.started: list[tuple[Job, JobContext]] = []

    def start(self, job: Job, context: JobContext) -> None:
        self.started.append((job, context))


class World:
    def __init__(self, app: taskyard.App) -> None:
        self.clock = ManualClock()
        self.store = InMemoryJobStore(self.clock)
        self.coordinator = InMemoryCoordinator(self.clock)
        app.use(
            store=self.store, coordinator=self.coordinator, clock=self.clock, rng=random.Random(1)
        )
        self.app = app
        self.scheduler = Scheduler(
            store=self.store,
            coordinator=self.coordinator,
            clock=self.clock,
            config=SchedulerConfig(scheduler_id="s1"),
        )

    def worker(self, name: str, **config: Any) -> tuple[Worker, HeldExecutor]:
        executor = HeldExecutor()
        worker = Worker(
            store=self.store,
            coordinator=self.coordinator,
            clock=self.clock,
            rng=random.Random(2),
            registry=self.app.tasks,
            executor=executor,
            config=WorkerConfig(worker_id=name, lease_ttl_s=10.0, **config),
        )
        return worker, executor


def _done(context: JobContext, result: Any = None) -> HandlerResult:
    return HandlerResult(ref=context.ref, kind=ReportKind.SUCCEEDED, result=result)


def test_a_crashed_workers_job_runs_again_and_its_late_report_is_refused(
    app: taskyard.App,
) -> None:
    @app.task(max_attempts=3)
    def work() -> None:
        pass

    world = World(app)
    job = work.enqueue()
    lost, lost_exec = world.worker("w-lost")
    lost.tick()
    [(_, lost_ctx)] = lost_exec.started
    # w-lost stops responding: no ticks, so no heartbeats. Its lease runs out by store time.
    world.clock.advance(10.5)
    world.scheduler.tick()
    requeued = world.store.get(job.id)
    assert requeued.state is S.QUEUED and requeued.attempt == 1
    fresh, fresh_exec = world.worker("w-fresh")
    fresh.tick()
    [(claimed, fresh_ctx)] = fresh_exec.started
    assert claimed.attempt == 2
    # The lost worker wakes up, finishes, and tries to commit: refused.
    lost.handler_finished(_done(lost_ctx, "from the lost worker"))
    lost.tick()
    assert world.store.get(job.id).state is S.RUNNING
    assert world.store.get(job.id).result is None
    fresh.handler_finished(_done(fresh_ctx, "from the fresh worker"))
    fresh.tick()
    done = world.store.get(job.id)
    assert done.state is S.SUCCEEDED and done.result == "from the fresh worker"
    assert [a.outcome for a in world.store.attempts(job.id)] == [
        Outcome.WORKER_LOST,
        Outcome.SUCCEEDED,
    ]


def test_heartbeats_keep_a_long_job_alive_and_carry_cancellation(app: taskyard.App) -> None:
    @app.task()
    def long() -> None:
        pass

    world = World(app)
    job = long.enqueue()
    worker, executor = world.worker("w1")
    worker.tick()
    [(_, ctx)] = executor.started
    for _ in range(20):  # 50 s of a 10 s lease, heartbeating every 2.5 s
        world.clock.advance(2.5)
        worker.tick()
        world.scheduler.tick()
    assert world.store.get(job.id).state is S.RUNNING
    assert not ctx.cancelled
    app.cancel(job.id)
    world.clock.advance(2.5)
    worker.tick()
    assert ctx.cancelled, "the handler learns of the cancellation at the next heartbeat"
    worker.handler_finished(HandlerResult(ref=ctx.ref, kind=ReportKind.SUCCEEDED, result="ignored"))
    worker.tick()
    assert world.store.get(job.id).state is S.CANCELLED


def test_an_attempt_past_its_timeout_fails_and_is_retried(app: taskyard.App) -> None:
    @app.task(timeout=5, backoff={"base_seconds": 1, "jitter": "none"})
    def hangs() -> None:
        pass

    world = World(app)
    job = hangs.enqueue()
    worker, executor = world.worker("w1", concurrency=1)
    worker.tick()
    [(_, ctx)] = executor.started
    world.clock.advance(5)
    worker.tick()
    assert ctx.cancelled
    waiting = world.store.get(job.id)
    assert waiting.state is S.RETRYING
    assert waiting.last_error is not None and waiting.last_error.type == "timeout"
    assert [a.outcome for a in world.store.attempts(job.id)] == [Outcome.TIMEOUT]
    # The hung handler still occupies the only slot: nothing new is claimed until it returns.
    world.clock.advance(2)
    world.scheduler.tick()
    worker.tick()
    assert len(executor.started) == 1
    worker.handler_finished(_done(ctx))
    worker.tick()
    assert len(executor.started) == 2
    assert world.store.get(job.id).state is S.RUNNING


def test_a_graceful_shutdown_hands_unfinished_jobs_back_at_once(app: taskyard.App) -> None:
    @app.task(max_attempts=1)
    def slow() -> None:
        pass

    world = World(app)
    job = slow.enqueue()
    leaving, _ = world.worker("w-leaving")
    leaving.tick()
    leaving.stop_claiming()
    assert leaving.release_unfinished() == 1
    other, other_exec = world.worker("w-other")
    other.tick()
    [(claimed, ctx)] = other_exec.started
    assert claimed.id == job.id and claimed.attempt == 2
    other.handler_finished(_done(ctx))
    other.tick()
    assert world.store.get(job.id).state is S.SUCCEEDED, "the handed-back attempt was not charged"


def test_a_store_outage_delays_a_report_but_never_loses_it(app: taskyard.App) -> None:
    @app.task()
    def work() -> None:
        pass

    world = World(app)
    job = work.enqueue()
    worker, executor = world.worker("w1")
    worker.tick()
    [(_, ctx)] = executor.started

    from taskyard.domain.errors import StoreUnavailable

    real_report = world.store.report
    calls = {"n": 0}

    def flaky_report(reports: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise StoreUnavailable(message="connection refused")
        return real_report(reports)

    world.store.report = flaky_report  # type: ignore[method-assign]
    worker.handler_finished(_done(ctx, "ok"))
    for _ in range(10):
        wait = worker.tick()
        world.clock.set(max(wait.until, world.clock.now()))
        if world.store.get(job.id).state is S.SUCCEEDED:
            break
    assert world.store.get(job.id).state is S.SUCCEEDED
    assert calls["n"] == 3


def test_drain_crosses_a_dead_workers_lease_and_runs_its_job_again(app: taskyard.App) -> None:
    """A lease is live through its expiry instant, so drain() must step one tick past it."""
    ran: list[int] = []

    @app.task()
    def work(n: int) -> None:
        ran.append(n)

    with TestRunner(app) as runner:
        job = work.enqueue(n=1)
        [claimed] = runner.store.claim(ClaimRequest(worker="crashed", limit=1, lease_ttl_s=10.0))
        assert claimed.lease is not None
        runner.drain()
        assert ran == [1] and runner.get(job).state is S.SUCCEEDED
        assert [a.outcome for a in runner.attempts(job)] == [
            Outcome.WORKER_LOST,
            Outcome.SUCCEEDED,
        ]
        assert runner.clock.now() == claimed.lease.expires_at + REAPABLE_AFTER
