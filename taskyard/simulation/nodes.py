"""The nodes of a world and what a simulated handler is.

A node is an identity (`attrs.define(eq=False)`): its name, its own clock, its views of
the store and coordinator, its incarnation (which moves on at every crash, so the loop
drops events of the node's past lives), and the production domain object it runs
(`Worker`, `Scheduler`, `Client`), rebuilt from a factory at boot and after each crash.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain.client import Client
from taskyard.domain.context import (
    HandlerTimeout,
    JobContext,
    PermanentFailure,
    Registry,
    TaskSpec,
)
from taskyard.domain.model import Job
from taskyard.domain.ports import Coordinator, JobStore
from taskyard.domain.scheduler import Scheduler
from taskyard.domain.worker import Wait, Worker
from taskyard.simulation.clocks import NodeClock
from taskyard.simulation.scenario import WorkerSpec
from taskyard.simulation.workload import Script


@attrs.define(eq=False, kw_only=True)
class Node:
    name: str
    clock: NodeClock
    store: JobStore = attrs.field(init=False)
    coordinator: Coordinator = attrs.field(init=False)
    incarnation: int = 1
    up: bool = True
    paused: bool = False
    pause_token: int = 0
    deferred: list[Callable[[], None]] = attrs.Factory(list)
    tick_gen: int = 0
    next_tick_at: float = math.inf
    lingering_down: bool = False
    """Crashed by a lingering fault: never restarted."""

    stable_id: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}.{self.incarnation}"

    @property
    def node_id(self) -> str:
        """The id it gives the coordinator and the store."""
        return self.name if self.stable_id else self.label


@attrs.define(eq=False, kw_only=True)
class WorkerNode(Node):
    spec: WorkerSpec
    worker: Worker | None = None
    wait: Wait | None = None
    handlers: dict[tuple[UUID, int], SimHandler] = attrs.Factory(dict)
    last_signal: SimSignal | None = None
    stopping: bool = False

    @property
    def busy(self) -> bool:
        """Handlers running, or a worker with work in hand."""
        return bool(self.handlers) or (self.worker is not None and not self.worker.idle)


@attrs.define(eq=False, kw_only=True)
class SchedulerNode(Node):
    scheduler: Scheduler | None = None


@attrs.define(eq=False, kw_only=True)
class ClientNode(Node):
    client: Client | None = None
    strict: Client | None = None
    """The same client as an operator configures it strictly: tasks nobody published
    refused (`TASKYARD_UNKNOWN_TASK=refuse`), the shell task on (so its args are checked)."""


def _work(
    ctx: JobContext,
    *,
    n: int,
    ms: int,
    fail: int,
    perm: bool,
    cp: int,
    stop: bool,
    changed: int = 0,
) -> Any:
    """The `work` task's signature (its args are a `Script`): the catalog publishes its
    parameters, so a submission's args are checked against them."""
    raise AssertionError("the simulated executor runs handlers itself")


def _report(ctx: JobContext, **args: Any) -> Any:
    """The `report` task takes any args (`**kwargs`): none is refused."""
    raise AssertionError("the simulated executor runs handlers itself")


HANDLERS: dict[str, Callable[..., Any]] = {"work": _work, "report": _report}


class SimRegistry:
    """A worker's tasks (`spec.tasks`). The `vanishing` ones are still in `names()`, which
    the claim reads, but gone from `get()`, which the start reads: a task removed by a
    reload between a claim and the start of what it claimed."""

    def __init__(
        self, tasks: tuple[str, ...], vanishing: tuple[str, ...] = (), *, seen: Counter[str]
    ) -> None:
        self._seen = seen
        self._names = frozenset(tasks)
        self._registry = Registry()
        for name in tasks:
            if name not in vanishing:
                self._registry.add(TaskSpec(name=name, handler=HANDLERS[name]))
        assert self._registry.names() <= self._names

    def names(self) -> frozenset[str]:
        return self._names

    def get(self, name: str) -> TaskSpec | None:
        spec = self._registry.get(name)
        if spec is None and name in self._names:
            self._seen["unknown_task"] += 1
        return spec


class SimSignal:
    """The cancellation flag of one handler: when the worker sets it, a handler that
    honours cancellation ends soon after (`on_set` schedules that end)."""

    def __init__(self, on_set: Callable[[SimHandler], None]) -> None:
        self._on_set = on_set
        self._set = False
        self.handler: SimHandler | None = None

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        if self.handler is not None:
            self._on_set(self.handler)

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        return self._set


@attrs.define(eq=False, kw_only=True)
class SimHandler:
    node: WorkerNode
    job: Job
    context: JobContext
    script: Script
    honours: bool
    injected: str | None = None
    """How an injected failure (`handler.fail`) shows, one of `MISBEHAVIOURS`."""
    done: bool = False
    error: Exception | None = None

    @property
    def label(self) -> str:
        return f"#{self.job.attempt}"

    def run(self, ctx: JobContext, **args: Any) -> Any:
        """The handler's last instant, called through the production `invoke`."""
        assert ctx.job_id == str(self.job.id), ctx.job_id
        if self.honours:
            ctx.raise_if_cancelled()
        if self.error is not None:
            raise self.error
        if self.injected is not None:
            return _misbehave(self.injected, ctx)
        if self.script.permanent:
            raise PermanentFailure("this job always fails")
        if ctx.attempt <= self.script.fail_first:
            raise RuntimeError(f"fails attempts 1 to {self.script.fail_first}")
        return {"n": self.script.n, "attempt": ctx.attempt, "from": ctx.last_checkpoint}


class _Unprintable(RuntimeError):
    def __str__(self) -> str:
        raise ValueError("this exception cannot be printed")


MISBEHAVIOURS: tuple[str, ...] = (
    "raises",
    "raises unprintable",
    "times out itself",
    "returns no JSON",
    "returns unstorable",
    "checkpoints unstorable",
)
"""How a handler the `handler.fail` site strikes goes wrong; `invoke` must classify each
as a failure (retryable or not) and never raise."""


def _misbehave(how: str, ctx: JobContext) -> Any:
    if how == "raises unprintable":
        raise _Unprintable()
    if how == "times out itself":
        raise HandlerTimeout("gave up waiting on something of its own")
    if how == "returns no JSON":
        return {"at": {1, 2}}
    if how == "returns unstorable":
        return {"text": "nul \x00 inside"}
    if how == "checkpoints unstorable":
        ctx.checkpoint({"half": "\ud800"})  # refused: raises ValidationError
    raise RuntimeError("injected handler failure")
