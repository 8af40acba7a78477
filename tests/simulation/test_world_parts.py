"""The world's parts: every fault kind has a place (a site, or a handler in the timed
faults' table), and the decision paths the new faults and moves are there to reach are
reached, each in a small world built for it, with every guarantee kept."""

from __future__ import annotations

import attrs

from taskyard.domain.model import JobState
from taskyard.simulation.actions import STRIKES
from taskyard.simulation.faults import SITES, FaultAction, FaultKind, FaultPlan, site_kind
from taskyard.simulation.profiles import Run
from taskyard.simulation.run import RunResult, simulate, summary
from taskyard.simulation.workload import ClientOp, JobPlan, OpKind, Script, Workload
from taskyard.simulation.world import Scenario, WorkerSpec

ONE_WORKER = Scenario(
    workers=(WorkerSpec(name="w1", concurrency=1),),
    schedulers=("s1", "s2"),
    clients=("c1",),
    safety_s=40.0,
    liveness_max_s=200.0,
)


def _plan(duration_s: float, *, stop: bool = True) -> JobPlan:
    return JobPlan(
        index=0,
        task="work",
        queue="default",
        priority=0,
        script=Script(n=0, duration_s=duration_s, honours_cancel=stop),
        max_attempts=3,
        backoff_base_s=0.5,
        backoff_max_s=2.0,
        jitter="none",
    )


def _run(scenario: Scenario, plan: FaultPlan, job: JobPlan, *ops: ClientOp) -> RunResult:
    submit = ClientOp(at_s=1.0, client="c1", kind=OpKind.SUBMIT, plans=(0,))
    workload = Workload(plans=(job,), ops=(submit, *ops))
    run = Run(seed=1, profile="parts", scenario=scenario, plan=plan, workload=workload)
    result = simulate(1, run=run)
    assert result.ok, "\n".join(summary(result, commit="test", with_trace=True))
    return result


def test_every_fault_kind_is_a_site_or_a_timed_fault_with_a_handler() -> None:
    sites = {site_kind(site) for site in SITES}
    assert not sites & set(STRIKES)
    assert sites | set(STRIKES) == set(FaultKind)


def test_a_report_between_the_lease_expiry_and_the_reaper_closes_the_attempt_stale() -> None:
    late = FaultAction(
        at_s=2.0, kind=FaultKind.REAPER_LATE, node="w1", duration_s=30.0, amount=14.0
    )
    result = _run(ONE_WORKER, FaultPlan(actions=(late,)), _plan(15.0))
    assert result.exercised.get("report_stale_unreaped", 0) >= 1
    assert result.faults[FaultKind.REAPER_LATE] == 1
    assert result.states == {JobState.SUCCEEDED: 1}  # run again once the reaper came back


def test_a_job_asked_to_stop_and_handed_back_at_a_redeploy_ends_cancelled() -> None:
    cancel = ClientOp(at_s=4.0, client="c1", kind=OpKind.CANCEL_IN_DEPLOY, amount=1.0)
    result = _run(ONE_WORKER, FaultPlan(), _plan(20.0, stop=False), cancel)
    assert result.exercised.get("release_cancelled", 0) == 1
    assert result.states == {JobState.CANCELLED: 1}


def test_a_leading_scheduler_stopped_on_purpose_resigns() -> None:
    plan = FaultPlan(
        actions=tuple(
            FaultAction(at_s=at_s, kind=FaultKind.GRACEFUL_RESTART, node=node, duration_s=3.0)
            for at_s, node in ((5.0, "s1"), (5.0, "s2"))
        )
    )
    result = _run(ONE_WORKER, plan, _plan(1.0))
    assert result.exercised.get("scheduler_resigned", 0) == 1  # the leader; the other left


def test_a_claimed_job_whose_task_is_gone_runs_again_after_its_backoff() -> None:
    scenario = attrs.evolve(
        ONE_WORKER,
        workers=(
            WorkerSpec(name="w1", concurrency=1),
            WorkerSpec(name="w2", concurrency=1, vanishing=("work",)),
        ),
    )
    away = FaultAction(at_s=0.5, kind=FaultKind.PAUSE, node="w1", duration_s=12.0)
    result = _run(scenario, FaultPlan(actions=(away,)), _plan(1.0))
    assert result.exercised.get("unknown_task", 0) >= 1  # and retry_delay holds


def test_a_scheduler_without_a_coordinator_acts_beside_the_leader() -> None:
    scenario = attrs.evolve(ONE_WORKER, lone_schedulers=("s2",))
    result = _run(scenario, FaultPlan(), _plan(1.0))
    assert result.states == {JobState.SUCCEEDED: 1}
