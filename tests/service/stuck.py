"""A worker whose handlers never return (they are started and forgotten), for tests of
what the worker decides alone: timeouts, hand-backs, and what its hooks hear of them."""

from __future__ import annotations

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.context import JobContext, TaskSpec
from taskyard.domain.hooks import Hooks
from taskyard.domain.model import Job
from taskyard.domain.worker import Worker
from tests.factories import worker

TASK = "work"


class Stuck:
    """Starts handlers that never return."""

    def start(self, job: Job, context: JobContext) -> None:
        pass


class OneTask:
    def names(self) -> frozenset[str]:
        return frozenset({TASK})

    def get(self, name: str) -> TaskSpec | None:
        return TaskSpec(name=name, handler=lambda: None) if name == TASK else None


def stuck_worker(
    store: InMemoryJobStore, clock: ManualClock, hooks: Hooks, *, concurrency: int = 2
) -> Worker:
    return worker(
        store, clock, registry=OneTask(), executor=Stuck(), hooks=hooks, concurrency=concurrency
    )
