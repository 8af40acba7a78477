"""The shape of a world: its workers (slots, queues, tasks), schedulers and clients, the
lease TTL, how long the faults last and how long the world may take to go quiet after.

`StoreFactory` builds one node's view of the shared in-memory store; the product's is
`memory_store_view`, and tests swap in deliberately broken ones.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from taskyard.adapters.memory import InMemoryJobStore, MemoryState
from taskyard.domain.flow import QueueLimits
from taskyard.domain.ports import Clock, JobStore
from taskyard.domain.retention import Retention

TASKS: tuple[str, ...] = ("work", "report")

StoreFactory = Callable[[Clock, Clock, MemoryState], JobStore]
"""Builds one node's view of the shared store from (the store's clock, the node's own
clock, the shared state). The product's is `memory_store_view`; tests swap in broken ones."""


def memory_store_view(store_clock: Clock, node_clock: Clock, state: MemoryState) -> JobStore:
    return InMemoryJobStore(store_clock, state=state)


def describe_limits(limits: QueueLimits) -> str:
    """`limits` in a trace line: `concurrency 2, per key 1, rate 3/1.5 s, weight 2`."""
    parts: list[str] = []
    if limits.concurrency_limit is not None:
        parts.append(f"concurrency {limits.concurrency_limit}")
    if limits.key_concurrency_limit is not None:
        parts.append(f"per key {limits.key_concurrency_limit}")
    if limits.rate_limit is not None:
        parts.append(f"rate {limits.rate_limit.count}/{limits.rate_limit.period_s:g} s")
    if limits.key_rate_limit is not None:
        rate = limits.key_rate_limit
        parts.append(f"per key rate {rate.count}/{rate.period_s:g} s")
    parts.append(f"weight {limits.weight}")
    return ", ".join(parts)


@attrs.frozen(kw_only=True)
class WorkerSpec:
    name: str
    concurrency: int = 2
    queues: tuple[str, ...] | None = None
    """None: every queue."""
    tasks: tuple[str, ...] = TASKS
    vanishing: tuple[str, ...] = ()
    """Tasks it claims but finds gone when it starts the job (removed by a reload between
    the claim and the start): the job fails `unknown_task` and runs again elsewhere."""
    prefetch: int = 0
    """Claimed jobs it may hold per lane waiting for a slot (`WorkerConfig.prefetch`)."""


@attrs.frozen(kw_only=True)
class Scenario:
    workers: tuple[WorkerSpec, ...]
    schedulers: tuple[str, ...] = ("s1", "s2")
    clients: tuple[str, ...] = ("c1",)
    safety_s: float = 60.0
    """Faults happen in [0, safety_s); then everything heals."""
    liveness_max_s: float = 900.0
    """After healing, the world must go quiet within this much true time."""
    lease_ttl_s: float = 10.0
    report_linger_s: float = 0.0
    stable_ids: bool = False
    """True: a restarted node keeps its id (a container restarted with the same host and
    pid); False: each incarnation has its own (`w1.2`)."""
    events_max: int = 400_000
    retention: Retention = attrs.field(factory=Retention)
    """What the schedulers prune (the product's defaults keep everything for a whole run)."""
    lone_schedulers: tuple[str, ...] = ()
    """Schedulers built without a coordinator (as with `memory://` or none configured):
    each acts as leader all along, beside whichever leads the others."""
    limits: tuple[tuple[str, QueueLimits], ...] = ()
    """Queue limits an operator sets through the store before anything else happens."""

    def __attrs_post_init__(self) -> None:
        names = [w.name for w in self.workers] + list(self.schedulers) + list(self.clients)
        assert len(names) == len(set(names)), f"node names must be unique: {names}"
        assert self.workers, "a world needs a worker"
        assert self.schedulers, "a world needs a scheduler"
        assert set(self.lone_schedulers) <= set(self.schedulers), self.lone_schedulers
        covered = [
            w
            for w in self.workers
            if w.queues is None and set(w.tasks) == set(TASKS) and not w.vanishing
        ]
        assert covered, "some worker must take every queue and task, or jobs could wait forever"

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.workers) + self.schedulers + self.clients
