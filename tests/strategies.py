"""Shared hypothesis strategies (and the small world they are drawn for)."""

from __future__ import annotations

from hypothesis import strategies as st

from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.simulation.faults import FaultAction, FaultKind, FaultPlan
from taskyard.simulation.workload import ClientOp, JobPlan, OpKind, Script, Workload
from taskyard.simulation.world import Scenario, WorkerSpec

SMALL_WORLD = Scenario(
    workers=(WorkerSpec(name="w1", concurrency=2), WorkerSpec(name="w2", concurrency=1)),
    schedulers=("s1", "s2"),
    clients=("c1",),
    safety_s=40.0,
    liveness_max_s=120.0,
)
PROCESSES = ("w1", "w2", "s1", "s2")
NODES = (*PROCESSES, "c1")


def _plan(index: int, duration_s: float, **kwargs: object) -> JobPlan:
    defaults: dict[str, object] = {
        "task": "work",
        "queue": "default",
        "priority": 0,
        "max_attempts": 3,
        "backoff_base_s": 0.5,
        "backoff_max_s": 2.0,
        "jitter": "full",
    }
    defaults.update(kwargs)
    script = Script(n=index, duration_s=duration_s, checkpoints=1 if duration_s > 5 else 0)
    return JobPlan(index=index, script=script, **defaults)  # type: ignore[arg-type]


SMALL_PLANS: tuple[JobPlan, ...] = (
    _plan(0, 3.0),
    _plan(1, 14.0),  # outlives a lease: only heartbeats keep it
    _plan(2, 1.0, deps=(0,)),
    _plan(3, 6.0, key="k3", priority=2),
    _plan(4, 0.5, delay_s=8.0),
    _plan(5, 9.0, queue="mail", timeout_s=20.0),
)


def small_workload(*, submit: bool = True) -> Workload:
    """Six jobs submitted in the first 16 s (or none, for a test that submits by hand)."""
    ops = (
        tuple(
            ClientOp(
                at_s=1.0 + 3.0 * plan.index, client="c1", kind=OpKind.SUBMIT, plans=(plan.index,)
            )
            for plan in SMALL_PLANS
        )
        if submit
        else ()
    )
    return Workload(plans=SMALL_PLANS, ops=ops)


@st.composite
def fault_actions(draw: st.DrawFn) -> FaultAction:
    """One timed fault for `SMALL_WORLD`."""
    kind = draw(
        st.sampled_from(
            (
                FaultKind.CRASH,
                FaultKind.PAUSE,
                FaultKind.PARTITION_STORE,
                FaultKind.PARTITION_COORDINATOR,
                FaultKind.GRACEFUL_RESTART,
                FaultKind.COORDINATOR_DATA_LOSS,
                FaultKind.CLOCK_SKEW,
                FaultKind.SPLIT_BRAIN,
            )
        )
    )
    at_s = draw(st.integers(min_value=0, max_value=3500)) / 100
    if kind in (FaultKind.COORDINATOR_DATA_LOSS, FaultKind.SPLIT_BRAIN):
        return FaultAction(at_s=at_s, kind=kind, duration_s=draw(st.integers(1, 20)))
    if kind is FaultKind.CLOCK_SKEW:
        return FaultAction(
            at_s=at_s,
            kind=kind,
            node=draw(st.sampled_from(NODES)),
            amount=draw(st.integers(-30, 30)),
        )
    nodes = (
        ("w1", "w2")
        if kind is FaultKind.GRACEFUL_RESTART
        else (
            NODES
            if kind in (FaultKind.PARTITION_STORE, FaultKind.PARTITION_COORDINATOR)
            else PROCESSES
        )
    )
    return FaultAction(
        at_s=at_s,
        kind=kind,
        node=draw(st.sampled_from(nodes)),
        duration_s=draw(st.integers(1, 30)),
        amount=1.0,
    )


