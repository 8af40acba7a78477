"""A worker holds finished outcomes briefly so that several share one store call
(`report_linger_s`, `report_batch_max`). An outcome that was never flushed because its
worker died is simply run again (at-least-once); nothing is committed twice."""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.executors import InlineExecutor
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.context import HandlerResult, Registry, TaskSpec
from taskyard.domain.model import JobState, Outcome
from taskyard.domain.ports import ReportResult
from taskyard.domain.transitions import Report
from taskyard.domain.worker import REPORT_LINGER_S_DEFAULT, Worker
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings
from tests import factories as f
from tests.factories import enqueue

LEASE_TTL_S = 10.0


class Counting:
    """One task, `work`, whose handler counts its runs per job."""

    def __init__(self) -> None:
        self.runs: dict[int, int] = {}

    def names(self) -> frozenset[str]:
        return frozenset({"work"})

    def get(self, name: str) -> TaskSpec | None:
        if name != "work":
            return None

        def work(n: int) -> int:
            self.runs[n] = self.runs.get(n, 0) + 1
            return n

        return TaskSpec(name="work", handler=work)


def _worker(
    store: InMemoryJobStore, clock: ManualClock, tasks: Counting, **config: object
) -> Worker:
    holder: list[Worker] = []

    def finished(result: HandlerResult) -> None:
        holder[0].handler_finished(result)  # the worker is made after its executor

    executor = InlineExecutor(tasks, finished)
    worker = f.worker(
        store,
        clock,
        registry=tasks,
        executor=executor,
        worker_id=f"w{len(config)}",
        lease_ttl_s=LEASE_TTL_S,
        **config,
    )
    holder.append(worker)
    return worker


def test_an_outcome_never_flushed_before_its_worker_died_runs_again_and_commits_once() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    tasks = Counting()
    job = enqueue(store, task="work", args={"n": 7})
    doomed = _worker(store, clock, tasks, report_linger_s=5.0, concurrency=4)
    doomed.tick()  # claims the job and runs it inline
    doomed.tick()  # takes the outcome into its outbox: it lingers, unflushed
    assert tasks.runs == {7: 1}
    assert [r.ref.job_id for r in doomed.pending_reports()] == [job.id]
    assert store.get(job.id).state is JobState.RUNNING
    del doomed  # the process dies with its outbox

    clock.advance(LEASE_TTL_S + 1)
    [reaped] = store.reap_expired(limit=10)
    assert reaped.state is JobState.QUEUED
    survivor = _worker(store, clock, tasks)
    survivor.tick()  # claims attempt 2, runs it, flushes at once (no linger)
    survivor.tick()
    assert tasks.runs == {7: 2}, "at least once: the handler ran again"
    done = store.get(job.id)
    assert done.state is JobState.SUCCEEDED and done.result == 7
    outcomes = [a.outcome for a in store.attempts(job.id)]
    assert outcomes == [Outcome.WORKER_LOST, Outcome.SUCCEEDED], "committed once"


def test_a_partially_flushed_outbox_commits_what_was_sent_and_reruns_the_rest() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    tasks = Counting()
    jobs = [enqueue(store, task="work", args={"n": n}) for n in range(3)]
    doomed = _worker(store, clock, tasks, report_batch_max=2, concurrency=3)
    doomed.tick()  # claims all three and runs them inline
    doomed.tick()  # three outcomes; one store call carries the first two
    assert len(doomed.pending_reports()) == 1
    states = [store.get(j.id).state for j in jobs]
    assert states.count(JobState.SUCCEEDED) == 2 and states.count(JobState.RUNNING) == 1
    (unsent,) = (j for j, state in zip(jobs, states, strict=True) if state is JobState.RUNNING)
    del doomed  # dies before its next flush

    clock.advance(LEASE_TTL_S + 1)
    [reaped] = store.reap_expired(limit=10)
    assert reaped.id == unsent.id
    survivor = _worker(store, clock, tasks)
    survivor.tick()
    survivor.tick()
    assert all(store.get(j.id).state is JobState.SUCCEEDED for j in jobs)
    assert sorted(tasks.runs.values()) == [1, 1, 2]
    for job in jobs:
        committed = [a for a in store.attempts(job.id) if a.outcome is Outcome.SUCCEEDED]
        assert len(committed) == 1, "each outcome committed exactly once"


class CountingReports:
    """The store, counting its `report` calls and the outcomes each carried."""

    def __init__(self, store: InMemoryJobStore) -> None:
        self._store = store
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def report(self, reports: Sequence[Report]) -> list[ReportResult]:
        self.calls.append(len(reports))
        return self._store.report(reports)


def test_a_production_worker_groups_the_outcomes_of_handlers_ending_within_its_linger() -> None:
    """The default a new user gets (issue 20): outcomes that end within the linger share one
    commit, and the slots they freed claim meanwhile (no slot waits for the commit)."""
    config = (
        bootstrap(Settings(database_url="memory://"))
        .worker_runtime(Registry(), worker_id="w1")
        .config
    )
    assert config.report_linger_s == REPORT_LINGER_S_DEFAULT > 0
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    counting = CountingReports(store)
    tasks = Counting()
    holder: list[Worker] = []

    def finished(result: HandlerResult) -> None:
        holder[0].handler_finished(result)

    executor = InlineExecutor(tasks, finished)
    worker = Worker(
        store=counting,  # type: ignore[arg-type]
        coordinator=None,
        clock=clock,
        rng=random.Random(7),
        registry=tasks,
        executor=executor,
        config=attrs.evolve(config, concurrency=2),
    )
    holder.append(worker)
    jobs = [enqueue(store, task="work", args={"n": n}) for n in range(4)]
    worker.tick()  # claims two; they run and end at once
    worker.tick()  # their outcomes linger; the freed slots claim the other two
    assert worker.claimed_total == 4 and counting.calls == []
    clock.advance(REPORT_LINGER_S_DEFAULT / 2)
    worker.tick()  # the other two join them
    assert counting.calls == []
    clock.advance(REPORT_LINGER_S_DEFAULT / 2)
    worker.tick()
    assert counting.calls == [4], "one store call for the four outcomes"
    assert {store.get(job.id).state for job in jobs} == {JobState.SUCCEEDED}
