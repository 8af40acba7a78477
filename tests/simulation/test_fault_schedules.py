"""Hypothesis on the simulator, on three levels: any seed keeps every guarantee; generated
fault schedules do too, and against a broken store a failing schedule shrinks to a
single fault; and a state machine whose
rules are submit, advance, crash, restart, partition, heal and skew drives a world by
hand, checking the safety invariants after every step."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from taskyard.simulation.checker import check
from taskyard.simulation.faults import NO_FAULTS, FaultAction, FaultKind, FaultPlan
from taskyard.simulation.profiles import Run
from taskyard.simulation.run import RunResult, simulate, summary
from taskyard.simulation.workload import ClientOp, OpKind
from taskyard.simulation.world import StoreFactory, World, memory_store_view
from tests.simulation.test_broken_variants import no_reaping
from tests.strategies import NODES, PROCESSES, SMALL_PLANS, SMALL_WORLD, fault_plans, small_workload


def run_plan(plan: FaultPlan, store_factory: StoreFactory = memory_store_view) -> RunResult:
    run = Run(
        seed=0, profile="schedule", scenario=SMALL_WORLD, plan=plan, workload=small_workload()
    )
    return simulate(0, run=run, store_factory=store_factory)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(min_value=501, max_value=2**63 - 1), st.sampled_from(("default", "chaos")))
def test_any_seed_keeps_every_guarantee(seed: int, profile: str) -> None:
    """Seeds far from the sweep's 1..500, drawn and shrunk by hypothesis."""
    result = simulate(seed, profile)
    assert result.ok, "\n".join(summary(result, commit="hypothesis"))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(fault_plans())
def test_any_fault_schedule_keeps_every_guarantee(plan: FaultPlan) -> None:
    result = run_plan(plan)
    assert result.ok, "\n".join(summary(result, commit="hypothesis"))


def test_without_faults_the_small_world_ends_with_every_job_done() -> None:
    result = run_plan(NO_FAULTS)
    assert result.ok
    assert result.accepted == len(SMALL_PLANS)
    assert result.quiet_at_s is not None


def test_a_failing_schedule_shrinks_to_one_fault() -> None:
    """Against a store that never reaps expired leases, hypothesis finds a schedule that
    loses a job, and shrinks it to one fault that strands a lease."""
    shrunk = find(
        fault_plans(with_sites=False),
        lambda plan: not run_plan(plan, store_factory=no_reaping).ok,
        settings=settings(max_examples=300, deadline=None, derandomize=True, database=None),
    )
    assert len(shrunk.actions) == 1, shrunk.describe()
    [action] = shrunk.actions
    assert action.kind in (FaultKind.CRASH, FaultKind.PAUSE, FaultKind.PARTITION_STORE), action
    assert action.node in ("w1", "w2"), action
    result = run_plan(shrunk, store_factory=no_reaping)
    assert "no_job_lost" in result.broken


class WorldByHand(RuleBasedStateMachine):
    """A small world driven by rules; safety is checked after every step, liveness once
    everything has healed at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World(
            seed=0, scenario=SMALL_WORLD, plan=NO_FAULTS, workload=small_workload(submit=False)
        )
        self.world.start()
        self.submitted = 0

    @rule()
    def submit(self) -> None:
        if self.submitted < len(SMALL_PLANS):
            self.world.perform(
                ClientOp(at_s=0, client="c1", kind=OpKind.SUBMIT, plans=(self.submitted,))
            )
            self.submitted += 1

    @rule(seconds=st.integers(1, 150).map(lambda tenths: tenths / 10))
    def advance(self, seconds: float) -> None:
        self.world.run_until(self.world.now + seconds)

    @rule(node=st.sampled_from(PROCESSES), down_s=st.integers(1, 30))
    def crash(self, node: str, down_s: int) -> None:
        self.world.act(FaultAction(at_s=0, kind=FaultKind.CRASH, node=node, duration_s=down_s))

    @rule(node=st.sampled_from(PROCESSES))
    def restart(self, node: str) -> None:
        self.world.restart(node)

    @rule(
        node=st.sampled_from(NODES),
        kind=st.sampled_from((FaultKind.PARTITION_STORE, FaultKind.PARTITION_COORDINATOR)),
        seconds=st.integers(1, 60),
    )
    def partition(self, node: str, kind: FaultKind, seconds: int) -> None:
        self.world.act(FaultAction(at_s=0, kind=kind, node=node, duration_s=seconds))

    @rule()
    def heal(self) -> None:
        self.world.heal_partitions()

    @rule(node=st.sampled_from(NODES), seconds=st.integers(-30, 30))
    def skew(self, node: str, seconds: int) -> None:
        self.world.act(FaultAction(at_s=0, kind=FaultKind.CLOCK_SKEW, node=node, amount=seconds))

    @invariant()
    def safe_so_far(self) -> None:
        report = self.world.check_now()
        assert report.ok, report.violations

    def teardown(self) -> None:
        world = self.world
        while self.submitted < len(SMALL_PLANS):
            self.submit()
        world.settle()
        report = check(world.history())
        assert report.ok, report.violations
        assert world.quiet_at is not None and math.isfinite(world.quiet_at), world.cut_short


TestWorldByHand = WorldByHand.TestCase
TestWorldByHand.settings = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
