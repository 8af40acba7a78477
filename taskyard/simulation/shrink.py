"""Shrink a failing run: drop queue limits, timed faults, fault sites and client operations
one at a time, keeping each drop after which the run still breaks one of the same
invariants.

The result is a smaller `Run` (same seed, so the same streams) whose fault plan is short
enough to read; `describe()` of its plan is what a person starts from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from taskyard.simulation.faults import FaultAction, FaultPlan
from taskyard.simulation.profiles import Run
from taskyard.simulation.run import RunResult, simulate
from taskyard.simulation.workload import ClientOp, Workload
from taskyard.simulation.world import StoreFactory, describe_limits, memory_store_view

RUNS_MAX = 400


@attrs.frozen(kw_only=True)
class Shrunk:
    run: Run
    result: RunResult
    runs: int
    """How many worlds the search ran."""


def shrink(
    run: Run,
    *,
    store_factory: StoreFactory = memory_store_view,
    runs_max: int = RUNS_MAX,
    on_step: Callable[[str], None] | None = None,
) -> Shrunk:
    """A smaller run that still fails the way `run` does (`run` must fail)."""
    first = simulate(run.seed, run=run, store_factory=store_factory)
    assert not first.ok, "only a failing run can be shrunk"
    wanted = set(first.broken)
    best, best_result, runs = run, first, 1

    def fails(candidate: Run) -> RunResult | None:
        nonlocal runs
        runs += 1
        result = simulate(candidate.seed, run=candidate, store_factory=store_factory)
        return result if set(result.broken) & wanted else None

    def with_plan(base: Run, actions: tuple[FaultAction, ...], sites: Mapping[str, float]) -> Run:
        return attrs.evolve(base, plan=FaultPlan(actions=actions, sites=sites))

    def with_ops(base: Run, ops: tuple[ClientOp, ...]) -> Run:
        return attrs.evolve(base, workload=Workload(plans=base.workload.plans, ops=ops))

    changed = True
    while changed and runs < runs_max:
        changed = False
        for index in reversed(range(len(best.scenario.limits))):
            if runs >= runs_max:
                break
            limits = best.scenario.limits[:index] + best.scenario.limits[index + 1 :]
            candidate = attrs.evolve(best, scenario=attrs.evolve(best.scenario, limits=limits))
            result = fails(candidate)
            if result is not None:
                best, best_result, changed = candidate, result, True
                if on_step is not None:
                    on_step(f"dropped a queue's limits: {len(limits)} left")
        for index in reversed(range(len(best.plan.actions))):
            if runs >= runs_max:
                break
            actions = best.plan.actions[:index] + best.plan.actions[index + 1 :]
            candidate = with_plan(best, actions, best.plan.sites)
            result = fails(candidate)
            if result is not None:
                best, best_result, changed = candidate, result, True
                if on_step is not None:
                    on_step(f"dropped a timed fault: {len(actions)} left")
        for site in sorted(best.plan.sites):
            if runs >= runs_max:
                break
            sites = {k: v for k, v in best.plan.sites.items() if k != site}
            candidate = with_plan(best, best.plan.actions, sites)
            result = fails(candidate)
            if result is not None:
                best, best_result, changed = candidate, result, True
                if on_step is not None:
                    on_step(f"dropped site {site}: {len(sites)} left")
        for index in reversed(range(len(best.workload.ops))):
            if runs >= runs_max:
                break
            ops = best.workload.ops[:index] + best.workload.ops[index + 1 :]
            candidate = with_ops(best, ops)
            result = fails(candidate)
            if result is not None:
                best, best_result, changed = candidate, result, True
                if on_step is not None:
                    on_step(f"dropped a client op: {len(ops)} left")
    return Shrunk(run=best, result=best_result, runs=runs)


def describe(shrunk: Shrunk) -> list[str]:
    plan: FaultPlan = shrunk.run.plan
    lines = [
        f"shrunk in {shrunk.runs} runs to {len(plan.actions)} timed fault(s), "
        f"{len(plan.sites)} site(s), {len(shrunk.run.workload.ops)} client op(s), "
        f"{len(shrunk.run.scenario.limits)} limited queue(s); "
        f"still broken: {', '.join(shrunk.result.broken)}",
    ]
    lines.extend(f"  {line}" for line in plan.describe())
    lines.extend(
        f"  limits of queue {queue}: {describe_limits(limits)}"
        for queue, limits in shrunk.run.scenario.limits
    )
    lines.extend(
        f"  client {op.at_s:.3f} {op.client} {op.kind.value} {' '.join(f'p{p}' for p in op.plans)}"
        for op in sorted(shrunk.run.workload.ops, key=lambda o: (o.at_s, o.client))
    )
    return lines
