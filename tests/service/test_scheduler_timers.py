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


class _Recording:
    """A store and a coordinator that write down the order of the calls a pass makes."""

    def __init__(self, store: InMemoryJobStore, coordinator: InMemoryCoordinator) -> None:
        self.calls: list[str] = []
        self._store = store
        self._ring = coordinator.ring

    def store_call(self, name: str) -> object:
        inner = getattr(self._store, name)

        def call(*args: object, **kwargs: object) -> object:
            self.calls.append(name)
            return inner(*args, **kwargs)

        return call

    def ring(self, queues: list[str]) -> None:
        self.calls.append(f"ring {','.join(queues)}")
        self._ring(queues)


def test_a_pass_promotes_first_and_rings_the_promoted_queues_before_anything_else() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    coordinator = InMemoryCoordinator(clock)
    recording = _Recording(store, coordinator)
    for name in (
        "promote_due",
        "resolve_dependencies",
        "fire_schedules",
        "reap_expired",
        "prune",
        "next_wakeup",
    ):
        setattr(store, name, recording.store_call(name))
    coordinator.ring = recording.ring  # type: ignore[method-assign]
    scheduler = Scheduler(
        store=store,
        coordinator=coordinator,
        clock=clock,
        config=SchedulerConfig(scheduler_id="s1", tick_interval_s=INTERVAL_S),
    )
    scheduler.tick()  # the first pass: nothing due
    delayed = enqueue(store, delay_s=0.2, queue="mail")
    clock.advance(0.2)
    recording.calls.clear()
    scheduler.wake()
    scheduler.tick()
    assert store.get(delayed.id).state is JobState.QUEUED
    assert recording.calls[:2] == ["promote_due", "ring mail"], recording.calls
    assert {"resolve_dependencies", "fire_schedules", "reap_expired"} <= set(recording.calls[2:])


def test_a_schedule_wakes_the_scheduler_at_its_next_fire() -> None:
    from taskyard.domain.schedules import Every, ScheduleSpec

    clock = ManualClock()
    store = InMemoryJobStore(clock)
    scheduler = Scheduler(
        store=store,
        coordinator=None,
        clock=clock,
        config=SchedulerConfig(scheduler_id="s1", tick_interval_s=1.0),
    )
    made = store.create_schedule(
        ScheduleSpec(name="often", timing=Every(seconds=0.3), job=Submission(task="t"))
    )
    first = made.next_fire_at
    wait = scheduler.tick()
    assert wait.until == first, "the fire, not the pass interval"
    clock.set(first)
    wait = scheduler.tick()
    assert scheduler.last_pass is not None and scheduler.last_pass.fired.counts.enqueued == 1
    assert wait.until == store.schedule("often").next_fire_at


def test_a_drain_with_a_schedule_declared_ends_when_no_job_waits() -> None:
    periodic = taskyard.App("memory://")
    runs: list[int] = []

    @periodic.periodic(every=5)
    @periodic.task(name="beat")
    def beat() -> None:
        runs.append(1)

    @periodic.task(name="later")
    def later() -> None:
        runs.append(2)

    with TestRunner(periodic) as runner:
        runner.run_until_idle()  # the worker syncs the schedule
        later.enqueue()
        periodic.enqueue("later", delay_seconds=12)
        runner.drain()
        assert runs.count(2) == 2, "the delayed job ran"
        assert runs.count(1) >= 1, "the schedule fired as the clock crossed its fires"
        assert runner.store.next_wakeup() is not None, "the schedule fires on"
