"""Shared hypothesis strategies (and the small world they are drawn for)."""

from __future__ import annotations

import inspect
from datetime import UTC, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from taskyard.domain import schema
from taskyard.domain.management import CANCELLABLE_STATES, RETRYABLE_STATES
from taskyard.domain.ports import JobFilter
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
                        "store.report.unexpected",
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

# --- values a client or a handler may hand in ----------------------------------------------

hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),  # surrogates included
        st.sampled_from(["\x00", "\ud800", "\udfff", "\n", "\u2028", "\ufeff"]),
    ),
    max_size=8,
)
"""Text as a hostile client or a careless handler sends it: NUL, lone surrogates, line
breaks and everything else."""

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(4299, 4301).map(lambda digits: 10**digits - 1),  # around INT_DIGITS_MAX
    st.floats(allow_subnormal=True),  # NaN and infinities included
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(hostile_text, children, max_size=4),
    ),
    max_leaves=12,
)
"""JSON-like values (as Python holds them) a store may or may not be able to keep."""


# --- jobs in any state, and bulk filters over them ------------------------------------------

FATES = ("queued", "scheduled", "running", "asked", "retrying", "dead", "succeeded", "cancelled")
"""Where a job ends up: a state, or `asked` (running, asked to stop)."""
BULK_QUEUES = ("a", "b")
BULK_TASKS = ("t1", "t2")

job_fates = st.lists(
    st.tuples(st.sampled_from(BULK_QUEUES), st.sampled_from(BULK_TASKS), st.sampled_from(FATES)),
    max_size=25,
)


@st.composite
def bulk_requests(draw: st.DrawFn) -> tuple[str, JobFilter]:
    """A bulk action and a filter it accepts: at least one of states, queues, tasks."""
    action = draw(st.sampled_from(("retry", "cancel")))
    allowed = sorted(RETRYABLE_STATES if action == "retry" else CANCELLABLE_STATES)
    subsets = {
        "states": st.frozensets(st.sampled_from(allowed)),
        "queues": st.frozensets(st.sampled_from(BULK_QUEUES)),
        "tasks": st.frozensets(st.sampled_from(BULK_TASKS)),
    }
    job_filter = draw(st.builds(JobFilter, **subsets).filter(lambda f: not f.empty))
    return action, job_filter


# --- bodies drawn from the API's declaration (`taskyard.domain.contract`) ---------------------

edge_text = st.one_of(
    hostile_text,
    st.sampled_from(["", " ", "default\n", "a b", "\x00", "\u00e9", "\u0661\u0660", "0" * 201]),
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True),
    edge_text,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a", "\x00"]), st.integers(), max_size=2),
)
"""Values of the wrong kind anywhere: what a hostile client puts in any field."""
args_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=False, allow_infinity=False),
        edge_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(edge_text, children, max_size=3)
    ),
    max_leaves=8,
)
"""JSON values (no NaN: a JSON body cannot hold one) for `args`, NUL and all."""


def _around(low: float | None, high: float | None) -> list[float]:
    edges: list[float] = [0, 1, -1, 5e-324]
    for bound in (low, high):
        if bound is not None:
            edges += [bound, bound - 1, bound + 1, bound * 0.999, bound * 1.001]
    return edges


def values_for(kind: schema.Kind) -> st.SearchStrategy[Any]:
    """Values for a field of this kind: mostly within its bounds, often just outside them,
    sometimes of another kind altogether."""
    good: st.SearchStrategy[Any]
    if isinstance(kind, schema.Text):
        if kind.pattern is not None:
            good = st.from_regex(kind.pattern, fullmatch=True)
        else:
            good = st.text(min_size=kind.min_len, max_size=min(kind.max_len or 20, 20))
        good = st.one_of(good, st.just("x" * (kind.max_len or 1)), edge_text)
    elif isinstance(kind, schema.Integer):
        good = st.one_of(
            st.integers(min_value=kind.low, max_value=kind.high),
            st.sampled_from([int(v) for v in _around(kind.low, kind.high)]),
        )
    elif isinstance(kind, schema.Number):
        good = st.one_of(
            st.floats(min_value=kind.low, max_value=kind.high, allow_nan=False),
            st.integers(min_value=0, max_value=int(kind.high or 10**6)),
            st.sampled_from(_around(kind.low, kind.high)),
        )
    elif isinstance(kind, schema.Choice):
        good = st.one_of(st.sampled_from(kind.values), st.sampled_from(kind.values).map(str.upper))
    elif isinstance(kind, schema.Time):
        good = st.one_of(
            st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9))])).map(
                lambda moment: moment.isoformat()
            ),
            st.sampled_from(
                ["2026-11-22T10:00:00", "2026-11-22T10:00:00Z\n", "0001-01-01T00:00:00+01:00"]
            ),
        )
    elif isinstance(kind, schema.JobId):
        good = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()))
    elif isinstance(kind, schema.JsonObject):
        good = st.dictionaries(edge_text, args_values, max_size=4)
    elif isinstance(kind, schema.ListOf):
        items = (
            values_for(kind.item) if not isinstance(kind.item, schema.Shape) else bodies(kind.item)
        )
        good = st.lists(items, min_size=kind.min_items, max_size=3)
        if kind.max_items is not None:
            good = st.one_of(good, items.map(lambda item: [item] * (kind.max_items + 1)))  # type: ignore[operator]
    elif isinstance(kind, schema.OneOrMany):
        item = values_for(kind.item)
        good = st.one_of(
            item, st.lists(item, max_size=3), item.map(lambda v: [v] * (kind.max_items + 1))
        )
    elif isinstance(kind, schema.Shape):
        good = bodies(kind)
    else:
        good = junk
    return st.one_of(good, good, good, junk)


def bodies(shape: schema.Shape) -> st.SearchStrategy[dict[str, Any]]:
    """Objects for `shape`: each field present or not (a value from `values_for`), now and
    then a field the shape does not have."""
    fields = {f.name: values_for(f.kind) for f in shape.fields}
    extra = st.dictionaries(st.sampled_from(["colour", "Task", "\x00"]), junk, max_size=1)
    return st.builds(
        lambda chosen, more: {**more, **chosen},
        st.fixed_dictionaries({}, optional=fields),
        st.one_of(st.just({}), st.just({}), extra),
    )


PARAM_NAMES = ("a", "b", "user_id", "lang", "ctx_like", "connection")


@st.composite
def handler_signatures(draw: st.DrawFn) -> inspect.Signature:
    """Signatures a task's handler may have: named parameters of every kind Python has
    (required positional-only ones aside: no job could give them), with or without
    `*args` and `**kwargs`."""
    names = draw(st.lists(st.sampled_from(PARAM_NAMES), unique=True, max_size=5))
    kinds = [inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY]
    chosen = sorted(
        ((name, draw(st.sampled_from(kinds)), draw(st.booleans())) for name in names),
        key=lambda item: item[1],
    )
    params: list[inspect.Parameter] = []
    seen_default = False
    for name, kind, wants_default in chosen:
        has_default = wants_default
        if kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            # Python: a positional parameter without a default never follows one with.
            has_default = wants_default or seen_default
            seen_default = has_default
        default = 0 if has_default else inspect.Parameter.empty
        params.append(inspect.Parameter(name, kind, default=default))
    if draw(st.booleans()):
        split = sum(1 for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params.insert(split, inspect.Parameter("rest", inspect.Parameter.VAR_POSITIONAL))
    if draw(st.booleans()):
        params.append(inspect.Parameter("extra", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


task_args = st.dictionaries(
    st.sampled_from((*PARAM_NAMES, "rest", "extra", "other")), st.integers(), max_size=6
)
