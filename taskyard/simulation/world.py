"""The simulated world: one event loop on a virtual clock, the shared in-memory store and
coordinator, and nodes (workers, schedulers, clients) running the production domain code.

The loop is a heap of `(at, seq, node, incarnation, event)`: events fire in time order,
ties in the order they were scheduled. An event that belongs to a node is dropped when
the node has crashed since (its incarnation moved on), and held back while the node is
paused. Nothing here reads the wall clock, starts a thread or iterates over an unsorted
set; all chance comes from the run's seed through named streams.

Each node talks to the store and coordinator through its own fault-injecting view
(`taskyard.simulation.adapters`). Workers get a simulated executor: a handler is a pair
of events (its checkpoints and its end) at virtual times, finished with the production
`invoke`, so its return or exception is classified exactly as in production.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

import attrs

from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore, MemoryState, Recorded
from taskyard.domain.client import Client
from taskyard.domain.context import (
    Cancelled,
    JobContext,
    PermanentFailure,
    TaskSpec,
    invoke,
)
from taskyard.domain.errors import IdempotencyConflict, Refusal, StoreUnavailable
from taskyard.domain.model import Job, JobState, LeaseRef
from taskyard.domain.ports import Clock, JobFilter, JobQuery, JobStore
from taskyard.domain.retention import Retention
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from taskyard.domain.timefmt import after
from taskyard.domain.transitions import Event, Report
from taskyard.domain.worker import REPORT_REFUSED, Wait, Worker, WorkerConfig
from taskyard.simulation.adapters import FaultyCoordinator, FaultyJobStore, UnexpectedStoreError
from taskyard.simulation.checker import (
    Bystander,
    CheckReport,
    History,
    Replay,
    Violation,
    check,
)
from taskyard.simulation.clocks import EPOCH, NodeClock, TrueClock, at_s
from taskyard.simulation.faults import (
    EVERYONE,
    LEADER,
    FaultAction,
    FaultKind,
    FaultPlan,
    Target,
    site_kind,
)
from taskyard.simulation.rand import Streams
from taskyard.simulation.trace import Trace
from taskyard.simulation.workload import ClientOp, OpKind, Script, Workload

S = JobState

MIN_STEP_S = 0.001
"""The least true time between two steps of one node (a step takes some time)."""
ERROR_PAUSE_S = 1.0
"""After a worker's tick raised, the next tick comes this much later (as the production
runtime's control loop waits before it tries again)."""
SUBMIT_TRIES_MAX = 6
TASKS: tuple[str, ...] = ("work", "report")
OPEN_STATES = (S.SCHEDULED, S.QUEUED, S.RUNNING, S.RETRYING)
COUNTED_EVENTS = frozenset(
    {
        Event.EXPIRE,
        Event.RELEASE,
        Event.DEPENDENCY_FAILED,
        Event.RETRY,
        Event.RESCHEDULE,
        Event.CANCEL,
    }
)

StoreFactory = Callable[[Clock, Clock, MemoryState], JobStore]
"""Builds one node's view of the shared store from (the store's clock, the node's own
clock, the shared state). The product's is `memory_store_view`; tests swap in broken ones."""


def memory_store_view(store_clock: Clock, node_clock: Clock, state: MemoryState) -> JobStore:
    return InMemoryJobStore(store_clock, state=state)


@attrs.frozen(kw_only=True)
class WorkerSpec:
    name: str
    concurrency: int = 2
    queues: tuple[str, ...] | None = None
    """None: every queue."""
    tasks: tuple[str, ...] = TASKS


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

    def __attrs_post_init__(self) -> None:
        names = [w.name for w in self.workers] + list(self.schedulers) + list(self.clients)
        assert len(names) == len(set(names)), f"node names must be unique: {names}"
        assert self.workers, "a world needs a worker"
        assert self.schedulers, "a world needs a scheduler"
        covered = [w for w in self.workers if w.queues is None and set(w.tasks) == set(TASKS)]
        assert covered, "some worker must take every queue and task, or jobs could wait forever"

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.workers) + self.schedulers + self.clients


# --- nodes ----------------------------------------------------------------------------------


@attrs.define(eq=False, kw_only=True)
class Node:
    name: str
    clock: NodeClock
    store: JobStore = attrs.field(init=False)
    coordinator: FaultyCoordinator = attrs.field(init=False)
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


@attrs.define(eq=False, kw_only=True)
class SchedulerNode(Node):
    scheduler: Scheduler | None = None


@attrs.define(eq=False, kw_only=True)
class ClientNode(Node):
    client: Client | None = None


class SimRegistry:
    def __init__(self, tasks: tuple[str, ...]) -> None:
        self._names = frozenset(tasks)
        self._specs = {name: TaskSpec(name=name, handler=_never_called) for name in tasks}

    def names(self) -> frozenset[str]:
        return self._names

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)


def _never_called(ctx: JobContext, **args: Any) -> Any:
    raise AssertionError("the simulated executor runs handlers itself")


