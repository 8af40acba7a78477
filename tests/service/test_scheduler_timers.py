"""Delayed jobs and retries start on time (issue 19): a pass ends by asking the store when
time alone next changes anything, and the scheduler sleeps that long rather than a whole
pass interval. The store's clock decides what is due; the scheduler's own clock only
decides when it asks, so a node clock can make a promotion later, never earlier. Whoever
makes a job wait on the clock rings the scheduler's bell, which wakes no worker."""

from __future__ import annotations

import random
from datetime import timedelta

import taskyard
from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.client import Client
from taskyard.domain.model import JobState
from taskyard.domain.ports import SCHEDULER_BELL
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from taskyard.domain.submission import Submission
from taskyard.domain.timefmt import after
from taskyard.testing import TestRunner
from tests.factories import claim_one, enqueue, fail

INTERVAL_S = 0.5


def _scheduler(store: InMemoryJobStore, clock: ManualClock) -> Scheduler:
    return Scheduler(
        store=store,
        coordinator=None,
        clock=clock,
        config=SchedulerConfig(scheduler_id="s1", tick_interval_s=INTERVAL_S),
    )


def test_a_delayed_job_wakes_the_scheduler_at_its_due_time() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    scheduler = _scheduler(store, clock)
    job = enqueue(store, delay_s=0.2)
    wait = scheduler.tick()
    assert wait.until == after(clock.now(), 0.2), "not the next pass interval"
    clock.advance(0.2)
    scheduler.tick()
    assert store.get(job.id).state is JobState.QUEUED


def test_a_retry_wakes_the_scheduler_at_the_end_of_its_backoff() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    scheduler = _scheduler(store, clock)
    job = enqueue(store, max_attempts=3)
    store.report([fail(claim_one(store), delay_s=0.3)])
    assert store.get(job.id).state is JobState.RETRYING
    assert scheduler.tick().until == after(clock.now(), 0.3)
    clock.advance(0.3)
    scheduler.tick()
    assert store.get(job.id).state is JobState.QUEUED


def test_the_store_clock_decides_what_is_due_and_the_node_clock_only_when_to_ask() -> None:
    store_clock = ManualClock()
    node_clock = ManualClock(store_clock.now() + timedelta(hours=1))  # skewed a long way
    store = InMemoryJobStore(store_clock)
    scheduler = _scheduler(store, node_clock)
    job = enqueue(store, delay_s=0.2)
    assert scheduler.tick().until == after(node_clock.now(), 0.2), "a span, not a moment"
    # The node's clock runs fast: it thinks the due time came; the store's has not.
    node_clock.advance(0.2)
    store_clock.advance(0.1)
    wait = scheduler.tick()
    assert store.get(job.id).state is JobState.SCHEDULED, "never earlier than the store says"
    assert wait.until == after(node_clock.now(), 0.1)
    store_clock.advance(0.1)
    node_clock.advance(0.1)
    scheduler.tick()
    assert store.get(job.id).state is JobState.QUEUED


def test_the_bell_brings_the_next_pass_forward_to_a_due_time_heard_between_passes() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    scheduler = _scheduler(store, clock)
    assert scheduler.tick().until == after(clock.now(), INTERVAL_S), "nothing waits yet"
    first = scheduler.last_pass
    clock.advance(0.01)
    job = enqueue(store, delay_s=0.1)
    scheduler.bell()
    wait = scheduler.tick()
    assert scheduler.last_pass is first, "the bell asks when, it does not pass"
    assert wait.until == after(clock.now(), 0.1)
    clock.advance(0.1)
    scheduler.tick()
    assert store.get(job.id).state is JobState.QUEUED


def test_nothing_waiting_on_the_clock_leaves_the_pass_interval() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    enqueue(store, delay_s=60)
    assert _scheduler(store, clock).tick().until == after(clock.now(), INTERVAL_S)


def test_a_delayed_enqueue_rings_the_schedulers_bell_and_wakes_no_worker() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    coordinator = InMemoryCoordinator(clock)
    client = Client(store=store, coordinator=coordinator, clock=clock, rng=random.Random(7))
    client.submit([Submission(task="t", queue="mail")])
    assert coordinator.wait([SCHEDULER_BELL], timeout_s=0) is False, "a due job: no bell"
    assert coordinator.wait(["mail"], timeout_s=0) is True
    client.submit([Submission(task="t", queue="mail", delay_s=0.05)])
    assert coordinator.wait(None, timeout_s=0) is False, "no worker wakes for it"
    assert coordinator.wait([SCHEDULER_BELL], timeout_s=0) is True


app = taskyard.App("memory://")


@app.task(name="flaky", max_attempts=2, backoff={"base_seconds": 0.05, "jitter": "none"})
def flaky() -> None:
    raise RuntimeError("not yet")


def test_a_worker_whose_report_makes_a_retry_rings_the_schedulers_bell() -> None:
    with TestRunner(app) as runner:
        bell = runner.coordinator
        assert bell is not None
        job = flaky.enqueue()
        bell.wait([SCHEDULER_BELL], timeout_s=0)  # whatever the enqueue rang
        runner.run_until_idle()
        assert runner.get(job).state == "retrying"
        assert bell.wait([SCHEDULER_BELL], timeout_s=0) is True
