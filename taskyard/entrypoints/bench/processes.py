"""The processes `taskyard bench` starts: workers and a scheduler, each a fresh Python
(multiprocessing's *spawn*), built from the same runtime the production processes use.

A process connects first (so connection setup is not timed), says it is ready, then waits
for the go signal. It ends on SIGTERM (a graceful stop), when its parent goes away, or when
its lifetime bound passes, whichever comes first: a bench never leaves processes behind.

What the bench needs to see from inside a worker comes back through shared memory (how many
outcomes it has committed, and when the count last moved) and a queue (the moment each
probe or sleep handler started).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import attrs

from taskyard.domain.context import JobContext, Registry, TaskSpec
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings

NOOP_TASK = "bench.noop"
PROBE_TASK = "bench.probe"
SLEEP_TASK = "bench.sleep"

PROGRESS_SAMPLE_S = 0.002
"""How often a worker process publishes its committed-outcome count."""
STOP_GRACE_S = 5.0


@attrs.frozen(kw_only=True)
class ProcessSpec:
    settings: Settings
    """The bench's store and Redis keys."""
    name: str
    lifetime_s: float
    """The process ends by itself this long after it starts, whatever happens."""
    queues: tuple[str, ...] | None = None
    concurrency: int = 4
    worker_overrides: tuple[tuple[str, Any], ...] = ()
    """`WorkerConfig` fields the run sets (lease TTL, batch sizes); defaults otherwise."""


@attrs.frozen(kw_only=True)
class Started:
    """A probe or sleep handler began: which job, which attempt, in which process, when
    (`time.monotonic()`, one clock for every process of the machine)."""

    job_id: str
    attempt: int
    pid: int
    at: float
    label: int | None = None


def _registry(events: Any) -> Registry:
    registry = Registry()

    def noop() -> None:
        return None

    def probe(ctx: JobContext, i: int = 0) -> None:
        at = time.monotonic()
        events.put(Started(job_id=ctx.job_id, attempt=ctx.attempt, pid=os.getpid(), at=at, label=i))

    def sleep(ctx: JobContext, seconds: float = 0.0) -> dict[str, float]:
        at = time.monotonic()
        events.put(Started(job_id=ctx.job_id, attempt=ctx.attempt, pid=os.getpid(), at=at))
        ctx.wait(float(seconds))
        return {"slept_seconds": seconds}

    registry.add(TaskSpec(name=NOOP_TASK, handler=noop))
    registry.add(TaskSpec(name=PROBE_TASK, handler=probe))
    registry.add(TaskSpec(name=SLEEP_TASK, handler=sleep))
    return registry


class _Life:
    """SIGTERM, a parent that went away, or the lifetime bound: time to end."""

    def __init__(self, lifetime_s: float) -> None:
        self.stop = threading.Event()
        self._parent = os.getppid()
        self._deadline = time.monotonic() + lifetime_s
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us

    def over(self) -> bool:
        if os.getppid() != self._parent or time.monotonic() > self._deadline:
            self.stop.set()
        return self.stop.is_set()

    def wait(self, event: Any) -> bool:
        """Wait for `event` (a multiprocessing Event) while alive; False if life ended first."""
        while not self.over():
            if event.wait(0.1):
                return True
        return False


def worker_main(spec: ProcessSpec, ready: Any, go: Any, events: Any, progress: Any) -> None:
    """A worker process: a `WorkerRuntime` over the bench tasks. `progress[0]` is the number
    of outcomes it has had answered by the store, `progress[1]` when that last changed."""
    logging.basicConfig(level=logging.ERROR)
    life = _Life(spec.lifetime_s)
    system = bootstrap(spec.settings)
    runtime = system.worker_runtime(
        _registry(events),
        worker_id=f"{spec.name}-{os.getpid()}",
        queues=frozenset(spec.queues) if spec.queues is not None else None,
        concurrency=spec.concurrency,
        **dict(spec.worker_overrides),
    )
    system.store.now()  # open the pool's first connection before anything is timed
    ready.put(os.getpid())
    if not life.wait(go):
        return
    runtime.start()
    worker = runtime.worker
    seen = 0
    while not life.over():
        count = worker.reported_total
        if count != seen:
            progress[1] = time.monotonic()
            progress[0] = count
            seen = count
        life.stop.wait(PROGRESS_SAMPLE_S)
    runtime.stop(grace_s=STOP_GRACE_S)
    system.close()


def scheduler_main(spec: ProcessSpec, ready: Any, go: Any) -> None:
    """A scheduler process with the default settings."""
    logging.basicConfig(level=logging.ERROR)
    life = _Life(spec.lifetime_s)
    system = bootstrap(spec.settings)
    runtime = system.scheduler_runtime(scheduler_id=f"{spec.name}-{os.getpid()}")
    system.store.now()
    ready.put(os.getpid())
    if not life.wait(go):
        return
    runtime.start()
    while not life.over():
        life.stop.wait(0.1)
    runtime.stop()
    system.close()