class SimSignal:
    """The cancellation flag of one handler: when the worker sets it, a handler that
    honours cancellation ends soon after."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._set = False
        self.handler: SimHandler | None = None

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        if self.handler is not None:
            self._world.handler_aborted(self.handler)

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
    injected_failure: bool
    done: bool = False
    error: Exception | None = None

    @property
    def label(self) -> str:
        return f"#{self.job.attempt}"

    def run(self, ctx: JobContext, **args: Any) -> Any:
        """The handler's last instant, called through the production `invoke`."""
        if self.honours and ctx.cancelled:
            raise Cancelled(ctx.cancel_reason.value if ctx.cancel_reason else "cancelled")
        if self.error is not None:
            raise self.error
        if self.injected_failure:
            raise RuntimeError("injected handler failure")
        if self.script.permanent:
            raise PermanentFailure("this job always fails")
        if ctx.attempt <= self.script.fail_first:
            raise RuntimeError(f"fails attempts 1 to {self.script.fail_first}")
        return {"n": self.script.n, "attempt": ctx.attempt}


class SimExecutor:
    def __init__(self, world: World, node: WorkerNode) -> None:
        self._world = world
        self._node = node

    def start(self, job: Job, context: JobContext) -> None:
        self._world.start_handler(self._node, job, context)


class _TraceLog(logging.Handler):
    """Puts the domain's log lines into the trace, attributed to the node that ran."""

    def __init__(self, world: World) -> None:
        super().__init__(logging.DEBUG)
        self._world = world

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.msg == "attempt timed out":
            self._world.exercised["timed_out"] += 1
        for start, path in _LOGGED_PATHS:
            if text.startswith(start):
                self._world.exercised[path] += 1
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            text += f" ({self._world.job_label(UUID(str(job_id)))}"
            attempt = getattr(record, "attempt", None)
            text += f" #{attempt})" if attempt is not None else ")"
        self._world.note(self._world.current, f"log {record.levelname.lower()}: {text}")


_LOGGED_PATHS: tuple[tuple[str, str], ...] = (
    ("the store refused a batch", "report_batch_apart"),
    ("the store refused a report;", "report_replaced"),
    ("the store refused this attempt's report twice", "report_abandoned"),
    ("the store refused to take back a lease", "release_refused"),
)
"""The worker's log lines that mark a path the refusal fault must reach."""


# --- the world ------------------------------------------------------------------------------


