"""Under the simulator's faults (crashes, pauses, partitions, refused and ambiguous
reports, lost leases, timeouts), every attempt a worker tells its hooks it started ends
for them exactly once, unless that worker crashed (its memory is gone), and nothing ends
that did not start. The worker is the production one; only a recording hook is added."""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import pytest

from taskyard.domain.hooks import AttemptEnd, Hook, Hooks
from taskyard.domain.model import Job
from taskyard.domain.worker import Worker
from taskyard.simulation import lifecycle
from taskyard.simulation.run import simulate

SEEDS = range(1, 11)


class Balance(Hook):
    def __init__(self) -> None:
        self.started: Counter[tuple[UUID, int]] = Counter()
        self.ended: Counter[tuple[UUID, int]] = Counter()

    def attempt_started(self, job: Job) -> None:
        self.started[(job.id, job.attempt)] += 1

    def attempt_ended(self, end: AttemptEnd) -> None:
        self.ended[(end.job.id, end.job.attempt)] += 1


@pytest.mark.parametrize("seed", SEEDS)
def test_each_started_attempt_ends_once_for_the_hooks(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[str, Balance]] = []

    def recording_worker(**kwargs: Any) -> Worker:
        balance = Balance()
        built.append((kwargs["config"].worker_id, balance))
        return Worker(**kwargs, hooks=Hooks([balance]))

    monkeypatch.setattr(lifecycle, "Worker", recording_worker)
    result = simulate(seed)
    assert result.ok, result.broken
    last: dict[str, Balance] = {}
    for worker_id, balance in built:
        assert all(n == 1 for n in balance.started.values()), "started once per incarnation"
        assert all(n == 1 for n in balance.ended.values()), f"{worker_id} ended twice"
        assert set(balance.ended) <= set(balance.started), f"{worker_id} ended unstarted"
        last[worker_id] = balance
    for worker_id, balance in last.items():
        assert balance.ended == balance.started, f"{worker_id}: an attempt never ended"
    assert sum(sum(b.started.values()) for _, b in built) > 0
