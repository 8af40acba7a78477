"""Regression: a leader that cannot reach the store steps down so another can lead.

Found by the simulator with a fault that outlived the heal: the leading scheduler lost
the store but not the coordinator, kept renewing its leader lease, and no scheduler
promoted or reaped anything again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.errors import StoreUnavailable
from taskyard.domain.model import JobState
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from tests.factories import enqueue


class Cuttable:
    """A scheduler's way to the store, which the test can cut."""

    def __init__(self, store: InMemoryJobStore) -> None:
        self._store = store
        self.cut = False

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise StoreUnavailable(message="cut off")
            return method(*args, **kwargs)

        return call


def test_a_leader_cut_off_from_the_store_lets_another_scheduler_lead() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    coordinator = InMemoryCoordinator(clock)
    path = Cuttable(store)
    first = Scheduler(
        store=path,  # type: ignore[arg-type]
        coordinator=coordinator,
        clock=clock,
        config=SchedulerConfig(scheduler_id="s1"),
    )
    second = Scheduler(
        store=store, coordinator=coordinator, clock=clock, config=SchedulerConfig(scheduler_id="s2")
    )
    first.tick()
    second.tick()
    assert first.leading and not second.leading

    path.cut = True
    job = enqueue(store, delay_s=1.0)
    for _ in range(100):  # 10 s of ticks, a tenth of a second apart
        clock.advance(0.1)
        first.tick()
        second.tick()
        if store.get(job.id).state is JobState.QUEUED:
            break
    assert store.get(job.id).state is JobState.QUEUED, "nobody promoted the due job"
    assert second.leading
    assert not first.leading
    leader = coordinator.leader()
    assert leader is not None and leader.holder == "s2"

    path.cut = False
    for _ in range(30):
        clock.advance(0.1)
        first.tick()
        second.tick()
    assert first.store_health.ok, "the stepped-down scheduler notices the store is back"
    assert second.leading
