"""Node lifecycles: boot (the production `Worker`, `Scheduler` or `Client`, built from its
factory), ticks at the times the node asks for (its local wake-up converted to true time
through its clock's rate), doorbells, crashes, restarts, pauses and graceful stops.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import partial
from random import Random
from uuid import UUID

from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.catalog import UnknownTask
from taskyard.domain.client import Client
from taskyard.domain.hooks import Hooks
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from taskyard.domain.schedules import ScheduleSpec
from taskyard.domain.timefmt import after
from taskyard.domain.worker import Worker, WorkerConfig
from taskyard.simulation import schedules
from taskyard.simulation.adapters import UnexpectedStoreError
from taskyard.simulation.checker import Violation
from taskyard.simulation.clocks import EPOCH
from taskyard.simulation.executor import Executor, SimExecutor
from taskyard.simulation.hooking import HOOKS_BALANCED, SimHook
from taskyard.simulation.hostile import ALLOWED_HOSTS
from taskyard.simulation.loop import EventLoop
from taskyard.simulation.network import Network
from taskyard.simulation.nodes import ClientNode, Node, SchedulerNode, SimRegistry, WorkerNode
from taskyard.simulation.rand import Streams
from taskyard.simulation.scenario import Scenario

MIN_STEP_S = 0.001
"""The least true time between two steps of one node (a step takes some time)."""
ERROR_PAUSE_S = 1.0
"""After a worker's tick raised, the next tick comes this much later (as the production
runtime's control loop waits before it tries again)."""


