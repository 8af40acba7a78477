"""The worker runtime's executors, with real threads, an event loop and child processes,
on the in-memory store: `async def` handlers in slots of their own and cancelled through
the loop; `--pool process` children killed at a timeout or a cancel, their slot coming
back; and the fence, which refuses the late outcome of an attempt the worker gave up on."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskyard.adapters.processes import ProcessExecutor
from taskyard.domain.context import TaskSpec
from taskyard.domain.model import JobState, LeaseRef, Outcome
from taskyard.domain.ports import ReportStatus
from taskyard.domain.transitions import Report, ReportKind
from taskyard.entrypoints.bootstrap import System, bootstrap
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.runtime import SchedulerRuntime, WorkerRuntime
from tests.eventually import eventually, process_gone
from tests.integration import pool_app
from tests.runs import client_for, registry_with, submit, wait_terminal

WAIT_S = 20.0


@pytest.fixture
def system() -> Iterator[System]:
    built = bootstrap(
        Settings(
            database_url="memory://",
            redis_url="memory://",
            pool="process",
            app="tests.integration.pool_app:app",
        )
    )
    yield built
    built.close()


@pytest.fixture
def runtimes() -> Iterator[list[WorkerRuntime | SchedulerRuntime]]:
    started: list[WorkerRuntime | SchedulerRuntime] = []
    yield started
    for runtime in started:
        if isinstance(runtime, WorkerRuntime):
            runtime.stop(grace_s=0)
        else:
            runtime.stop()


def _start(runtimes: list[Any], runtime: WorkerRuntime | SchedulerRuntime) -> Any:
    runtimes.append(runtime)
    return runtime.start()


def _thread_worker(system: System, runtimes: list[Any], *specs: TaskSpec, **config: Any) -> Any:
    threads = bootstrap(Settings(), store=system.store, coordinator=system.coordinator)
    return _start(runtimes, threads.worker_runtime(registry_with(*specs), worker_id="w", **config))


# --- async def handlers -------------------------------------------------------------------


def test_async_handlers_run_at_once_beside_one_thread_slot(
    system: System, runtimes: list[Any]
) -> None:
    count = 20
    started: list[int] = []
    everyone: list[asyncio.Event] = []

    async def gather(n: int) -> int:
        # Returns only once every one of them has started: they run at the same time.
        if not everyone:
            everyone.append(asyncio.Event())
        started.append(n)
        if len(started) == count:
            everyone[0].set()
        await asyncio.wait_for(everyone[0].wait(), WAIT_S)
        return n * 2

    worker = _thread_worker(
        system,
        runtimes,
        TaskSpec(name="gather", handler=gather),
        TaskSpec(name="plain", handler=lambda n: n + 1),
        concurrency=1,
        async_concurrency=count,
    )
    client = client_for(system.store, system.coordinator)
    coros = submit(client, "gather", [{"n": n} for n in range(count)])
    [plain] = submit(client, "plain", [{"n": 1}])
    done = wait_terminal(system.store, [*coros, plain], timeout_s=WAIT_S)
    assert [job.result for job in done] == [n * 2 for n in range(count)] + [2]
    assert all(job.state is JobState.SUCCEEDED for job in done)
    eventually(lambda: worker.executor.running == 0, timeout_s=WAIT_S, what="slots free")


def test_an_async_handler_past_its_timeout_is_cancelled_through_the_loop(
    system: System, runtimes: list[Any]
) -> None:
    seen: list[str] = []

    async def stall() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    worker = _thread_worker(system, runtimes, TaskSpec(name="stall", handler=stall))
    client = client_for(system.store, system.coordinator)
    [timed] = submit(client, "stall", [{}], timeout_s=0.2, max_attempts=1)
    [done] = wait_terminal(system.store, [timed], timeout_s=WAIT_S)
    assert done.state is JobState.DEAD
    assert [a.outcome for a in system.store.attempts(timed.id)] == [Outcome.TIMEOUT]
    eventually(lambda: seen == ["cancelled"], timeout_s=WAIT_S, what="the coroutine cancelled")
    eventually(lambda: worker.worker.busy_slots == 0, timeout_s=WAIT_S, what="its slot back")

    [asked] = submit(client, "stall", [{}])
    eventually(
        lambda: system.store.get(asked.id).state is JobState.RUNNING,
        timeout_s=WAIT_S,
        what="running",
    )
    system.store.cancel(asked.id)
    [cancelled] = wait_terminal(system.store, [asked], timeout_s=WAIT_S)
    assert cancelled.state is JobState.CANCELLED
    assert seen == ["cancelled", "cancelled"]


# --- the process pool ---------------------------------------------------------------------


def _pid_in(path: Path) -> int:
    eventually(lambda: path.exists() and path.read_text(), timeout_s=WAIT_S, what="a pid file")
    return int(path.read_text())


def test_a_process_pool_kills_a_handler_at_its_timeout_and_its_slot_comes_back(
    system: System, runtimes: list[Any], tmp_path: Path
) -> None:
    registry = system.task_registry(pool_app.app.tasks)
    worker = _start(runtimes, system.worker_runtime(registry, worker_id="p", concurrency=1))
    client = client_for(system.store, system.coordinator)
    pid_file = tmp_path / "hang.pid"
    [hung] = submit(
        client, "pool.hang", [{"pid_file": str(pid_file)}], timeout_s=1.0, max_attempts=1
    )
    child = _pid_in(pid_file)
    [after] = submit(client, "pool.pid", [{}])
    # One slot: the job behind it runs only once the hung handler's slot is free again.
    done_hung, done_after = wait_terminal(system.store, [hung, after], timeout_s=WAIT_S)
    assert done_hung.state is JobState.DEAD
    assert [a.outcome for a in system.store.attempts(hung.id)] == [Outcome.TIMEOUT]
    assert done_after.state is JobState.SUCCEEDED
    assert done_after.result["pid"] not in (os.getpid(), child)  # type: ignore[index]
    assert done_after.checkpoint == {"step": 1}  # saved through the pipe
    eventually(lambda: process_gone(child), timeout_s=WAIT_S, what="the timed-out child killed")
    executor = worker.executor.plain
    assert isinstance(executor, ProcessExecutor)
    assert executor.children_started >= 2  # the slot's child, then the one after the kill


def test_a_process_pool_kills_a_handler_when_its_job_is_cancelled(
    system: System, runtimes: list[Any], tmp_path: Path
) -> None:
    registry = system.task_registry(pool_app.app.tasks)
    _start(runtimes, system.worker_runtime(registry, worker_id="p", concurrency=1, lease_ttl_s=1.0))
    pid_file = tmp_path / "hang.pid"
    client = client_for(system.store, system.coordinator)
    [hung] = submit(client, "pool.hang", [{"pid_file": str(pid_file)}])
    child = _pid_in(pid_file)
    system.store.cancel(hung.id)
    [done] = wait_terminal(system.store, [hung], timeout_s=WAIT_S)
    assert done.state is JobState.CANCELLED
    eventually(lambda: process_gone(child), timeout_s=WAIT_S, what="the cancelled child killed")


# --- the fence ----------------------------------------------------------------------------


def test_the_late_outcome_of_a_timed_out_attempt_never_commits(
    system: System, runtimes: list[Any]
) -> None:
    release = threading.Event()
    returned: list[int] = []

    def late(ctx: Any) -> dict[str, int]:
        if ctx.attempt == 1:
            release.wait(WAIT_S)  # ignores its timeout, as a stuck handler would
        returned.append(ctx.attempt)
        return {"attempt": ctx.attempt}

    _thread_worker(system, runtimes, TaskSpec(name="late", handler=late), concurrency=2)
    scheduler = bootstrap(Settings(), store=system.store, coordinator=system.coordinator)
    _start(runtimes, scheduler.scheduler_runtime(scheduler_id="s", tick_interval_s=0.05))
    client = client_for(system.store, system.coordinator)
    [job] = submit(client, "late", [{}], timeout_s=0.3, max_attempts=2)
    wait_terminal(system.store, [job], timeout_s=WAIT_S)
    first = system.store.attempts(job.id)[0]
    release.set()
    eventually(lambda: 1 in returned, timeout_s=WAIT_S, what="attempt 1 returned, late")
    # The worker dropped it; sent to the store anyway, the fence refuses it: the attempt
    # was closed as a timeout, and attempt 2 holds the job.
    [answer] = system.store.report(
        [
            Report(
                ref=LeaseRef(job_id=job.id, attempt=first.attempt, worker=first.worker),
                kind=ReportKind.SUCCEEDED,
                result={"attempt": 1},
            )
        ]
    )
    assert answer.status in (ReportStatus.STALE, ReportStatus.ALREADY_APPLIED)
    final = system.store.get(job.id)
    assert final.state is JobState.SUCCEEDED and final.result == {"attempt": 2}
    assert [a.outcome for a in system.store.attempts(job.id)] == [
        Outcome.TIMEOUT,
        Outcome.SUCCEEDED,
    ]
