"""A coordinator that fails (or swallows packets, so every call waits out a timeout) is
left alone for a growing while by the optional calls — registering, ringing,
campaigning — and tried again at once when another call shows it is back."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import taskyard
from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.client import Client
from taskyard.domain.errors import CoordinatorUnavailable
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from taskyard.domain.submission import Submission
from taskyard.domain.worker import Worker, WorkerConfig


class Unplugged(InMemoryCoordinator):
    """Counts calls; raises while unplugged."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.plugged = False
        self.calls: dict[str, int] = {}

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if not self.plugged:
            raise CoordinatorUnavailable(message="timed out")

    def register_worker(self, info: Any, *, ttl_s: float) -> None:
        self._call("register_worker")
        super().register_worker(info, ttl_s=ttl_s)

    def ring(self, queues: Sequence[str]) -> None:
        self._call("ring")
        super().ring(queues)

    def campaign(self, *, candidate: str, ttl_s: float) -> Any:
        self._call("campaign")
        return super().campaign(candidate=candidate, ttl_s=ttl_s)


def test_a_worker_registers_rarely_while_the_coordinator_is_gone_and_at_once_when_back() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    coordinator = Unplugged(clock)
    app = taskyard.App("memory://")
    worker = Worker(
        store=store,
        coordinator=coordinator,
        clock=clock,
        rng=random.Random(1),
        registry=app.tasks,
        executor=None,  # type: ignore[arg-type]  # nothing is claimed
        config=WorkerConfig(worker_id="w1", queues=frozenset({"none"})),
    )
    for _ in range(1200):  # 120 s of ticks every 0.1 s
        worker.tick()
        clock.advance(0.1)
    tries = coordinator.calls["register_worker"]
    # Every 2 s without resting would be 60 tries.
    assert 5 <= tries <= 15, f"{tries} registrations in 120 s: it rests between tries"
    coordinator.plugged = True
    worker.coordinator_health.up()  # as the doorbell thread does when its wait succeeds
    worker.tick()
    assert coordinator.calls["register_worker"] == tries + 1
    assert [w.id for w in coordinator.workers()] == ["w1"]


def test_submissions_do_not_each_wait_on_a_dead_coordinator() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    coordinator = Unplugged(clock)
    client = Client(store=store, coordinator=coordinator, clock=clock, rng=random.Random(2))
    for _ in range(50):
        client.submit([Submission(task="t")])
        clock.advance(0.01)
    assert coordinator.calls["ring"] == 1, "one failed ring, then the rings rest"
    clock.advance(10)
    coordinator.plugged = True
    client.submit([Submission(task="t")])
    assert coordinator.calls["ring"] == 2
    assert len(store.state.jobs) == 51, "every submission was stored all the same"


def test_a_scheduler_acts_alone_and_campaigns_rarely_while_the_coordinator_is_gone() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    coordinator = Unplugged(clock)
    scheduler = Scheduler(
        store=store,
        coordinator=coordinator,
        clock=clock,
        config=SchedulerConfig(scheduler_id="s1"),
    )
    for _ in range(300):
        wait = scheduler.tick()
        assert wait.leading, "it keeps working without the coordinator"
        clock.advance(0.1)
    # Every campaign interval (0.5 s) without resting would be 60 campaigns.
    assert coordinator.calls["campaign"] <= 15
    coordinator.plugged = True
    clock.advance(5)
    scheduler.tick()
    assert scheduler.leadership is not None
