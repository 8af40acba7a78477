"""Profiles: how a seed becomes a run (the world's shape, its fault plan, its workload).

Every choice is drawn from a named stream of the seed (`scenario`, `plan`, `workload`),
so the three do not disturb one another. A profile says which fault kinds it may switch
on, how likely each is to be on in a given run, and how hard it hits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

import attrs

from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.retention import Retention
from taskyard.simulation.faults import (
    EVERYONE,
    LEADER,
    STORE_READS,
    STORE_WRITES,
    FaultAction,
    FaultKind,
    FaultPlan,
)
from taskyard.simulation.rand import Streams
from taskyard.simulation.schedules import draw_schedules
from taskyard.simulation.workload import ClientOp, JobPlan, OpKind, Script, Workload
from taskyard.simulation.world import TASKS, Scenario, WorkerSpec

QUEUES: tuple[str, ...] = ("default", "mail", "video")
CONCURRENCY_KEYS: tuple[str, ...] = ("t1", "t2", "t3")
SUBMIT_UNTIL_S = 40.0


@attrs.frozen(kw_only=True)
class Profile:
    name: str
    description: str
    kinds: frozenset[FaultKind]
    on_p: float
    """The chance that each of `kinds` is switched on in a run."""
    rate: float = 1.0
    """Scales how many timed faults a run gets and how often sites fire."""
    skew_max_s: float = 15.0
    drift_max: float = 0.05


ALL_KINDS = frozenset(FaultKind)

PROFILES: Mapping[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            name="default",
            description="every fault kind, each switched on in about half the runs",
            kinds=ALL_KINDS,
            on_p=0.5,
        ),
        Profile(
            name="calm",
            description="no faults: the workload alone (handlers still fail as scripted)",
            kinds=frozenset(),
            on_p=0.0,
        ),
        Profile(
            name="chaos",
            description="every fault kind in every run, twice as often, larger clock errors",
            kinds=ALL_KINDS,
            on_p=1.0,
            rate=2.0,
            skew_max_s=30.0,
            drift_max=0.2,
        ),
        Profile(
            name="clocks",
            description="large clock skew, jumps and drift on every node, and pauses",
            kinds=frozenset({FaultKind.CLOCK_SKEW, FaultKind.CLOCK_DRIFT, FaultKind.PAUSE}),
            on_p=1.0,
            skew_max_s=40.0,
            drift_max=0.3,
        ),
    )
}


@attrs.frozen(kw_only=True)
class Run:
    seed: int
    profile: str
    scenario: Scenario
    plan: FaultPlan
    workload: Workload


def draw(seed: int, profile_name: str = "default") -> Run:
    profile = PROFILES[profile_name]
    streams = Streams(seed)
    scenario = draw_scenario(streams.get("scenario"))
    plan = draw_plan(streams.get("plan"), scenario, profile)
    workload = attrs.evolve(
        with_people(
            draw_workload(streams.get("workload"), scenario), streams.get("people"), scenario
        ),
        schedules=draw_schedules(streams.get("schedules")),
    )
    # From a stream of their own, so that everything above is drawn as it was.
    flow = streams.get("flow")
    return Run(
        seed=seed,
        profile=profile_name,
        scenario=attrs.evolve(scenario, limits=draw_limits(flow)),
        plan=plan,
        workload=with_concurrency_keys(workload, flow),
    )


def draw_scenario(rng: random.Random) -> Scenario:
    workers: list[WorkerSpec] = []
    for index in range(rng.randint(2, 4)):
        queues: tuple[str, ...] | None = None
        tasks = TASKS
        if index > 0 and rng.random() < 0.5:
            queues = tuple(sorted(rng.sample(QUEUES, rng.randint(1, len(QUEUES) - 1))))
        if index > 0 and rng.random() < 0.3:
            tasks = (rng.choice(TASKS),)
        workers.append(
            WorkerSpec(
                name=f"w{index + 1}", concurrency=rng.randint(1, 3), queues=queues, tasks=tasks
            )
        )
    scenario = Scenario(
        workers=tuple(workers),
        schedulers=tuple(f"s{i + 1}" for i in range(rng.randint(2, 3))),
        clients=tuple(f"c{i + 1}" for i in range(rng.randint(1, 2))),
        report_linger_s=rng.choice((0.0, 0.0, 0.05, 0.2)),
        stable_ids=rng.random() < 0.3,
        lease_ttl_s=rng.choice((10.0, 10.0, 10.0, 2.0, 5.0)),
        retention=draw_retention(rng),
    )
    # Drawn after the rest, so that the draws above stay as they were.
    lone = (scenario.schedulers[-1],) if rng.random() < 0.25 else ()
    vanishing = rng.random() < 0.25
    if vanishing:
        index = rng.randrange(1, len(workers))
        workers[index] = attrs.evolve(workers[index], vanishing=(rng.choice(TASKS),))
    # Each worker's prefetch (0, today's worker, in two of five), drawn last too.
    for index, worker in enumerate(workers):
        workers[index] = attrs.evolve(worker, prefetch=rng.choice((0, 0, 1, 2, 4)))
    return attrs.evolve(scenario, workers=tuple(workers), lone_schedulers=lone)


def draw_retention(rng: random.Random) -> Retention:
    """Periods no shorter than the safety window, where clients still act on the jobs they
    submitted (a replay of a key after its job is pruned makes a new job, by design); 0
    keeps a state forever."""
    periods = [rng.choice((0, 60, 75, 90)) for _ in range(3)]
    return Retention(succeeded_s=periods[0], dead_s=periods[1], cancelled_s=periods[2])


def draw_limits(rng: random.Random) -> tuple[tuple[str, QueueLimits], ...]:
    """The queue limits an operator sets before the world starts: none in about 40 % of
    worlds; otherwise each queue is governed with some chance, by limits low enough to
    bind (a worker alone has up to 3 slots) and rates that still drain the scheduled jobs
    of `default` (a fire a second) well within the liveness bound."""
    if rng.random() < 0.4:
        return ()
    limits: list[tuple[str, QueueLimits]] = []
    for queue in QUEUES:
        governed = rng.random() < 0.7
        concurrency = rng.choice((None, 1, 2, 3))
        key_concurrency = rng.choice((None, 1, 1, 2))
        rate = RateLimit(count=rng.randint(2, 5), period_s=round(rng.uniform(0.5, 4.0), 3))
        key_rate = RateLimit(count=rng.randint(1, 3), period_s=round(rng.uniform(0.5, 4.0), 3))
        with_rate, with_key_rate = rng.random() < 0.35, rng.random() < 0.3
        weight = rng.choice((1, 1, 2, 5))
        if governed:
            limits.append(
                (
                    queue,
                    QueueLimits(
                        concurrency_limit=concurrency,
                        key_concurrency_limit=key_concurrency,
                        rate_limit=rate if with_rate else None,
                        key_rate_limit=key_rate if with_key_rate else None,
                        weight=weight,
                    ),
                )
            )
    return tuple(limits)


def with_concurrency_keys(workload: Workload, rng: random.Random) -> Workload:
    """Most submitted jobs carry one of a few concurrency keys (so that keys share a
    queue, and a queue's keys take turns)."""
    plans = tuple(
        attrs.evolve(plan, concurrency_key=rng.choice(CONCURRENCY_KEYS))
        if rng.random() < 0.6
        else plan
        for plan in workload.plans
    )
    return attrs.evolve(workload, plans=plans)


def draw_plan(rng: random.Random, scenario: Scenario, profile: Profile) -> FaultPlan:
    """Timed faults within the safety window, and the switched-on sites. Every kind's
    draws are made whether or not it is on, so switching one kind off leaves the others'
    draws as they were."""
    horizon = scenario.safety_s - 5.0
    processes = [w.name for w in scenario.workers] + list(scenario.schedulers)
    workers = [w.name for w in scenario.workers]
    everyone = list(scenario.nodes)
    ttl = scenario.lease_ttl_s
    actions: list[FaultAction] = []
    sites: dict[str, float] = {}

    def on(kind: FaultKind) -> bool:
        return rng.random() < profile.on_p and kind in profile.kinds

    def count(low: int, high: int) -> int:
        return max(0, round(rng.randint(low, high) * profile.rate))

    def when() -> float:
        return round(rng.uniform(1.0, horizon), 3)

    def timed(kind: FaultKind, nodes: list[str], n: int, lasting: tuple[float, float]) -> None:
        switched = on(kind)
        for _ in range(n):
            action = FaultAction(
                at_s=when(),
                kind=kind,
                node=rng.choice(nodes),
                duration_s=round(rng.uniform(*lasting), 3),
            )
            if switched:
                actions.append(action)

    timed(FaultKind.CRASH, processes, count(1, 3), (0.5, 15.0))
    switched = on(FaultKind.GRACEFUL_RESTART)
    for _ in range(count(1, 2)):
        action = FaultAction(
            at_s=when(),
            kind=FaultKind.GRACEFUL_RESTART,
            node=rng.choice(workers),
            duration_s=round(rng.uniform(0.5, 10.0), 3),
            amount=round(rng.uniform(0.2, 5.0), 3),
        )
        if switched:
            actions.append(action)
    timed(FaultKind.PAUSE, processes, count(1, 2), (ttl + 1.0, ttl * 3))
    timed(FaultKind.PARTITION_STORE, everyone, count(1, 3), (1.0, 25.0))
    timed(FaultKind.PARTITION_COORDINATOR, everyone, count(1, 3), (1.0, 25.0))
    switched = on(FaultKind.COORDINATOR_DATA_LOSS)
    for _ in range(count(1, 2)):
        action = FaultAction(at_s=when(), kind=FaultKind.COORDINATOR_DATA_LOSS)
        if switched:
            actions.append(action)
    switched = on(FaultKind.CLOCK_SKEW)
    skews = [
        FaultAction(
            at_s=0.0,
            kind=FaultKind.CLOCK_SKEW,
            node=name,
            amount=round(rng.uniform(-profile.skew_max_s, profile.skew_max_s), 3),
        )
        for name in everyone
    ]
    skews += [
        FaultAction(
            at_s=when(),
            kind=FaultKind.CLOCK_SKEW,
            node=rng.choice(everyone),
            amount=round(rng.uniform(-profile.skew_max_s, profile.skew_max_s), 3),
        )
        for _ in range(count(0, 2))
    ]
    if switched:
        actions += skews
    switched = on(FaultKind.CLOCK_DRIFT)
    drifts = [
        FaultAction(
            at_s=0.0,
            kind=FaultKind.CLOCK_DRIFT,
            node=name,
            amount=round(1.0 + rng.uniform(-profile.drift_max, profile.drift_max), 4),
        )
        for name in everyone
    ]
    if switched:
        actions += drifts
    switched = on(FaultKind.SPLIT_BRAIN)
    window = FaultAction(
        at_s=when(), kind=FaultKind.SPLIT_BRAIN, duration_s=round(rng.uniform(5.0, 20.0), 3)
    )
    if switched:
        actions.append(window)

    def site_p(low: float, high: float) -> float:
        return round(min(1.0, rng.uniform(low, high) * profile.rate), 4)

    switched = on(FaultKind.STORE_UNAVAILABLE)
    for op in STORE_WRITES + STORE_READS:
        chosen, p = rng.random() < 0.5, site_p(0.005, 0.05)
        if switched and chosen:
            sites[f"store.{op}.unavailable"] = p
    switched = on(FaultKind.AMBIGUOUS_COMMIT)
    for op in STORE_WRITES:
        chosen, p = rng.random() < 0.5, site_p(0.005, 0.05)
        if switched and chosen:
            sites[f"store.{op}.reply_lost"] = p
    switched = on(FaultKind.DELAYED_COMMIT)
    for op in STORE_WRITES:
        chosen, p = rng.random() < 0.5, site_p(0.005, 0.04)
        if switched and chosen:
            sites[f"store.{op}.delayed"] = p
    for kind, site, low, high in (
        (FaultKind.DOORBELL_LOST, "doorbell.lost", 0.1, 0.6),
        (FaultKind.DOORBELL_DUPLICATE, "doorbell.duplicate", 0.1, 0.6),
        (FaultKind.HANDLER_FAILURE, "handler.fail", 0.05, 0.25),
        (FaultKind.HANDLER_SLOW, "handler.slow", 0.02, 0.15),
        (FaultKind.HANDLER_TIMEOUT, "handler.hang", 0.05, 0.3),
    ):
        switched, p = on(kind), site_p(low, high)
        if switched:
            sites[site] = p
    # Faults that outlive the heal, while the guarantees still promise progress.
    lingering: list[FaultAction] = []
    end = scenario.safety_s
    choice = rng.random()
    other_workers = [w.name for w in scenario.workers[1:]]
    victim_worker = rng.choice(other_workers) if other_workers else None
    victim_scheduler = rng.choice(scenario.schedulers)
    if choice < 0.12 and on(FaultKind.PARTITION_STORE):
        lingering.append(FaultAction(at_s=end, kind=FaultKind.PARTITION_STORE, node=LEADER))
    elif choice < 0.2 and on(FaultKind.CRASH):
        lingering.append(FaultAction(at_s=end, kind=FaultKind.CRASH, node=victim_scheduler))
    if rng.random() < 0.12 and on(FaultKind.PARTITION_COORDINATOR):
        lingering.append(FaultAction(at_s=end, kind=FaultKind.PARTITION_COORDINATOR, node=EVERYONE))
    if rng.random() < 0.12 and victim_worker is not None and on(FaultKind.CRASH):
        lingering.append(FaultAction(at_s=end, kind=FaultKind.CRASH, node=victim_worker))
    # Drawn last, so that adding this kind left every earlier draw as it was. A release
    # happens only at a graceful stop, so its site fires more often when it does.
    switched = on(FaultKind.STORE_REFUSAL)
    for op, low, high in (("report", 0.01, 0.08), ("release", 0.2, 0.6)):
        p = site_p(low, high)
        if switched:
            sites[f"store.{op}.unexpected"] = p
    # Drawn after the others, as the refusal's were.
    switched = on(FaultKind.REAPER_LATE)
    late = FaultAction(
        at_s=when(),
        kind=FaultKind.REAPER_LATE,
        node=rng.choice(workers),
        duration_s=round(ttl * rng.uniform(2.5, 3.5), 3),
        amount=round(ttl * rng.uniform(1.3, 2.0), 3),
    )
    if switched:
        actions.append(late)
    switched = on(FaultKind.GRACEFUL_RESTART)
    stop = FaultAction(
        at_s=when(),
        kind=FaultKind.GRACEFUL_RESTART,
        node=rng.choice(scenario.schedulers),
        duration_s=round(rng.uniform(0.5, 10.0), 3),
    )
    if switched:
        actions.append(stop)
    switched, p = on(FaultKind.HOOK_FAILURE), site_p(0.02, 0.2)
    if switched:
        sites["hook.fail"] = p
    return FaultPlan(actions=tuple(actions), sites=sites, lingering=tuple(lingering))


def _script(rng: random.Random, index: int) -> Script:
    roll = rng.random()
    if roll < 0.7:
        duration = rng.uniform(0.05, 2.0)
    elif roll < 0.9:
        duration = rng.uniform(2.0, 8.0)
    else:
        duration = rng.uniform(8.0, 25.0)
    return Script(
        n=index,
        duration_s=round(duration, 3),
        fail_first=0 if rng.random() < 0.65 else rng.randint(1, 3),
        permanent=rng.random() < 0.08,
        checkpoints=rng.randint(1, 3) if rng.random() < 0.3 else 0,
        honours_cancel=rng.random() < 0.8,
    )


def draw_workload(rng: random.Random, scenario: Scenario) -> Workload:
    plans: list[JobPlan] = []
    for index in range(rng.randint(8, 24)):
        script = _script(rng, index)
        base = round(rng.uniform(0.1, 2.0), 3)
        timing = rng.random()
        deps: tuple[int, ...] = ()
        if index > 0 and rng.random() < 0.35:
            window = list(range(max(0, index - 6), index))
            deps = tuple(sorted(rng.sample(window, min(len(window), rng.randint(1, 3)))))
        plans.append(
            JobPlan(
                index=index,
                task=rng.choice(TASKS),
                queue=rng.choice(QUEUES),
                priority=rng.choice((0, 0, rng.randint(-3, 3))),
                script=script,
                max_attempts=rng.randint(1, 4),
                backoff_base_s=base,
                backoff_max_s=round(base * rng.uniform(2.0, 10.0), 3),
                jitter=rng.choice(("none", "full", "equal")),
                delay_s=round(rng.uniform(1.0, 30.0), 3) if 0.6 <= timing < 0.8 else None,
                run_at_ahead_s=round(rng.uniform(-5.0, 30.0), 3) if timing >= 0.8 else None,
                timeout_s=round(rng.uniform(1.0, 10.0), 3) if rng.random() < 0.25 else None,
                key=f"k{index}" if rng.random() < 0.4 else None,
                deps=deps,
            )
        )
    ops: list[ClientOp] = []
    clients = list(scenario.clients)
    index = 0
    batches: list[tuple[int, ...]] = []
    while index < len(plans):
        size = min(len(plans) - index, rng.randint(1, 3))
        batches.append(tuple(range(index, index + size)))
        index += size
    times = sorted(round(rng.uniform(0.0, SUBMIT_UNTIL_S), 3) for _ in batches)
    for batch, at in zip(batches, times, strict=True):
        ops.append(ClientOp(at_s=at, client=rng.choice(clients), kind=OpKind.SUBMIT, plans=batch))
        for plan_index in batch:
            if plans[plan_index].key is None:
                continue
            roll = rng.random()
            if roll < 0.3:
                kind = OpKind.RESUBMIT
            elif roll < 0.4:
                kind = OpKind.CONFLICT
            else:
                continue
            ops.append(
                ClientOp(
                    at_s=round(at + rng.uniform(0.5, 15.0), 3),
                    client=rng.choice(clients),
                    kind=kind,
                    plans=(plan_index,),
                )
            )
    ops += _scattered(
        rng,
        clients,
        len(plans),
        (
            (OpKind.CANCEL, 1.0, 50.0, rng.randint(0, 3)),
            (OpKind.CANCEL_RUNNING, 5.0, 55.0, rng.randint(0, 2)),
            (OpKind.RETRY_DEAD, 15.0, 58.0, rng.randint(0, 3)),
            (OpKind.RESCHEDULE, 1.0, 45.0, rng.randint(0, 2)),
        ),
        lambda kind: rng.uniform(-2.0, 20.0),
    )
    return Workload(plans=tuple(plans), ops=tuple(ops))


def _scattered(
    rng: random.Random,
    clients: Sequence[str],
    plans: int,
    kinds: Sequence[tuple[OpKind, float, float, int]],
    amount: Callable[[OpKind], float],
) -> list[ClientOp]:
    """For each `(kind, low, high, n)`: n operations of that kind at times in [low, high],
    by a client drawn from `clients`, about a plan drawn from the `plans`."""
    ops: list[ClientOp] = []
    for kind, low, high, n in kinds:
        for _ in range(n):
            ops.append(
                ClientOp(
                    at_s=round(rng.uniform(low, high), 3),
                    client=rng.choice(clients),
                    kind=kind,
                    plans=(rng.randrange(plans),),
                    amount=round(amount(kind), 3),
                )
            )
    return ops


def with_people(workload: Workload, rng: random.Random, scenario: Scenario) -> Workload:
    """What people do besides the submissions (from a stream of their own, so the rest of
    the workload is drawn as it was): send malformed submissions, look around, act in
    bulk, pause a queue, cancel a job during a redeploy."""
    ops = _scattered(
        rng,
        scenario.clients,
        len(workload.plans),
        (
            (OpKind.MALFORMED, 0.5, 55.0, rng.randint(2, 8)),
            (OpKind.INSPECT, 1.0, 58.0, rng.randint(1, 3)),
            (OpKind.BULK, 10.0, 58.0, rng.choice((0, 0, 1))),
            (OpKind.PAUSE_QUEUE, 1.0, 50.0, rng.choice((0, 0, 1))),
            (OpKind.CANCEL_IN_DEPLOY, 5.0, 55.0, rng.choice((0, 1, 2))),
        ),
        lambda kind: rng.uniform(-1.0, 1.0) if kind is OpKind.BULK else rng.uniform(0.2, 8.0),
    )
    return attrs.evolve(workload, ops=workload.ops + tuple(ops))