HeapItem = tuple[float, int, Node | None, int, Callable[[], None]]


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
        self.site_counts: Counter[str] = Counter()
        self.events = 0
        self.current = "world"
        self.healed_at: float | None = None
        self.quiet_at: float | None = None
        self.cut_short: str | None = None
        self._heap: list[HeapItem] = []
        self._seq = 0
        self._sites: Mapping[str, float] = dict(plan.sites)
        self._cuts: Counter[tuple[str, Target]] = Counter()
        self._split_brain_until = -math.inf
        self._noted = 0
        self._true_at: list[datetime] = []
        self._labels: dict[UUID, str] = {}
        # what clients saw
        self.acked: dict[int, UUID] = {}
        self.acknowledged: set[UUID] = set()
        self.replays: list[Replay] = []
        self._bodies: dict[int, dict[str, Any]] = {}
        self._client_pending = 0
        self.submit_failures = 0
        # what the store refused (the refusal fault), and who was near it
        self._refused: dict[tuple[UUID, int], bool] = {}
        """(job, attempt) -> True when every report of the attempt is refused, False when
        only the outcome first sent is (its replacement lands)."""
        self._bystanders: list[tuple[Bystander, str]] = []
        self._disturbed: dict[str, list[tuple[float, float]]] = {}
        """Per node, the spans of true time in which a fault struck it (or its aftermath
        could still cost it a lease)."""

        self.nodes: dict[str, Node] = {}
        for spec in scenario.workers:
            self._add(WorkerNode(name=spec.name, clock=NodeClock(self.clock), spec=spec))
        for name in scenario.schedulers:
            self._add(SchedulerNode(name=name, clock=NodeClock(self.clock)))
        for name in scenario.clients:
            self._add(ClientNode(name=name, clock=NodeClock(self.clock)))
        self.worker_nodes = [n for n in self.nodes.values() if isinstance(n, WorkerNode)]

    def _add(self, node: Node) -> None:
        node.stable_id = self.scenario.stable_ids
        inner = self.store_factory(self.clock, node.clock, self.state)
        node.store = FaultyJobStore(self, node, inner)
        node.coordinator = FaultyCoordinator(self, node, self.coordinator)
        self.nodes[node.name] = node

    # --- the loop -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.t

    def at(self, t: float, event: Callable[[], None], node: Node | None = None) -> None:
        assert t >= self.clock.t, (t, self.clock.t)
        self._seq += 1
        inc = node.incarnation if node is not None else 0
        heapq.heappush(self._heap, (t, self._seq, node, inc, event))

    def run_until(self, t_end: float, stop: Callable[[], bool] | None = None) -> bool:
        """Fire events up to `t_end`; True when `stop()` became true."""
        heap = self._heap
        events_max = self.scenario.events_max
        while heap and heap[0][0] <= t_end:
            at, _, node, inc, event = heapq.heappop(heap)
            self.clock.move_to(at)
            if node is not None:
                if inc != node.incarnation:
                    continue
                if node.paused:
                    node.deferred.append(event)
                    continue
                self.current = node.label
            else:
                self.current = "world"
            event()
            self.events += 1
            if self.events >= events_max:
                self.cut_short = f"gave up after {events_max} events"
                return False
            if stop is not None and stop():
                return True
        if t_end > self.clock.t and t_end != math.inf:
            self.clock.move_to(t_end)
        return False

    def note(self, who: str, what: str) -> None:
        self.trace.add(self.clock.t, who, what)

    # --- setup and phases ---------------------------------------------------------------

    def start(self) -> None:
        self.note("world", f"seed {self.seed}: {self._describe_world()}")
        for line in self.plan.describe():
            self.note("world", f"plan {line}")
        for action in sorted(self.plan.actions, key=lambda a: (a.at_s, a.kind.value, a.node or "")):
            if action.at_s == 0 and action.kind in (FaultKind.CLOCK_SKEW, FaultKind.CLOCK_DRIFT):
                self._apply_action(action)  # a node's clock is off from the start
            else:
                self.at(action.at_s, partial(self._apply_action, action))
        for op in sorted(self.workload.ops, key=lambda o: (o.at_s, o.client, o.kind.value)):
            client = self.nodes[op.client]
            assert isinstance(client, ClientNode), op
            self.at(op.at_s, partial(self._client_op, client, op), client)
        for name in sorted(self.nodes):
            self._boot(self.nodes[name])

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
            return
        limit = self.clock.t + self.scenario.liveness_max_s
        if self.run_until(limit, stop=self.quiet):
            self.quiet_at = self.clock.t
            self.note("world", "quiet: every job ended, every worker idle")
        elif not self.cut_short:
            self.cut_short = f"not quiet {self.scenario.liveness_max_s:g} s after healing"

    @contextmanager
    def capture_logs(self) -> Iterator[None]:
        """Route the domain's log lines into the trace (and nowhere else) meanwhile."""
        logger = logging.getLogger("taskyard")
        handler = _TraceLog(self)
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
        self.note(
            "world",
            "HEAL: faults off, partitions healed, paused nodes resumed, "
            "crashed nodes restarted, clocks stop drifting",
        )
        self._sites = {}
        self._cuts.clear()
        self._split_brain_until = -math.inf
        for name in sorted(self.nodes):
            node = self.nodes[name]
            node.clock.set_rate(1.0)
            if node.paused:
                self._resume(node, node.pause_token)
            if not node.up and not (isinstance(node, WorkerNode) and node.stopping):
                self._restart(node, node.incarnation)
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
        self._count(action.kind)
        self.exercised["lingering"] += 1
        for name in names:
            node = self.nodes[name]
            self.note(node.label, f"LINGERING {action.kind.value}: lasts to the end")
            if action.kind is FaultKind.CRASH:
                if node.up:
                    self._crash(node)
                node.lingering_down = True
            else:
                target = (
                    Target.STORE if action.kind is FaultKind.PARTITION_STORE else Target.COORDINATOR
                )
                self._cuts[(name, target)] += 1
                if target is Target.STORE:
                    self._disturb(name, math.inf)

    def busy_nodes(self) -> str:
        """What keeps the world from being quiet (for a report)."""
        busy = [
            f"{node.label} ({len(node.handlers)} handlers running, "
            f"{'idle' if node.worker is None or node.worker.idle else 'not idle'})"
            for node in self.worker_nodes
            if node.handlers or (node.worker is not None and not node.worker.idle)
        ]
        open_jobs = sum(len(self.state.by_state[state]) for state in OPEN_STATES)
        return f"{open_jobs} open jobs; busy workers: {', '.join(busy) or 'none'}"

    def quiet(self) -> bool:
        by_state = self.state.by_state
        if any(by_state[state] for state in OPEN_STATES):
            return False
        if self._client_pending:
            return False
        for node in self.worker_nodes:
            if node.handlers or (node.worker is not None and not node.worker.idle):
                return False
        return True

    # --- driving by hand (tests) ----------------------------------------------------------

    def act(self, action: FaultAction) -> None:
        """Apply a fault now (its `at_s` is ignored)."""
        self._apply_action(action)

    def perform(self, op: ClientOp) -> None:
        """Have a client do `op` now (its `at_s` is ignored)."""
        client = self.nodes[op.client]
        assert isinstance(client, ClientNode), op
        self._client_op(client, op)

    def restart(self, name: str) -> None:
        node = self.nodes[name]
        self._restart(node, node.incarnation)

    def heal_partitions(self) -> None:
        self._cuts.clear()
        self.note("world", "partitions healed")

    def check_now(self) -> CheckReport:
        """The invariants that hold at every instant, on the history so far."""
        return check(self.history(), at_rest=False)

    # --- nodes: boot, tick, crash, restart, pause -----------------------------------------

    def _boot(self, node: Node) -> None:
        node.up = True
        if isinstance(node, WorkerNode):
            spec = node.spec
            node.stopping = False
            node.wait = None
            node.worker = Worker(
                store=node.store,
                coordinator=node.coordinator,
                clock=node.clock,
                rng=self.streams.get(f"worker/{node.label}"),
                registry=SimRegistry(spec.tasks),
                executor=SimExecutor(self, node),
                config=WorkerConfig(
                    worker_id=node.node_id,
                    queues=frozenset(spec.queues) if spec.queues is not None else None,
                    concurrency=spec.concurrency,
                    lease_ttl_s=self.scenario.lease_ttl_s,
                    report_linger_s=self.scenario.report_linger_s,
                ),
                make_signal=partial(self._make_signal, node),
            )
        elif isinstance(node, SchedulerNode):
            node.scheduler = Scheduler(
                store=node.store,
                coordinator=node.coordinator,
                clock=node.clock,
                config=SchedulerConfig(
                    scheduler_id=node.node_id, retention=self.scenario.retention
                ),
            )
        elif isinstance(node, ClientNode):
            node.client = Client(
                store=node.store,
                coordinator=node.coordinator,
                clock=node.clock,
                rng=self.streams.get(f"client/{node.name}/ids"),
            )
            return
        self._schedule_tick(node, self.clock.t)

    def _schedule_tick(self, node: Node, t: float) -> None:
        node.tick_gen += 1
        node.next_tick_at = t
        self.at(t, partial(self._tick, node, node.tick_gen), node)

    def _wake(self, node: Node) -> None:
        soon = self.clock.t + MIN_STEP_S
        if node.next_tick_at > soon:
            self._schedule_tick(node, soon)

    def _tick(self, node: Node, gen: int) -> None:
        if gen != node.tick_gen:
            return
        node.next_tick_at = math.inf
        if isinstance(node, WorkerNode):
            assert node.worker is not None
            try:
                wait = node.worker.tick()
            except UnexpectedStoreError as exc:
                # What the production runtime does with a tick that raised: log it, and
                # try again a moment later (the worker holds no lock meanwhile).
                self.exercised["tick_failed"] += 1
                self.note(node.label, f"log error: worker tick failed; trying again ({exc})")
                self._schedule_tick(node, self.clock.t + ERROR_PAUSE_S)
                return
            node.wait = wait
            until = wait.until
        else:
            assert isinstance(node, SchedulerNode) and node.scheduler is not None
            until = node.scheduler.tick().until
        delay = max(node.clock.true_delay_s(until), MIN_STEP_S)
        self._schedule_tick(node, self.clock.t + delay)

    def _crash(self, node: Node) -> None:
        self.note(node.label, "CRASH: memory lost, leases abandoned")
        self._disturb(node.name, 0.0)
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

    def _restart(self, node: Node, incarnation: int) -> None:
        if node.up or node.incarnation != incarnation or node.lingering_down:
            return
        self._boot(node)
        self.note(node.label, "RESTART: rebuilt from its factory")

    def _pause(self, node: Node, duration_s: float) -> bool:
        if not node.up or node.paused:
            return False
        node.paused = True
        node.pause_token += 1
        token = node.pause_token
        self._disturb(node.name, duration_s)
        self.note(node.label, f"PAUSE for {duration_s:.3f} s")
        self.at(self.clock.t + duration_s, partial(self._resume, node, token))
        return True

    def _resume(self, node: Node, token: int) -> None:
        if not node.paused or node.pause_token != token:
            return
        node.paused = False
        self.note(node.label, f"RESUME ({len(node.deferred)} events held back)")
        deferred, node.deferred = node.deferred, []
        for event in deferred:
            self.at(self.clock.t, event, node)

    def _graceful_stop(self, node: WorkerNode, grace_s: float, down_s: float) -> None:
        assert node.worker is not None
        node.stopping = True
        self._disturb(node.name, grace_s)
        node.worker.stop_claiming()
        self.note(node.label, f"STOP: no new claims, {grace_s:.3f} s of grace")
        self._wake(node)
        self.at(self.clock.t + grace_s, partial(self._finish_stop, node, down_s), node)

    def _finish_stop(self, node: WorkerNode, down_s: float) -> None:
        worker = node.worker
        assert worker is not None
        worker.abort_running()
        try:
            released = worker.release_unfinished()
        except UnexpectedStoreError as exc:
            released = 0
            self.note(node.label, f"log error: hand-back failed ({exc})")
        worker.unregister()
        self.note(node.label, f"STOPPED: handed back {released} lease(s)")
        self._crash_quietly(node)
        delay = 0.0 if self.healed_at is not None else down_s
        self.at(self.clock.t + delay, partial(self._restart, node, node.incarnation))

    def _crash_quietly(self, node: WorkerNode) -> None:
        self._disturb(node.name, 0.0)
        node.incarnation += 1
        node.up = False
        node.worker = None
        node.handlers.clear()
        node.wait = None
        node.stopping = False
        node.next_tick_at = math.inf

    # --- faults -------------------------------------------------------------------------

    def fire(self, site: str, who: str) -> bool:
        p = self._sites.get(site)
        if not p or self.streams.get(f"site/{site}").random() >= p:
            return False
        self.fault_counts[site_kind(site)] += 1
        self.site_counts[site] += 1
        self.note(who, f"FAULT {site}")
        if site.startswith("store.") and not site.endswith(".unexpected"):
            self._disturb(who.split(".", maxsplit=1)[0], 2 * self.scenario.lease_ttl_s)
        return True

    def _disturb(self, name: str, lasting_s: float) -> None:
        """Something struck node `name` now, for `lasting_s` (see `Bystander.excused`)."""
        self._disturbed.setdefault(name, []).append((self.clock.t, self.clock.t + lasting_s))

    def refuse(self, node: Node, op: str, about: Sequence[LeaseRef | Report]) -> None:
        """The refusal fault: raise `UnexpectedStoreError` (nothing written) when the call
        carries a job the store refuses, or when the site fires (then one job of the call
        is chosen, and stays refused)."""
        for item in about:
            ref = item.ref if isinstance(item, Report) else item
            every_report = self._refused.get((ref.job_id, ref.attempt))
            if every_report is None:
                continue
            replaced = (
                isinstance(item, Report)
                and item.error is not None
                and item.error.type == REPORT_REFUSED
            )
            if every_report or not replaced:
                label = f"{self.job_label(ref.job_id)} #{ref.attempt}"
                self.note(node.label, f"store refuses {op} of {label} again")
                raise UnexpectedStoreError(f"store.{op}: cannot take what {label} sent")
        if not self.fire(f"store.{op}.unexpected", node.label):
            return
        rng = self.streams.get("refusals")
        chosen = about[rng.randrange(len(about))]
        ref = chosen.ref if isinstance(chosen, Report) else chosen
        every_report = op != "report" or rng.random() < 0.5
        self._refused[(ref.job_id, ref.attempt)] = every_report
        label = f"{self.job_label(ref.job_id)} #{ref.attempt}"
        what = "every report of the attempt" if every_report else "this outcome only"
        self.note(node.label, f"store refuses {op} of {label} ({what})")
        now = self.clock.now()
        for job_id in sorted(self.state.jobs):
            job = self.state.jobs[job_id]
            lease = job.lease
            if (
                (job_id, job.attempt) not in self._refused  # its own refusal, not a bystander
                and job.state is S.RUNNING
                and lease is not None
                and lease.worker == node.node_id
                and lease.expires_at > now
            ):
                bystander = Bystander(
                    job_id=job_id,
                    attempt=job.attempt,
                    worker=node.node_id,
                    culprit=ref.job_id,
                    struck_at=now,
                    excused=False,
                )
                self._bystanders.append((bystander, node.name))
        raise UnexpectedStoreError(f"store.{op}: cannot take what {label} sent")

    def cut_off(self, node: str, target: Target) -> bool:
        return bool(self._cuts) and self._cuts[(node, target)] > 0

    @property
    def split_brain(self) -> bool:
        return self.clock.t < self._split_brain_until

    def _count(self, kind: FaultKind) -> None:
        self.fault_counts[kind] += 1

    def _apply_action(self, action: FaultAction) -> None:
        kind = action.kind
        node = self.nodes.get(action.node) if action.node is not None else None
        if action.node is not None and node is None:
            self.note("world", f"skipped {action.describe()}: no such node")
            return
        if kind is FaultKind.CRASH:
            assert node is not None
            if not node.up or isinstance(node, ClientNode):
                return
            self._crash(node)
            self._count(kind)
            self.at(
                self.clock.t + action.duration_s, partial(self._restart, node, node.incarnation)
            )
        elif kind is FaultKind.GRACEFUL_RESTART:
            if not isinstance(node, WorkerNode) or not node.up or node.paused or node.stopping:
                return
            self._count(kind)
            self._graceful_stop(node, grace_s=max(action.amount, 0.0), down_s=action.duration_s)
        elif kind is FaultKind.PAUSE:
            assert node is not None
            if self._pause(node, action.duration_s):
                self._count(kind)
        elif kind in (FaultKind.PARTITION_STORE, FaultKind.PARTITION_COORDINATOR):
            assert node is not None
            target = Target.STORE if kind is FaultKind.PARTITION_STORE else Target.COORDINATOR
            self._count(kind)
            self._cuts[(node.name, target)] += 1
            if target is Target.STORE:
                self._disturb(node.name, action.duration_s)
            self.note(
                node.label, f"PARTITION from the {target.value} for {action.duration_s:.3f} s"
            )
            self.at(self.clock.t + action.duration_s, partial(self._unpartition, node, target))
        elif kind is FaultKind.COORDINATOR_DATA_LOSS:
            self._count(kind)
            self.coordinator.forget_everything()
            self.note("world", "COORDINATOR DATA LOSS: leader lease, registries, doorbells gone")
        elif kind is FaultKind.CLOCK_SKEW:
            assert node is not None
            if action.amount:
                self._count(kind)
                self._disturb(node.name, abs(action.amount) + self.scenario.lease_ttl_s)
                node.clock.jump(action.amount)
                self.note(
                    node.label,
                    f"CLOCK jumps {action.amount:+.3f} s (now {node.clock.offset_s:+.3f} s off)",
                )
        elif kind is FaultKind.CLOCK_DRIFT:
            assert node is not None
            if action.amount != 1.0:
                self._count(kind)
                node.clock.set_rate(action.amount)
                self.note(node.label, f"CLOCK runs at rate {action.amount:.4f}")
        elif kind is FaultKind.SPLIT_BRAIN:
            self._count(kind)
            self._split_brain_until = max(self._split_brain_until, self.clock.t + action.duration_s)
            self.note("world", f"SPLIT BRAIN for {action.duration_s:.3f} s: every scheduler leads")
        else:  # pragma: no cover - every kind above, or a site
            raise AssertionError(f"{kind} is a site, not an action")

    def _unpartition(self, node: Node, target: Target) -> None:
        if self._cuts[(node.name, target)] > 0:
            self._cuts[(node.name, target)] -= 1
            if not self._cuts[(node.name, target)]:
                self.note(node.label, f"partition from the {target.value} healed")

    def deliver_late(self, who: str, op: str, call: Callable[[], object]) -> None:
        """A request its caller gave up on reaches the store later (in the network, so it
        arrives even if the caller has crashed since)."""
        delay = self.streams.get("late").uniform(0.05, 1.5 * self.scenario.lease_ttl_s)
        self.at(self.clock.t + delay, partial(self._land_late, who, op, call))

    def _land_late(self, who: str, op: str, call: Callable[[], object]) -> None:
        outcome = "landed"
        try:
            call()
        except Refusal as exc:
            outcome = f"refused ({type(exc).__name__})"
        finally:
            self.note_commits(f"{who}~")
        self.exercised["late_request"] += 1
        self.note(f"{who}~", f"late store.{op} {outcome}")

    # --- doorbells ----------------------------------------------------------------------

    def deliver_doorbells(self, queues: Sequence[str]) -> None:
        rung = set(queues)
        rng = self.streams.get("doorbells")
        for node in self.worker_nodes:
            wait = node.wait
            if not node.up or node.paused or wait is None or not wait.doorbell:
                continue
            if wait.queues is not None and not rung.intersection(wait.queues):
                continue
            if self.cut_off(node.name, Target.COORDINATOR):
                continue
            if self.fire("doorbell.lost", node.label):
                continue
            self.at(self.clock.t + rng.uniform(0.001, 0.02), partial(self._doorbell, node), node)
            if self.fire("doorbell.duplicate", node.label):
                self.at(self.clock.t + rng.uniform(0.02, 0.5), partial(self._doorbell, node), node)

    def _doorbell(self, node: WorkerNode) -> None:
        if node.worker is None:
            return
        node.worker.doorbell()
        self._wake(node)

    # --- the simulated executor -----------------------------------------------------------

    def _make_signal(self, node: WorkerNode) -> SimSignal:
        signal = SimSignal(self)
        node.last_signal = signal
        return signal

    def start_handler(self, node: WorkerNode, job: Job, context: JobContext) -> None:
        signal = node.last_signal
        node.last_signal = None
        assert signal is not None, "the worker makes a signal for each context it starts"
        script = Script.from_args(job.args)
        rng = self.streams.get(f"handler/{node.name}")
        duration = script.duration_s
        honours = script.honours_cancel
        notes: list[str] = []
        if self.fire("handler.slow", node.label):
            duration *= rng.uniform(4.0, 12.0)
            notes.append("slow")
        if job.timeout_s is not None and self.fire("handler.hang", node.label):
            duration = max(duration, job.timeout_s * rng.uniform(1.5, 3.0))
            honours = False
            notes.append("hangs past its timeout")
        failing = self.fire("handler.fail", node.label)
        if failing:
            notes.append("will fail")
        handler = SimHandler(
            node=node,
            job=job,
            context=context,
            script=script,
            honours=honours,
            injected_failure=failing,
        )
        signal.handler = handler
        node.handlers[(job.id, job.attempt)] = handler
        if len(node.handlers) > node.spec.concurrency:
            self.violations.append(
                Violation(
                    invariant="worker_slots",
                    message=f"{node.label} runs {len(node.handlers)} handlers with "
                    f"concurrency {node.spec.concurrency} (an abandoned handler must keep "
                    "its slot until it returns)",
                    job_id=job.id,
                    at=after(EPOCH, self.clock.t),
                )
            )
        extra = f" ({', '.join(notes)})" if notes else ""
        self.note(
            node.label,
            f"handler {self.job_label(job.id)} #{job.attempt} starts, runs {duration:.3f} s{extra}",
        )
        now = self.clock.t
        self.at(now + duration, partial(self._handler_done, handler), node)
        for k in range(1, script.checkpoints + 1):
            at = now + duration * k / (script.checkpoints + 1)
            self.at(at, partial(self._handler_checkpoint, handler, k), node)

    def handler_aborted(self, handler: SimHandler) -> None:
        if handler.done or not handler.honours:
            return
        delay = self.streams.get(f"handler/{handler.node.name}").uniform(0.01, 0.3)
        self.at(self.clock.t + delay, partial(self._handler_done, handler), handler.node)

    def _handler_checkpoint(self, handler: SimHandler, step: int) -> None:
        if handler.done or handler.error is not None:
            return
        if handler.honours and handler.context.cancelled:
            return
        who = f"handler {self.job_label(handler.job.id)} #{handler.job.attempt}"
        try:
            handler.context.checkpoint({"step": step})
        except (Refusal, StoreUnavailable) as exc:
            handler.error = exc
            self.exercised["checkpoint_refused"] += 1
            self.note(handler.node.label, f"{who} checkpoint {step} raised {type(exc).__name__}")
            self.at(self.clock.t, partial(self._handler_done, handler), handler.node)

    def _handler_done(self, handler: SimHandler) -> None:
        if handler.done:
            return
        handler.done = True
        node = handler.node
        node.handlers.pop((handler.job.id, handler.job.attempt), None)
        spec = TaskSpec(name=handler.job.task, handler=handler.run)
        result = invoke(spec, handler.job, handler.context)
        what = result.kind.value
        if result.error is not None:
            what += f" ({result.error.type}: {result.error.message})"
        self.note(
            node.label,
            f"handler {self.job_label(handler.job.id)} #{handler.job.attempt} ends {what}",
        )
        assert node.worker is not None
        node.worker.handler_finished(result)
        self._wake(node)

    # --- the store's history --------------------------------------------------------------

    def job_label(self, job_id: UUID) -> str:
        return self._labels.get(job_id, str(job_id)[-8:])

    def observe(self, who: str, what: str, job_id: UUID, attempt: int) -> None:
        self.exercised[what] += 1
        self.note(who, f"{what.replace('_', ' ')}: {self.job_label(job_id)} #{attempt}")

    def note_commits(self, who: str) -> None:
        history = self.state.history
        assert history is not None
        for index in range(self._noted, len(history)):
            record = history[index]
            self._true_at.append(self.clock.now())
            if record.event is Event.ENQUEUE:
                self._labels[record.after.id] = f"j{len(self._labels) + 1}"
            elif record.event in COUNTED_EVENTS:
                self.exercised[record.event.value] += 1
            self.trace.add(self.clock.t, who, self._describe(record))
        self._noted = len(history)

    def _describe(self, rec: Recorded) -> str:
        job = rec.after
        label = self.job_label(job.id)
        if rec.before is None:
            deps = " ".join(self.job_label(d) for d in job.depends_on)
            return (
                f"store enqueue {label} -> {job.state.value} (queue {job.queue}, "
                f"prio {job.priority}, run_at {at_s(job.run_at):.3f}, max {job.max_attempts}"
                f"{', timeout ' + format(job.timeout_s, 'g') if job.timeout_s else ''}"
                f"{', key ' + job.idempotency_key if job.idempotency_key else ''}"
                f"{', deps ' + deps if deps else ''})"
            )
        before = rec.before
        text = f"store {rec.event.value} {label} "
        if before.state is not job.state:
            text += f"{before.state.value}->{job.state.value} "
        text += f"#{job.attempt}"
        if rec.worker is not None:
            text += f" by {rec.worker}"
        if job.lease is not None:
            text += f" lease->{at_s(job.lease.expires_at):.3f}"
        if rec.event is Event.EXPIRE and before.lease is not None:
            text += f" (lease {at_s(before.lease.expires_at):.3f} expired)"
        if job.state is S.RETRYING and before.state is not S.RETRYING:
            text += f" run_at {at_s(job.run_at):.3f}"
        if job.cancel_requested and not before.cancel_requested:
            text += " cancel requested"
        if rec.event is Event.RETRY or job.attempt_limit != before.attempt_limit:
            text += f" limit {job.attempt_limit}"
        return text

    def history(self) -> History:
        history = self.state.history
        assert history is not None
        assert len(self._true_at) == len(history), "every commit went through a node's view"
        log = [
            rec if rec.at == true_at else attrs.evolve(rec, at=true_at)
            for rec, true_at in zip(history, self._true_at, strict=True)
        ]
        pruned = {p.job.id: p for p in self.state.pruned or ()}
        return History(
            jobs={**{job_id: p.job for job_id, p in pruned.items()}, **self.state.jobs},
            attempts={
                **{job_id: list(p.attempts) for job_id, p in pruned.items()},
                **{job_id: list(records) for job_id, records in self.state.attempts.items()},
            },
            pruned=pruned,
            log=log,
            acknowledged=frozenset(self.acknowledged),
            replays=tuple(self.replays),
            bystanders=tuple(self._judged_bystanders()),
        )

    def _judged_bystanders(self) -> Iterator[Bystander]:
        """Each bystander (but those the store later refused themselves), excused when its
        worker's node was struck by anything else from a lease TTL before the refusal until
        the bystander's lease lapsed (or now)."""
        for bystander, name in self._bystanders:
            if (bystander.job_id, bystander.attempt) in self._refused:
                continue  # refused itself later: no longer a bystander
            records = self.state.attempts.get(bystander.job_id, [])
            record = next((a for a in records if a.attempt == bystander.attempt), None)
            start = at_s(bystander.struck_at) - self.scenario.lease_ttl_s
            end = at_s(record.lease_expires_at) if record is not None else self.clock.t
            excused = any(
                begin <= end and start <= until for begin, until in self._disturbed.get(name, ())
            )
            yield attrs.evolve(bystander, excused=excused)

    # --- clients --------------------------------------------------------------------------

    def _client_op(self, node: ClientNode, op: ClientOp) -> None:
        plans = self.workload.plans
        if op.kind is OpKind.SUBMIT:
            bodies: list[tuple[int, dict[str, Any]]] = []
            for index in op.plans:
                plan = plans[index]
                body = plan.body(
                    dep_ids=tuple(str(self.acked[d]) for d in plan.deps if d in self.acked),
                    run_at=(
                        after(node.clock.now(), plan.run_at_ahead_s)
                        if plan.run_at_ahead_s is not None
                        else None
                    ),
                )
                self._bodies[index] = body
                bodies.append((index, body))
            self._submit(node, op, bodies, 1)
        elif op.kind in (OpKind.RESUBMIT, OpKind.CONFLICT):
            index = op.plans[0]
            if index not in self.acked or plans[index].key is None:
                return
            body = self._bodies[index]
            if op.kind is OpKind.CONFLICT:
                body = plans[index].body(
                    dep_ids=tuple(body.get("depends_on", ())),
                    run_at=body.get("run_at"),
                    args_extra=1 + index,
                )
            self._submit(node, op, [(index, body)], 1)
        elif op.kind is OpKind.CANCEL:
            if op.plans[0] in self.acked:
                self._person(node, "cancel", self.acked[op.plans[0]])
        elif op.kind is OpKind.CANCEL_RUNNING:
            chosen = self._pick(node, frozenset({S.RUNNING}))
            if chosen is not None:
                self._person(node, "cancel", chosen)
        elif op.kind is OpKind.RETRY_DEAD:
            chosen = self._pick(node, frozenset({S.DEAD})) or self._pick(
                node, frozenset({S.CANCELLED})
            )
            if chosen is not None:
                self._person(node, "retry", chosen)
        elif op.kind is OpKind.RESCHEDULE and op.plans[0] in self.acked:
            run_at = after(node.clock.now(), op.amount)
            self._person(node, "reschedule", self.acked[op.plans[0]], run_at=run_at)

    def _pick(self, node: ClientNode, states: frozenset[JobState]) -> UUID | None:
        try:
            page = node.store.list_jobs(JobQuery(filter=JobFilter(states=states), limit=1000))
        except StoreUnavailable as exc:
            self.note(node.label, f"list {'/'.join(sorted(states))} failed: {exc}")
            return None
        ids = sorted(job.id for job in page.jobs)
        if not ids:
            return None
        return self.streams.get(f"client/{node.name}/ops").choice(ids)

    def _person(self, node: ClientNode, action: str, job_id: UUID, **kwargs: Any) -> None:
        label = self.job_label(job_id)
        try:
            if action == "cancel":
                assert node.client is not None
                job = node.client.cancel(job_id)
            elif action == "retry":
                job = node.store.retry(job_id)
            else:
                job = node.store.reschedule(
                    job_id,
                    priority=self.streams.get(f"client/{node.name}/ops").randint(-5, 5),
                    **kwargs,
                )
        except Refusal as exc:
            self.note(node.label, f"{action} {label} refused: {type(exc).__name__}")
            return
        except StoreUnavailable as exc:
            self.note(node.label, f"{action} {label} failed: {exc}")
            return
        self.note(node.label, f"{action} {label}: now {job.state.value}")

    def _submit(
        self,
        node: ClientNode,
        op: ClientOp,
        bodies: list[tuple[int, dict[str, Any]]],
        tries: int,
    ) -> None:
        assert node.client is not None
        names = ",".join(f"p{index}" for index, _ in bodies)
        try:
            # The task's defaults come from the catalog: a parse may read the store too.
            submissions = [node.client.parse(body) for _, body in bodies]
            enqueued = node.client.submit(submissions)
        except StoreUnavailable as exc:
            self.submit_failures += 1
            if tries >= SUBMIT_TRIES_MAX:
                self.note(node.label, f"{op.kind.value} {names} given up: {exc}")
                return
            delay = self.streams.get(f"client/{node.name}/ops").uniform(0.2, 1.0) * tries
            self.note(node.label, f"{op.kind.value} {names} failed ({exc}); again in {delay:.3f} s")
            self._client_pending += 1
            self.at(
                self.clock.t + delay,
                partial(self._resubmit_later, node, op, bodies, tries + 1),
                node,
            )
            return
        except IdempotencyConflict as exc:
            if op.kind is not OpKind.CONFLICT:
                raise AssertionError(f"{op.kind.value} {names} refused: {exc}") from exc
            index = bodies[0][0]
            self.replays.append(
                Replay(
                    key=str(bodies[0][1]["idempotency_key"]),
                    first_job_id=self.acked[index],
                    replay_job_id=None,
                    same_body=False,
                )
            )
            self.note(node.label, f"conflict {names} refused: {exc}")
            return
        for (index, body), result in zip(bodies, enqueued, strict=True):
            job_id = result.job.id
            how = "created" if result.created else "found existing"
            self.note(
                node.label,
                f"{op.kind.value} p{index} accepted: {how} "
                f"{self.job_label(job_id)} ({result.job.state.value})",
            )
            if op.kind is OpKind.SUBMIT:
                self.acked[index] = job_id
                self.acknowledged.add(job_id)
            else:
                self.acknowledged.add(job_id)
                self.replays.append(
                    Replay(
                        key=str(body["idempotency_key"]),
                        first_job_id=self.acked[index],
                        replay_job_id=job_id,
                        same_body=op.kind is OpKind.RESUBMIT,
                    )
                )

    def _resubmit_later(
        self,
        node: ClientNode,
        op: ClientOp,
        bodies: list[tuple[int, dict[str, Any]]],
        tries: int,
    ) -> None:
        self._client_pending -= 1
        self._submit(node, op, bodies, tries)
