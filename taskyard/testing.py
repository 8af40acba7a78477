"""Run an app's jobs inside a unit test: synchronously, deterministically, on a manual clock.

    from taskyard.testing import TestRunner

    def test_invoice_is_sent():
        with TestRunner(app) as runner:
            job = send_invoice.enqueue(invoice_id=42)
            runner.run_until_idle()
            assert runner.get(job).state == "succeeded"

`TestRunner` swaps the app onto a fresh in-memory store and coordinator with a manual
clock, and runs the *production* worker and scheduler logic with handlers called inline.
Nothing sleeps: delays and backoffs are crossed with `advance(seconds)`, or all at once
with `drain()`. On exit the app goes back to the adapters it had.
"""

from __future__ import annotations

import random
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import UUID

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.executors import InlineExecutor
from taskyard.domain.model import Attempt, Job, JobState
from taskyard.domain.ports import JobFilter, JobQuery
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from taskyard.domain.store import StoreEngine
from taskyard.domain.worker import Worker, WorkerConfig
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.library import App

STEPS_MAX = 100_000
IN_MEMORY = Settings(database_url="memory://", redis_url="memory://")
"""A fresh store and coordinator inside this process."""


class NotIdle(AssertionError):
    """The runner hit its step bound: some handler keeps making work (an endless chain?)."""


class TestRunner:
    __test__ = False  # not a pytest class

    def __init__(
        self,
        app: App,
        *,
        start: datetime | None = None,
        seed: int = 0,
        lease_ttl_s: float = 10.0,
        concurrency: int = 1,
    ) -> None:
        self.app = app
        self.clock = ManualClock(start)
        self.system = bootstrap(
            IN_MEMORY, clock=self.clock, rng=random.Random(seed), builtins=app.builtins
        )
        """The in-memory store and coordinator, the manual clock (the store's and the
        nodes'), the seeded random source: wired by the composition root."""
        self.rng = self.system.rng
        self.store = self.system.store
        self.coordinator = self.system.coordinator
        self._saved: tuple[Any, ...] | None = None
        self.worker = Worker(
            store=self.store,
            coordinator=self.coordinator,
            clock=self.system.node_clock,
            rng=self.rng,
            registry=app.tasks,
            executor=InlineExecutor(app.tasks, self._finished),
            config=WorkerConfig(
                worker_id="test-worker", concurrency=concurrency, lease_ttl_s=lease_ttl_s
            ),
            hooks=app.hooks,
        )
        self.scheduler = Scheduler(
            store=self.store,
            coordinator=self.coordinator,
            clock=self.system.node_clock,
            config=SchedulerConfig(scheduler_id="test-scheduler"),
        )

    def _finished(self, result: Any) -> None:
        self.worker.handler_finished(result)

    # --- context manager ----------------------------------------------------------------

    def __enter__(self) -> TestRunner:
        self._saved = self.app._snapshot()
        self.app.use(store=self.store, coordinator=self.coordinator, clock=self.clock, rng=self.rng)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._saved is not None
        self.app._restore(self._saved)
        self._saved = None

    # --- running ------------------------------------------------------------------------

    def run_until_idle(self) -> int:
        """Run every job that is due now, and what their outcomes make due now (retries with
        no delay, dependents), until nothing is due at the current time. Returns how many
        handler runs it made. The clock does not move."""
        runs = 0
        for _ in range(STEPS_MAX):
            self.scheduler.wake()
            self.scheduler.tick()
            moved = self.scheduler.last_pass
            self.worker.doorbell()
            claimed_before = self.worker.claimed_total
            reported_before = self.worker.reported_total
            self.worker.tick()
            self.worker.tick()  # report what just ran
            new_runs = self.worker.claimed_total - claimed_before
            runs += new_runs
            reported = self.worker.reported_total - reported_before
            scheduler_idle = moved is None or not (
                moved.promoted or moved.reaped or moved.cancelled
            )
            if new_runs == 0 and reported == 0 and scheduler_idle and self.worker.idle:
                return runs
        raise NotIdle(f"still busy after {STEPS_MAX} steps")

    def advance(self, seconds: float) -> int:
        """Move the clock forward, then run what became due."""
        self.clock.advance(seconds)
        return self.run_until_idle()

    def drain(self, *, max_seconds: float = 86_400.0) -> int:
        """Run until no job is waiting, crossing delays and backoffs by moving the clock to
        each next due time (at most `max_seconds` ahead). Returns the handler runs made."""
        runs = self.run_until_idle()
        limit = self.clock.now().timestamp() + max_seconds
        for _ in range(STEPS_MAX):
            # A job's due time, not a schedule's next fire: schedules fire while the clock
            # crosses them, but never keep a drain going.
            store = self.store
            wakeup = (
                store.next_job_wakeup() if isinstance(store, StoreEngine) else store.next_wakeup()
            )
            if wakeup is None:
                return runs
            if wakeup.timestamp() > limit:
                raise NotIdle(f"jobs still waiting beyond {max_seconds} s")
            self.clock.set(wakeup)
            runs += self.run_until_idle()
        raise NotIdle(f"still busy after {STEPS_MAX} steps")

    # --- reading ------------------------------------------------------------------------

    def get(self, job: Job | UUID | str) -> Job:
        return self.app.get(job)

    def attempts(self, job: Job | UUID | str) -> list[Attempt]:
        return self.app.attempts(job)

    def jobs(self, state: JobState | str | None = None) -> list[Job]:
        """Every job (or those in `state`), oldest first."""
        states = frozenset() if state is None else frozenset({JobState(state)})
        query = JobQuery(filter=JobFilter(states=states), limit=1000)
        newest_first: list[Job] = []
        while True:
            page = self.store.list_jobs(query)
            newest_first.extend(page.jobs)
            if page.next_cursor is None:
                return newest_first[::-1]
            query = JobQuery(filter=query.filter, limit=query.limit, cursor=page.next_cursor)
