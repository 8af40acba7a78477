"""The leading scheduler prunes: a batch every `prune_every_s`, batch after batch while
they come back full (a backlog), and a standby prunes nothing."""

from __future__ import annotations

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.retention import Retention
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from tests import factories as f

PERIOD_S = 60


def _finished(store: InMemoryJobStore, count: int) -> None:
    for _ in range(count):
        f.enqueue(store)
        store.report([f.succeed(f.claim_one(store))])


def _scheduler(
    store: InMemoryJobStore, clock: ManualClock, coordinator: InMemoryCoordinator, name: str
) -> Scheduler:
    config = SchedulerConfig(
        scheduler_id=name,
        leader_ttl_s=600.0,  # the leader keeps its lease over the minutes that pass
        retention=Retention(succeeded_s=PERIOD_S),
        prune_every_s=10.0,
        prune_batch_max=4,
    )
    return Scheduler(store=store, coordinator=coordinator, clock=clock, config=config)


def test_the_leader_prunes_a_backlog_batch_by_batch_then_every_prune_every_s() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock)
    coordinator = InMemoryCoordinator(clock)
    leader = _scheduler(store, clock, coordinator, "s1")
    standby = _scheduler(store, clock, coordinator, "s2")
    _finished(store, 10)
    leader.tick()
    standby.tick()
    assert leader.leading and not standby.leading
    assert leader.last_pass is not None and leader.last_pass.pruned == 0  # not old enough

    clock.advance(PERIOD_S + 1)
    standby.tick()
    assert len(store.state.jobs) == 10  # a standby leaves pruning to the leader
    pruned = []
    for _ in range(3):
        wait = leader.tick()
        assert leader.last_pass is not None
        pruned.append(leader.last_pass.pruned)
        assert wait.until == clock.now() or leader.last_pass.pruned < 4  # full: again at once
    assert pruned == [4, 4, 2]
    assert store.state.jobs == {}

    _finished(store, 1)
    clock.advance(PERIOD_S + 1)
    leader.tick()
    assert leader.last_pass is not None and leader.last_pass.pruned == 1
