"""The simulated world: the shared in-memory store and coordinator, the nodes (workers,
schedulers, clients) running the production domain code, and the phases of a run.

A world is put together from parts, each in its own module:

* `loop`: the event loop on the true clock, and the trace;
* `network`: partitions, the named fault sites, late requests, doorbells, the store's
  refusals (the `Wire` that each node's fault-injecting wrappers in `adapters` get);
* `nodes` and `lifecycle`: the nodes, and how they boot, tick, crash, restart and pause;
* `executor`: simulated handlers as events, ended through the production `invoke`;
* `actions`: the timed faults, a table from fault kind to handler;
* `clients`: what clients and people do (the workload's operations);
* `ledger`: the store's history as it happened, and the domain's log lines.

Nothing here reads the wall clock, starts a thread or iterates over an unsorted set; all
chance comes from the run's seed through named streams.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from uuid import UUID

from taskyard.adapters.memory import InMemoryCoordinator, MemoryState
from taskyard.domain.model import JobState
from taskyard.simulation import schedules
from taskyard.simulation.actions import STRIKES, Stage, linger
from taskyard.simulation.adapters import FaultyCoordinator, FaultyJobStore
from taskyard.simulation.checker import CheckReport, History, Replay, Violation, check
from taskyard.simulation.clients import Clients
from taskyard.simulation.clocks import NodeClock, TrueClock
from taskyard.simulation.executor import Executor
from taskyard.simulation.faults import EVERYONE, LEADER, FaultAction, FaultKind, FaultPlan
from taskyard.simulation.ledger import Ledger, TraceLog
from taskyard.simulation.lifecycle import Lifecycle
from taskyard.simulation.loop import EventLoop
from taskyard.simulation.network import Network
from taskyard.simulation.nodes import ClientNode, Node, SchedulerNode, WorkerNode
from taskyard.simulation.rand import Streams
from taskyard.simulation.scenario import (
    TASKS,
    Scenario,
    StoreFactory,
    WorkerSpec,
    describe_limits,
    memory_store_view,
)
from taskyard.simulation.trace import Trace
from taskyard.simulation.workload import ClientOp, Workload

__all__ = [
    "TASKS",
    "Scenario",
    "StoreFactory",
    "WorkerSpec",
    "World",
    "describe_limits",
    "memory_store_view",
]

S = JobState

OPEN_STATES = (S.SCHEDULED, S.QUEUED, S.RUNNING, S.RETRYING)


class World:
    def __init__(
        self,
        *,
        seed: int,
        scenario: Scenario,
        plan: FaultPlan,
        workload: Workload,
        store_factory: StoreFactory = memory_store_view,
    ) -> None:
        self.seed = seed
        self.scenario = scenario
        self.plan = plan
        self.workload = workload
        self.streams = Streams(seed)
        self.clock = TrueClock()
        self.state = MemoryState(keep_history=True)
        self.coordinator = InMemoryCoordinator(self.clock)
        self.store_factory = store_factory
        self.trace = Trace()
        self.fault_counts: Counter[FaultKind] = Counter()
        self.exercised: Counter[str] = Counter()
        """How often interesting paths ran (stale reports refused, retries already applied,
        leases lost, ...): a green run says little unless these happen."""
        self.violations: list[Violation] = []
        """Broken promises seen while running (the checker sees the rest afterwards)."""
        self.hook_violations: list[Violation] = []
        """Broken promises to the lifecycle hooks (`HOOKS_BALANCED`)."""
        self.site_counts: Counter[str] = Counter()
        self.healed_at: float | None = None
        self.quiet_at: float | None = None
        self.schedule_log = schedules.ScheduleLog(specs=())

        self.loop = EventLoop(self.clock, self.trace, events_max=scenario.events_max)
        self.ledger = Ledger(self.loop, self.state, self.exercised)
        self.network = Network(
            loop=self.loop,
            streams=self.streams,
            ledger=self.ledger,
            state=self.state,
            sites=dict(plan.sites),
            lease_ttl_s=scenario.lease_ttl_s,
            fault_counts=self.fault_counts,
            site_counts=self.site_counts,
            exercised=self.exercised,
        )
        self.clients = Clients(
            loop=self.loop,
            ledger=self.ledger,
            streams=self.streams,
            workload=workload,
            exercised=self.exercised,
            redeploy=self._redeploy,
        )

        def wake(node: Node) -> None:  # the lifecycle is built next, around the executor
            self.lifecycle.wake(node)

        executor = Executor(
            loop=self.loop,
            network=self.network,
            ledger=self.ledger,
            streams=self.streams,
            exercised=self.exercised,
            violations=self.violations,
            wake=wake,
        )
        self.lifecycle = Lifecycle(
            loop=self.loop,
            network=self.network,
            executor=executor,
            streams=self.streams,
            scenario=scenario,
            exercised=self.exercised,
            violations=self.hook_violations,
        )
        self.nodes: dict[str, Node] = {}
        self.stage = Stage(
            loop=self.loop,
            network=self.network,
            lifecycle=self.lifecycle,
            coordinator=self.coordinator,
            lease_ttl_s=scenario.lease_ttl_s,
            nodes=self.nodes,
        )

        for spec in scenario.workers:
            self._add(WorkerNode(name=spec.name, clock=NodeClock(self.clock), spec=spec))
        for name in scenario.schedulers:
            self._add(SchedulerNode(name=name, clock=NodeClock(self.clock)))
        for name in scenario.clients:
            self._add(ClientNode(name=name, clock=NodeClock(self.clock)))
        self.worker_nodes = [n for n in self.nodes.values() if isinstance(n, WorkerNode)]
        self.network.workers = self.worker_nodes
        self.network.ring = self.lifecycle.ring
        self.network.schedulers = [n for n in self.nodes.values() if isinstance(n, SchedulerNode)]
        self.network.bell = self.lifecycle.bell

    def _add(self, node: Node) -> None:
        node.stable_id = self.scenario.stable_ids
        inner = self.store_factory(self.clock, node.clock, self.state)
        node.store = FaultyJobStore(self.network, node, inner)
        node.coordinator = FaultyCoordinator(self.network, node, self.coordinator)
        self.nodes[node.name] = node

    # --- the loop -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.t

    @property
    def events(self) -> int:
        return self.loop.events

    @property
    def current(self) -> str:
        return self.loop.current

    @property
    def cut_short(self) -> str | None:
        return self.loop.cut_short

    def at(self, t: float, event: Callable[[], None], node: Node | None = None) -> None:
        self.loop.at(t, event, node)

    def run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> bool:
        """Fire events up to `t_end`; True when `stop()` became true."""
        return self.loop.run_until(t_end, stop)

    def note(self, who: str, what: str) -> None:
        self.loop.note(who, what)

    # --- what clients saw -----------------------------------------------------------------

    @property
    def acked(self) -> dict[int, UUID]:
        return self.clients.acked

    @property
    def acknowledged(self) -> set[UUID]:
        return self.clients.acknowledged

    @property
    def replays(self) -> list[Replay]:
        return self.clients.replays

    @property
    def submit_failures(self) -> int:
        return self.clients.submit_failures

    # --- setup and phases ---------------------------------------------------------------

    def start(self) -> None:
        self.note("world", f"seed {self.seed}: {self._describe_world()}")
        for line in self.plan.describe():
            self.note("world", f"plan {line}")
        self._set_limits()
        for action in sorted(self.plan.actions, key=lambda a: (a.at_s, a.kind.value, a.node or "")):
            if action.at_s == 0 and action.kind in (FaultKind.CLOCK_SKEW, FaultKind.CLOCK_DRIFT):
                self._apply_action(action)  # a node's clock is off from the start
            else:
                self.at(action.at_s, partial(self._apply_action, action))
        for op in sorted(self.workload.ops, key=lambda o: (o.at_s, o.client, o.kind.value)):
            client = self.nodes[op.client]
            assert isinstance(client, ClientNode), op
            self.at(op.at_s, partial(self.clients.perform, client, op), client)
        self.schedule_log = schedules.install(self, self.workload.schedules)
        self.lifecycle.declared = self.workload.schedules
        for name in sorted(self.nodes):
            self.lifecycle.boot(self.nodes[name])

    def _set_limits(self) -> None:
        """An operator sets the queues' limits through the store, before anything runs."""
        operator = self.nodes[self.scenario.clients[0]]
        assert isinstance(operator, ClientNode), operator
        for queue, limits in self.scenario.limits:
            self.clients.set_limits(operator, queue, limits)
            self.note(operator.label, f"limits of queue {queue}: {describe_limits(limits)}")

    def _describe_world(self) -> str:
        workers = ", ".join(
            f"{w.name} x{w.concurrency} [{'/'.join(w.queues) if w.queues else 'all'}]"
            f"{'' if set(w.tasks) == set(TASKS) else ' tasks ' + '/'.join(w.tasks)}"
            for w in self.scenario.workers
        )
        return (
            f"workers {workers}; schedulers {', '.join(self.scenario.schedulers)}; "
            f"clients {', '.join(self.scenario.clients)}; {len(self.workload.plans)} plans, "
            f"{len(self.workload.ops)} client ops; lease ttl {self.scenario.lease_ttl_s:g} s"
        )

    def run(self) -> None:
        """Faults for `safety_s`, then heal and run until quiet (bounded)."""
        with self.capture_logs():
            self.start()
            self.run_until(self.scenario.safety_s)
            if not self.cut_short:
                self.settle()

    def settle(self) -> None:
        """Heal every fault, then run until every job ended and every worker is idle, for
        at most `liveness_max_s` of true time."""
        self.heal()
        if self.quiet():
            self.quiet_at = self.clock.t
            self._hooks_at_rest()
            return
        limit = self.clock.t + self.scenario.liveness_max_s
        if self.run_until(limit, stop=self.quiet):
            self.quiet_at = self.clock.t
            self.note("world", "quiet: every job ended, every worker idle")
            self._hooks_at_rest()
        elif not self.cut_short:
            self.loop.cut_short = f"not quiet {self.scenario.liveness_max_s:g} s after healing"

    @contextmanager
    def capture_logs(self) -> Iterator[None]:
        """Route the domain's log lines into the trace (and nowhere else) meanwhile."""
        logger = logging.getLogger("taskyard")
        handler = TraceLog(self.loop, self.ledger, self.exercised)
        saved = (logger.level, logger.propagate)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]

    def heal(self) -> None:
        self.healed_at = self.clock.t
        self.lifecycle.healed = True
        self.note(
            "world",
            "HEAL: faults off, partitions healed, paused nodes resumed, "
            "crashed nodes restarted, clocks stop drifting",
        )
        self.network.heal()
        self.at(self.clock.t + schedules.STOP_AFTER_HEAL_S, self._stop_schedules)
        for name in sorted(self.nodes):
            node = self.nodes[name]
            node.clock.set_rate(1.0)
            if node.paused:
                self.lifecycle.resume(node, node.pause_token)
            if not node.up and not (isinstance(node, WorkerNode) and node.stopping):
                self.lifecycle.restart(node, node.incarnation)
        for action in self.plan.lingering:
            self._linger(action)

    def _linger(self, action: FaultAction) -> None:
        """Start a fault that lasts through the liveness phase."""
        if action.node == EVERYONE:
            names = sorted(self.nodes)
        elif action.node == LEADER:
            leader = self.coordinator.leader()
            holder = leader.holder.split(".")[0] if leader is not None else None
            names = [holder if holder in self.nodes else self.scenario.schedulers[0]]
        else:
            assert action.node is not None, action
            names = [action.node]
        self.fault_counts[action.kind] += 1
        self.exercised["lingering"] += 1
        for name in names:
            linger(self.stage, action, self.nodes[name])

    def _hooks_at_rest(self) -> None:
        """Quiet: every attempt a live worker's hooks heard start has ended for them."""
        for node in self.worker_nodes:
            if node.hook is not None and node.up:
                for job_id, attempt in node.hook.open_attempts():
                    self.lifecycle.hook_broken(
                        node.label, f"{self.job_label(job_id)} #{attempt} never ended", job_id
                    )

    def busy_nodes(self) -> str:
        """What keeps the world from being quiet (for a report)."""
        busy = [
            f"{node.label} ({len(node.handlers)} handlers running, "
            f"{'idle' if node.worker is None or node.worker.idle else 'not idle'})"
            for node in self.worker_nodes
            if node.busy
        ]
        open_jobs = sum(len(self.state.by_state[state]) for state in OPEN_STATES)
        return f"{open_jobs} open jobs; busy workers: {', '.join(busy) or 'none'}"

    def _stop_schedules(self) -> None:
        schedules.stop(self, self.schedule_log)

    def quiet(self) -> bool:
        if self.schedule_log.specs and self.schedule_log.stopped_at_s is None:
            return False
        by_state = self.state.by_state
        if any(by_state[state] for state in OPEN_STATES):
            return False
        if self.clients.pending:
            return False
        return not any(node.busy for node in self.worker_nodes)

    # --- driving by hand (tests) ----------------------------------------------------------

    def act(self, action: FaultAction) -> None:
        """Apply a fault now (its `at_s` is ignored)."""
        self._apply_action(action)

    def perform(self, op: ClientOp) -> None:
        """Have a client do `op` now (its `at_s` is ignored)."""
        client = self.nodes[op.client]
        assert isinstance(client, ClientNode), op
        self.clients.perform(client, op)

    def restart(self, name: str) -> None:
        node = self.nodes[name]
        self.lifecycle.restart(node, node.incarnation)

    def heal_partitions(self) -> None:
        self.network.heal_partitions()
        self.note("world", "partitions healed")

    def check_now(self) -> CheckReport:
        """The invariants that hold at every instant, on the history so far."""
        return check(self.history(), at_rest=False)

    # --- faults -------------------------------------------------------------------------

    def _apply_action(self, action: FaultAction) -> None:
        node = self.nodes.get(action.node) if action.node is not None else None
        if action.node is not None and node is None:
            self.note("world", f"skipped {action.describe()}: no such node")
            return
        strike = STRIKES.get(action.kind)
        assert strike is not None, f"{action.kind} is a site, not an action"
        if strike(self.stage, action, node):
            self.fault_counts[action.kind] += 1

    def _redeploy(self, worker_id: str, grace_s: float) -> bool:
        """A person's redeploy of the worker that runs as `worker_id` (not a fault: it is
        part of the workload)."""
        for node in self.worker_nodes:
            if node.node_id == worker_id and node.up and not node.paused and not node.stopping:
                self.lifecycle.graceful_stop(node, grace_s=grace_s, down_s=1.0)
                return True
        return False

    # --- the store's history --------------------------------------------------------------

    def job_label(self, job_id: UUID) -> str:
        return self.ledger.job_label(job_id)

    def history(self) -> History:
        pruned = {p.job.id: p for p in self.state.pruned or ()}
        return History(
            jobs={**{job_id: p.job for job_id, p in pruned.items()}, **self.state.jobs},
            attempts={
                **{job_id: list(p.attempts) for job_id, p in pruned.items()},
                **{job_id: list(records) for job_id, records in self.state.attempts.items()},
            },
            pruned=pruned,
            log=self.ledger.log(),
            acknowledged=frozenset(self.clients.acknowledged),
            replays=tuple(self.clients.replays),
            bystanders=tuple(self.network.judged_bystanders()),
            limits=dict(self.scenario.limits),
        )
