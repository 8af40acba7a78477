"""A scheduler that stops leaves the list of live schedulers at once, leader or standby,
and a leader's stop hands the lease to the standby on its next campaign."""

from __future__ import annotations

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.scheduler import Scheduler, SchedulerConfig


def _pair() -> tuple[ManualClock, InMemoryCoordinator, Scheduler, Scheduler]:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    coordinator = InMemoryCoordinator(clock)
    first, second = (
        Scheduler(
            store=store,
            coordinator=coordinator,
            clock=clock,
            config=SchedulerConfig(scheduler_id=name),
        )
        for name in ("s1", "s2")
    )
    first.tick()
    second.tick()
    assert first.leading and not second.leading
    return clock, coordinator, first, second


def test_a_standby_that_stops_is_unlisted_at_once_and_the_leader_keeps_leading() -> None:
    _clock, coordinator, _first, second = _pair()
    assert sorted(s.id for s in coordinator.schedulers()) == ["s1", "s2"]
    second.resign()
    assert [s.id for s in coordinator.schedulers()] == ["s1"]
    lead = coordinator.leader()
    assert lead is not None and lead.holder == "s1"


def test_a_leader_that_stops_is_unlisted_and_the_standby_leads_on_its_next_campaign() -> None:
    clock, coordinator, first, second = _pair()
    first.resign()
    assert not first.leading
    assert coordinator.leader() is None
    assert [s.id for s in coordinator.schedulers()] == ["s2"]
    clock.advance(second.config.campaign_every_s)
    second.tick()
    assert second.leading
    lead = coordinator.leader()
    assert lead is not None and lead.holder == "s2"