class Lifecycle:
    def __init__(
        self,
        *,
        loop: EventLoop,
        network: Network,
        executor: Executor,
        streams: Streams,
        scenario: Scenario,
        exercised: Counter[str],
        violations: list[Violation],
    ) -> None:
        self._violations = violations
        """Broken promises to the hooks (`HOOKS_BALANCED`)."""
        self._loop = loop
        self._network = network
        self._executor = executor
        self._streams = streams
        self._scenario = scenario
        self._exercised = exercised
        self.healed = False
        """Once the world healed, a stopped worker comes back at once."""
        self.declared: tuple[ScheduleSpec, ...] = ()
        """The schedules the code declares: a scheduler syncs them when it boots."""

    def boot(self, node: Node) -> None:
        node.up = True
        if isinstance(node, WorkerNode):
            spec = node.spec
            node.stopping = False
            node.wait = None
            node.hook = self._hook(node, rng=self._streams.get(f"hooks/{node.name}"))
            node.worker = Worker(
                store=node.store,
                coordinator=node.coordinator,
                clock=node.clock,
                rng=self._streams.get(f"worker/{node.label}"),
                registry=SimRegistry(spec.tasks, spec.vanishing, seen=self._exercised),
                executor=SimExecutor(self._executor, node),
                config=WorkerConfig(
                    worker_id=node.node_id,
                    queues=frozenset(spec.queues) if spec.queues is not None else None,
                    concurrency=spec.concurrency,
                    async_concurrency=spec.concurrency,
                    lease_ttl_s=self._scenario.lease_ttl_s,
                    report_linger_s=self._scenario.report_linger_s,
                    prefetch=spec.prefetch,
                ),
                make_signal=partial(self._executor.make_signal, node),
                hooks=Hooks([node.hook]),
            )
        elif isinstance(node, SchedulerNode):
            lone = node.name in self._scenario.lone_schedulers
            node.scheduler = Scheduler(
                store=node.store,
                coordinator=None if lone else node.coordinator,
                clock=node.clock,
                config=SchedulerConfig(
                    scheduler_id=node.node_id, retention=self._scenario.retention
                ),
            )
            schedules.on_scheduler_boot(node.store, self.declared)
        elif isinstance(node, ClientNode):
            node.client = Client(
                store=node.store,
                coordinator=node.coordinator,
                clock=node.clock,
                rng=self._streams.get(f"client/{node.name}/ids"),
                builtins=BuiltinPolicy(http_allowed_hosts=ALLOWED_HOSTS),
            )
            node.strict = Client(
                store=node.store,
                coordinator=node.coordinator,
                clock=node.clock,
                rng=self._streams.get(f"client/{node.name}/strict-ids"),
                builtins=BuiltinPolicy(http_allowed_hosts=ALLOWED_HOSTS, shell_enabled=True),
                unknown_task=UnknownTask.REFUSE,
            )
            node.hooks = Hooks([self._hook(node)])
            return
        self._schedule_tick(node, self._loop.clock.t)

    def _hook(self, node: Node, *, rng: Random | None = None) -> SimHook:
        return SimHook(
            who=node.label,
            fire=self._network.fire,
            broken=self.hook_broken,
            seen=self._exercised,
            rng=rng,
        )

    def hook_broken(self, who: str, message: str, job_id: UUID | None = None) -> None:
        self._loop.note(who, f"BROKEN: {message}")
        self._violations.append(
            Violation(
                invariant=HOOKS_BALANCED,
                message=f"{who}: {message}",
                job_id=job_id,
                at=after(EPOCH, self._loop.clock.t),
            )
        )

    def _schedule_tick(self, node: Node, t: float) -> None:
        node.tick_gen += 1
        node.next_tick_at = t
        self._loop.at(t, partial(self._tick, node, node.tick_gen), node)

    def wake(self, node: Node) -> None:
        """Tick `node` soon (a handler ended, a doorbell rang)."""
        soon = self._loop.clock.t + MIN_STEP_S
        if node.next_tick_at > soon:
            self._schedule_tick(node, soon)

    def bell(self, node: SchedulerNode) -> None:
        """The scheduler's bell reaches a scheduler: it asks for its next due time."""
        if node.scheduler is None:
            return
        node.scheduler.bell()
        self.wake(node)

    def ring(self, node: WorkerNode) -> None:
        """A doorbell reaches a worker."""
        if node.worker is None:
            return
        node.worker.doorbell()
        self.wake(node)

    def _tick(self, node: Node, gen: int) -> None:
        if gen != node.tick_gen:
            return
        node.next_tick_at = math.inf
        now = self._loop.clock.t
        if isinstance(node, WorkerNode):
            assert node.worker is not None
            try:
                wait = node.worker.tick()
            except UnexpectedStoreError as exc:
                # What the production runtime does with a tick that raised: log it, and
                # try again a moment later (the worker holds no lock meanwhile).
                self._exercised["tick_failed"] += 1
                self._loop.note(node.label, f"log error: worker tick failed; trying again ({exc})")
                self._schedule_tick(node, now + ERROR_PAUSE_S)
                return
            node.wait = wait
            until = wait.until
        else:
            assert isinstance(node, SchedulerNode) and node.scheduler is not None
            until = node.scheduler.tick().until
        delay = max(node.clock.true_delay_s(until), MIN_STEP_S)
        self._schedule_tick(node, self._loop.clock.t + delay)

    def crash(self, node: Node) -> None:
        self._loop.note(node.label, "CRASH: memory lost, leases abandoned")
        self._network.disturb(node.name, 0.0)
        node.incarnation += 1
        node.up = False
        node.paused = False
        node.deferred.clear()
        node.next_tick_at = math.inf
        if isinstance(node, WorkerNode):
            node.worker = None
            node.handlers.clear()
            node.wait = None
            node.stopping = False
        elif isinstance(node, SchedulerNode):
            node.scheduler = None

    def restart(self, node: Node, incarnation: int) -> None:
        """Rebuild `node`, unless it came back or crashed again since `incarnation`."""
        if node.up or node.incarnation != incarnation or node.lingering_down:
            return
        self.boot(node)
        self._loop.note(node.label, "RESTART: rebuilt from its factory")

    def restart_later(self, node: Node, delay_s: float) -> None:
        self._loop.at(self._loop.clock.t + delay_s, partial(self.restart, node, node.incarnation))

    def pause(self, node: Node, duration_s: float) -> bool:
        if not node.up or node.paused:
            return False
        node.paused = True
        node.pause_token += 1
        token = node.pause_token
        self._network.disturb(node.name, duration_s)
        self._loop.note(node.label, f"PAUSE for {duration_s:.3f} s")
        self._loop.at(self._loop.clock.t + duration_s, partial(self.resume, node, token))
        return True

    def resume(self, node: Node, token: int) -> None:
        if not node.paused or node.pause_token != token:
            return
        node.paused = False
        self._loop.note(node.label, f"RESUME ({len(node.deferred)} events held back)")
        deferred, node.deferred = node.deferred, []
        for event in deferred:
            self._loop.at(self._loop.clock.t, event, node)

    def graceful_stop(self, node: WorkerNode, grace_s: float, down_s: float) -> None:
        assert node.worker is not None
        node.stopping = True
        self._network.disturb(node.name, grace_s)
        node.worker.stop_claiming()
        self._loop.note(node.label, f"STOP: no new claims, {grace_s:.3f} s of grace")
        self.wake(node)
        self._loop.at(self._loop.clock.t + grace_s, partial(self._finish_stop, node, down_s), node)

    def _finish_stop(self, node: WorkerNode, down_s: float) -> None:
        worker = node.worker
        assert worker is not None
        worker.abort_running()
        try:
            released = worker.release_unfinished()
        except UnexpectedStoreError as exc:
            released = 0
            self._loop.note(node.label, f"log error: hand-back failed ({exc})")
        worker.unregister()
        self._loop.note(node.label, f"STOPPED: handed back {released} lease(s)")
        self._crash_quietly(node)
        self.restart_later(node, 0.0 if self.healed else down_s)

    def scheduler_stop(self, node: SchedulerNode, down_s: float) -> None:
        """A scheduler shut down on purpose: it resigns its lease (if it leads) and leaves
        the list of live schedulers, then comes back after `down_s`."""
        assert node.scheduler is not None
        if node.scheduler.leadership is not None:
            self._exercised["scheduler_resigned"] += 1
        node.scheduler.resign()
        self._loop.note(node.label, "STOPPED: resigned, unregistered")
        self._network.disturb(node.name, 0.0)
        node.incarnation += 1
        node.up = False
        node.scheduler = None
        node.next_tick_at = math.inf
        self.restart_later(node, 0.0 if self.healed else down_s)

    def _crash_quietly(self, node: WorkerNode) -> None:
        self._network.disturb(node.name, 0.0)
        node.incarnation += 1
        node.up = False
        node.worker = None
        node.handlers.clear()
        node.wait = None
        node.stopping = False
        node.next_tick_at = math.inf