@st.composite
def fault_plans(draw: st.DrawFn, *, with_sites: bool = True) -> FaultPlan:
    """A fault schedule for `SMALL_WORLD`: timed faults in its safety window, and maybe
    some store and doorbell sites. Shrinks towards fewer, earlier, shorter faults."""
    actions = draw(st.lists(fault_actions(), max_size=8))
    sites: dict[str, float] = {}
    if with_sites:
        for site in draw(
            st.lists(
                st.sampled_from(
                    (
                        "store.report.reply_lost",
                        "store.claim.reply_lost",
                        "store.heartbeat.unavailable",
                        "store.report.unavailable",
                        "store.report.delayed",
                        "store.heartbeat.delayed",
                        "doorbell.lost",
                        "doorbell.duplicate",
                    )
                ),
                unique=True,
                max_size=3,
            )
        ):
            sites[site] = draw(st.integers(1, 30)) / 100
    return FaultPlan(actions=tuple(actions), sites=sites)


# --- store histories ----------------------------------------------------------------------

STORE_QUEUES = ("a", "b", "c")
STORE_TASKS = ("t1", "t2")
STORE_WORKERS = ("w1", "w2")
milliseconds = st.integers(min_value=1, max_value=5_000)
"""Lease TTLs, delays and clock steps in whole milliseconds (every store keeps microseconds,
so no rounding can tell two stores apart)."""


@st.composite
def store_ops(draw: st.DrawFn, *, kinds: tuple[str, ...] | None = None) -> tuple[object, ...]:
    """One step of a store history (`tests.integration.test_hot_paths.History` plays it)."""
    kind = draw(
        st.sampled_from(
            kinds
            or ["enqueue"] * 2
            + ["claim"] * 3
            + ["advance"] * 2
            + ["heartbeat", "report", "report", "release", "cancel", "pause", "scheduler"]
        )
    )
    pick = draw(st.integers(min_value=0, max_value=50))
    if kind == "enqueue":
        return (
            kind,
            draw(st.integers(min_value=1, max_value=4)),
            draw(st.sampled_from(STORE_QUEUES)),
            draw(st.sampled_from(STORE_TASKS)),
            draw(st.sampled_from([0, 0, 0, 1, -1])),  # ties, so run_at and id decide
            draw(st.none() | st.just(0) | milliseconds),
            draw(st.integers(min_value=1, max_value=3)),
            draw(st.booleans()),  # depends on an earlier job
            draw(st.none() | st.sampled_from(["k1", "k2"])),
        )
    if kind == "claim":
        return (
            kind,
            draw(st.sampled_from(STORE_WORKERS)),
            draw(st.integers(min_value=1, max_value=4)),
            draw(milliseconds | st.just(600_000)),  # a lease that lapses, or one that lasts
        )
    if kind == "report":
        outcome = draw(st.sampled_from(["succeeded", "failed", "timeout"]))
        return (kind, pick, outcome, draw(st.booleans()))
    if kind == "pause":
        return (kind, draw(st.sampled_from(STORE_QUEUES)), draw(st.booleans()))
    if kind == "advance":
        return (kind, draw(milliseconds))
    return (kind, pick, draw(milliseconds))


store_histories = st.tuples(
    st.lists(store_ops(kinds=("enqueue",)), min_size=2, max_size=5),
    st.lists(store_ops(), min_size=4, max_size=30),
).map(lambda parts: [*parts[0], *parts[1]])
"""A few enqueues, then anything: enough jobs and leases for a hot path to meet."""


jitters = st.sampled_from(list(Jitter))


@st.composite
def retry_policies(draw: st.DrawFn) -> RetryPolicy:
    base_s = draw(st.floats(min_value=0.001, max_value=3600, allow_nan=False))
    factor = draw(st.floats(min_value=1.0, max_value=10.0, allow_nan=False))
    max_s = draw(st.floats(min_value=base_s, max_value=base_s * 1e6, allow_nan=False))
    return RetryPolicy(base_s=base_s, factor=factor, max_s=max_s, jitter=draw(jitters))


attempt_numbers = st.integers(min_value=1, max_value=5000)
priorities = st.integers(min_value=-100, max_value=100)
queue_names = st.sampled_from(["default", "mail", "reports"])
