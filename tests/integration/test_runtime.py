"""The production runtimes (real threads, the system clock) around the domain worker and
scheduler, on the in-memory store and coordinator."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from taskyard.adapters.clock import SystemClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.context import Cancelled, TaskSpec
from taskyard.domain.errors import CoordinatorUnavailable
from taskyard.domain.model import Job, JobState, Outcome
from taskyard.domain.ports import (
    ClaimRequest,
    Coordinator,
    JobStore,
    Leadership,
    SchedulerInfo,
    WorkerInfo,
)
from taskyard.entrypoints.bootstrap import System, bootstrap
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.logs import make_handler
from taskyard.entrypoints.runtime import SchedulerRuntime, WorkerRuntime
from tests.eventually import eventually
from tests.runs import (
    QUICK_RETRY,
    Runs,
    assert_each_succeeded_once,
    client_for,
    counting_task,
    registry_with,
    submit,
    wait_terminal,
)

WAIT_S = 20.0


@pytest.fixture
def system() -> Iterator[System]:
    """An in-memory store and coordinator on the system clock, from the composition root."""
    built = bootstrap(Settings(database_url="memory://", redis_url="memory://"))
    yield built
    built.close()


@pytest.fixture
def store(system: System) -> JobStore:
    return system.store


@pytest.fixture
def coordinator(system: System) -> Coordinator:
    assert system.coordinator is not None
    return system.coordinator


@pytest.fixture
def runtimes() -> Iterator[list[WorkerRuntime | SchedulerRuntime]]:
    """Runtimes a test starts; whatever is still running at the end is killed."""
    started: list[WorkerRuntime | SchedulerRuntime] = []
    yield started
    for runtime in started:
        runtime.kill()


def _worker(
    runtimes: list[WorkerRuntime | SchedulerRuntime],
    store: JobStore,
    coordinator: Coordinator,
    specs: Sequence[TaskSpec],
    doorbell_block_s: float = 0.5,
    **config: Any,
) -> WorkerRuntime:
    config.setdefault("worker_id", f"w{len(runtimes)}")
    system = bootstrap(Settings(), store=store, coordinator=coordinator)
    runtime = system.worker_runtime(
        registry_with(*specs), doorbell_block_s=doorbell_block_s, **config
    )
    runtimes.append(runtime)
    return runtime.start()


def _scheduler(
    runtimes: list[WorkerRuntime | SchedulerRuntime], store: JobStore, coordinator: Coordinator
) -> SchedulerRuntime:
    system = bootstrap(Settings(), store=store, coordinator=coordinator)
    runtime = system.scheduler_runtime(scheduler_id=f"s{len(runtimes)}", tick_interval_s=0.05)
    runtimes.append(runtime)
    return runtime.start()


def _slow_task(started: threading.Event, release: threading.Event) -> TaskSpec:
    """`slow`: a handler that runs until `release` is set (it sets `started` first)."""

    def handler(ctx: Any) -> str:
        started.set()
        assert release.wait(WAIT_S)
        return "finished in the grace period"

    return TaskSpec(name="slow", handler=handler)


def _blocking_task(name: str, started: threading.Event, woke: list[bool]) -> TaskSpec:
    """A handler that waits up to a minute on its context, recording whether it was woken."""

    def handler(ctx: Any) -> str:
        started.set()
        cancelled = ctx.wait(60)
        woke.append(cancelled)
        if cancelled:
            raise Cancelled("woken by its context")
        return "waited a whole minute"

    return TaskSpec(name=name, handler=handler)


def test_the_worker_runtime_drains_every_job(
    store: JobStore, coordinator: Coordinator, runtimes: list[Any]
) -> None:
    runs = Runs()
    client = client_for(store, coordinator)
    _scheduler(runtimes, store, coordinator)  # promotes the retries
    _worker(runtimes, store, coordinator, [counting_task(runs)], concurrency=4)
    jobs = submit(client, "count", [{"n": n, "fail_first": n % 10 == 0} for n in range(200)])
    wait_terminal(store, jobs, timeout_s=WAIT_S)
    assert_each_succeeded_once(store, jobs, failed_first=lambda job: bool(job.args["fail_first"]))
    assert runs.count() == 220


def test_cancelling_a_running_job_wakes_its_handler_from_ctx_wait(
    store: JobStore, coordinator: Coordinator, runtimes: list[Any]
) -> None:
    started, woke = threading.Event(), []
    _worker(runtimes, store, coordinator, [_blocking_task("block", started, woke)], lease_ttl_s=1.0)
    [job] = submit(client_for(store, coordinator), "block", [{}])
    assert started.wait(WAIT_S)
    store.cancel(job.id)
    [done] = wait_terminal(store, [job], timeout_s=WAIT_S)
    assert done.state is JobState.CANCELLED
    assert woke == [True]


def test_a_handler_past_its_timeout_is_woken_and_the_attempt_fails_as_timeout(
    store: JobStore, coordinator: Coordinator, runtimes: list[Any]
) -> None:
    started, woke = threading.Event(), []
    _worker(runtimes, store, coordinator, [_blocking_task("block", started, woke)])
    [job] = submit(client_for(store, coordinator), "block", [{}], timeout_s=0.2, max_attempts=1)
    [done] = wait_terminal(store, [job], timeout_s=WAIT_S)
    assert done.state is JobState.DEAD
    assert done.last_error is not None and done.last_error.type == "timeout"
    assert [a.outcome for a in store.attempts(job.id)] == [Outcome.TIMEOUT]
    eventually(lambda: woke == [True], timeout_s=WAIT_S, what="the handler woke from ctx.wait")


def test_a_graceful_stop_lets_a_running_handler_finish_and_claims_nothing_new(
    store: JobStore, coordinator: Coordinator, runtimes: list[Any]
) -> None:
    started, release = threading.Event(), threading.Event()
    slow = _slow_task(started, release)
    runtime = _worker(runtimes, store, coordinator, [slow], concurrency=1)
    client = client_for(store, coordinator)
    [running] = submit(client, "slow", [{}])
    assert started.wait(WAIT_S)
    [waiting] = submit(client, "slow", [{}])
    released: list[int] = []
    stopper = threading.Thread(target=lambda: released.append(runtime.stop(grace_s=WAIT_S)))
    stopper.start()
    eventually(lambda: runtime.draining, timeout_s=WAIT_S, what="the stop began")
    release.set()
    stopper.join(WAIT_S)
    assert released == [0]
    assert store.get(running.id).state is JobState.SUCCEEDED
    assert store.get(waiting.id).state is JobState.QUEUED
    assert coordinator.workers() == []


def test_a_graceful_stop_hands_unfinished_jobs_back_to_run_elsewhere_at_once(
    store: JobStore, coordinator: Coordinator, runtimes: list[Any]
) -> None:
    started, woke = threading.Event(), []
    first = _worker(
        runtimes, store, coordinator, [_blocking_task("job", started, woke)], concurrency=2
    )
    jobs = submit(client_for(store, coordinator), "job", [{}, {}])
    eventually(
        lambda: all(store.get(j.id).state is JobState.RUNNING for j in jobs),
        timeout_s=WAIT_S,
        what="both jobs running",
    )
    assert first.stop(grace_s=0.1) == 2
    for job in jobs:
        back = store.get(job.id)
        assert back.state is JobState.QUEUED and back.lease is None
    eventually(lambda: woke == [True, True], timeout_s=WAIT_S, what="handlers told to stop")
    quick = TaskSpec(name="job", handler=lambda: "done elsewhere")
    _worker(runtimes, store, coordinator, [quick], worker_id="second")
    done = wait_terminal(store, jobs, timeout_s=WAIT_S)
    for job in done:
        assert job.state is JobState.SUCCEEDED and job.result == "done elsewhere"
        outcomes = [a.outcome for a in store.attempts(job.id)]
        assert outcomes == [Outcome.WORKER_LOST, Outcome.SUCCEEDED]


def test_a_graceful_stop_hands_buffered_jobs_back_before_the_running_one_ends(
    store: JobStore, coordinator: Coordinator, runtimes: list[Any]
) -> None:
    started, release = threading.Event(), threading.Event()
    slow = _slow_task(started, release)
    runtime = _worker(
        runtimes,
        store,
        coordinator,
        [slow],
        concurrency=1,
        prefetch=2,
    )
    client = client_for(store, coordinator)
    jobs = submit(client, "slow", [{}, {}, {}])
    assert started.wait(WAIT_S)
    eventually(
        lambda: all(store.get(j.id).state is JobState.RUNNING for j in jobs),
        timeout_s=WAIT_S,
        what="one job running, two buffered (leased to the worker)",
    )
    stopper = threading.Thread(target=lambda: runtime.stop(grace_s=WAIT_S))
    stopper.start()
    eventually(
        lambda: sum(store.get(j.id).state is JobState.QUEUED for j in jobs) == 2,
        timeout_s=WAIT_S,
        what="the buffered jobs handed back at the stop's start",
    )
    assert sum(store.get(j.id).state is JobState.RUNNING for j in jobs) == 1
    assert stopper.is_alive(), "the running handler is still in its grace period"
    release.set()
    stopper.join(WAIT_S)
    states = sorted(store.get(j.id).state.value for j in jobs)
    assert states == ["queued", "queued", "succeeded"]


def test_the_scheduler_runtime_promotes_delayed_jobs_and_resigns_on_stop(
    store: JobStore, coordinator: Coordinator, runtimes: list[Any]
) -> None:
    runs = Runs()
    scheduler = _scheduler(runtimes, store, coordinator)
    _worker(runtimes, store, coordinator, [counting_task(runs)])
    jobs = submit(client_for(store, coordinator), "count", [{"n": 1}], delay_s=0.3)
    assert jobs[0].state is JobState.SCHEDULED
    wait_terminal(store, jobs, timeout_s=WAIT_S)
    assert_each_succeeded_once(store, jobs, failed_first=lambda job: False)
    lead = coordinator.leader()
    assert lead is not None and lead.holder == scheduler.config.scheduler_id
    scheduler.stop()
    assert coordinator.leader() is None


class SwitchableCoordinator:
    """A test double: the in-memory coordinator, which can be cut off (every call then
    raises `CoordinatorUnavailable`, as an unreachable Redis would)."""

    def __init__(self, inner: Coordinator) -> None:
        self.inner = inner
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise CoordinatorUnavailable(message="switched off by the test")

    def campaign(self, *, candidate: str, ttl_s: float) -> Leadership | None:
        self._check()
        return self.inner.campaign(candidate=candidate, ttl_s=ttl_s)

    def resign(self, *, candidate: str) -> bool:
        self._check()
        return self.inner.resign(candidate=candidate)

    def leader(self) -> Leadership | None:
        self._check()
        return self.inner.leader()

    def register_worker(self, info: WorkerInfo, *, ttl_s: float) -> None:
        self._check()
        self.inner.register_worker(info, ttl_s=ttl_s)

    def unregister_worker(self, worker_id: str) -> None:
        self._check()
        self.inner.unregister_worker(worker_id)

    def workers(self) -> list[WorkerInfo]:
        self._check()
        return self.inner.workers()

    def register_scheduler(self, info: SchedulerInfo, *, ttl_s: float) -> None:
        self._check()
        self.inner.register_scheduler(info, ttl_s=ttl_s)

    def unregister_scheduler(self, scheduler_id: str) -> None:
        self._check()
        self.inner.unregister_scheduler(scheduler_id)

    def schedulers(self) -> list[SchedulerInfo]:
        self._check()
        return self.inner.schedulers()

    def ring(self, queues: Sequence[str]) -> None:
        self._check()
        self.inner.ring(queues)

    def wait(self, queues: Sequence[str] | None, *, timeout_s: float) -> bool:
        self._check()
        rung = self.inner.wait(queues, timeout_s=timeout_s)
        self._check()  # a wait under way when the connection goes fails, as a BLPOP would
        return rung


def test_an_outage_of_the_coordinator_falls_back_to_polling_warns_once_and_recovers(
    store: JobStore,
    coordinator: Coordinator,
    runtimes: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="taskyard")
    switchable = SwitchableCoordinator(coordinator)
    runs = Runs()
    runtime = _worker(runtimes, store, switchable, [counting_task(runs)], poll_interval_s=0.1)
    client = client_for(store, switchable)
    eventually(lambda: runtime.doorbell_ok, timeout_s=WAIT_S, what="the doorbell is waited on")

    switchable.down = True
    jobs = submit(client, "count", [{"n": n} for n in range(20)])  # rings fail: polling only
    wait_terminal(store, jobs, timeout_s=WAIT_S)
    eventually(
        lambda: runtime.worker.coordinator_health.failures >= 3,
        timeout_s=WAIT_S,
        what="several failed doorbell waits",
    )
    assert runtime.running and runtime.doorbell_ok is False

    switchable.down = False
    eventually(lambda: runtime.doorbell_ok, timeout_s=WAIT_S, what="the doorbell is back")
    rings_before = runtime.rings_received
    more = submit(client, "count", [{"n": 100}])
    wait_terminal(store, more, timeout_s=WAIT_S)
    eventually(
        lambda: runtime.rings_received > rings_before,
        timeout_s=WAIT_S,
        what="a ring reached the worker after the outage",
    )
    assert_each_succeeded_once(store, [*jobs, *more], failed_first=lambda job: False)
    # One warning each way from the worker (its control and doorbell threads share one
    # health), and one each way from the client, whose rings failed meanwhile.
    worker_messages = [
        f"{r.threadName}: {r.getMessage()}"
        for r in caplog.records
        if "coordinator" in r.getMessage()
    ]
    for thread_prefix in ("taskyard-", "MainThread"):
        mine = [m for m in worker_messages if m.startswith(thread_prefix)]
        assert len([m for m in mine if "unavailable" in m]) == 1, worker_messages
        assert len([m for m in mine if "is back" in m]) == 1, worker_messages


class FlakyStore(InMemoryJobStore):
    """Raises an unexpected error on the first claim (a bug in an adapter, say)."""

    def __init__(self) -> None:
        super().__init__(SystemClock())
        self.failures_left = 1

    def claim(self, request: ClaimRequest) -> list[Job]:
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("an unexpected adapter error")
        return super().claim(request)


def test_an_unexpected_error_does_not_kill_the_worker_loop(
    coordinator: Coordinator, runtimes: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="taskyard.runtime")
    store = FlakyStore()
    runs = Runs()
    runtime = _worker(runtimes, store, coordinator, [counting_task(runs)])
    jobs = submit(client_for(store, coordinator), "count", [{"n": 1}])
    wait_terminal(store, jobs, timeout_s=WAIT_S)
    assert runtime.loop_errors == 1
    assert any("worker tick failed" in r.getMessage() for r in caplog.records)


def test_a_killed_worker_hands_nothing_back_and_its_job_runs_again_after_the_lease(
    store: JobStore, coordinator: Coordinator, runtimes: list[Any]
) -> None:
    started, woke = threading.Event(), []
    _scheduler(runtimes, store, coordinator)  # reaps the lapsed lease
    doomed = _worker(
        runtimes, store, coordinator, [_blocking_task("job", started, woke)], lease_ttl_s=1.0
    )
    [job] = submit(client_for(store, coordinator), "job", [{}])
    assert started.wait(WAIT_S)
    doomed.kill()
    assert store.get(job.id).state is JobState.RUNNING  # nothing was handed back
    eventually(lambda: woke == [True], timeout_s=WAIT_S, what="the handler was told to stop")
    quick = TaskSpec(name="job", handler=lambda: "done elsewhere")
    _worker(runtimes, store, coordinator, [quick], worker_id="survivor")
    [done] = wait_terminal(store, [job], timeout_s=WAIT_S)
    assert done.state is JobState.SUCCEEDED and done.result == "done elsewhere"
    assert [a.outcome for a in store.attempts(job.id)] == [Outcome.WORKER_LOST, Outcome.SUCCEEDED]


def test_lines_a_handler_logs_carry_its_job_attempt_and_worker(
    store: JobStore, coordinator: Coordinator, runtimes: list[Any]
) -> None:
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:

        def chatty(ctx: Any) -> str:
            logging.getLogger("someones.jobs").warning("working on it")
            if ctx.attempt == 1:
                raise RuntimeError("first try fails")
            return "done"

        spec = TaskSpec(name="chatty", handler=chatty, backoff=QUICK_RETRY)
        _scheduler(runtimes, store, coordinator)
        runtime = _worker(runtimes, store, coordinator, [spec])
        [job] = submit(client_for(store, coordinator), "chatty", [{}])
        wait_terminal(store, [job], timeout_s=WAIT_S)
        eventually(
            lambda: stream.getvalue().count('"handler finished"') == 2,
            timeout_s=WAIT_S,
            what="two handler lines",
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    worker_id = runtime.config.worker_id
    mine = [line for line in lines if line["message"] == "working on it"]
    assert [(m["job_id"], m["attempt"], m["worker_id"], m["task"]) for m in mine] == [
        (str(job.id), 1, worker_id, "chatty"),
        (str(job.id), 2, worker_id, "chatty"),
    ]
    finished = [line for line in lines if line["message"] == "handler finished"]
    assert [(f["attempt"], f["outcome"], f.get("error_type")) for f in finished] == [
        (1, "failed", "RuntimeError"),
        (2, "succeeded", None),
    ]
    assert all(f["job_id"] == str(job.id) and f["duration_ms"] >= 0 for f in finished)
