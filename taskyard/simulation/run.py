"""Run one world from a seed, check it, and say what happened.

    result = simulate(7)                      # the default profile
    print("\\n".join(summary(result, commit="abc1234")))

The summary holds nothing that varies between two runs of the same seed (no wall-clock
timings), so the same seed prints the same bytes.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Mapping

import attrs

from taskyard.domain.model import JobState
from taskyard.simulation.checker import CheckReport, Violation, check
from taskyard.simulation.clients import CLIENT_ANSWERS
from taskyard.simulation.clocks import at_s
from taskyard.simulation.faults import FaultKind, FaultPlan
from taskyard.simulation.hooking import HOOKS_BALANCED
from taskyard.simulation.profiles import Run, draw
from taskyard.simulation.schedules import check_schedules
from taskyard.simulation.world import StoreFactory, World, memory_store_view

TRACE_TAIL_LINES = 40
EXERCISED: tuple[str, ...] = (
    "expire",
    "release",
    "report_stale",
    "report_already_applied",
    "heartbeat_refused",
    "checkpoint_refused",
    "timed_out",
    "cancel",
    "retry",
    "dependency_failed",
    "split_brain_lead",
    "late_request",
    "lingering",
    "report_batch_apart",
    "report_replaced",
    "report_abandoned",
    "release_refused",
    "tick_failed",
    "pruned",
    "malformed_refused",
    "listing_walked",
    "bulk_cancel",
    "bulk_retry",
    "cancel_in_deploy",
    "report_stale_unreaped",
    "release_cancelled",
    "scheduler_resigned",
    "unknown_task",
    "hook_job_dead",
    "hook_lease_lost",
    "hook_handed_back",
    "waited_concurrency_limit",
    "waited_key_concurrency_limit",
    "waited_rate_limit",
)
"""Paths a run can take that matter to the guarantees, counted so a green sweep shows
it went there: leases reaped and handed back, stale reports refused, retried reports
found already applied, ..."""


@attrs.frozen(kw_only=True)
class RunResult:
    seed: int
    profile: str
    plan: FaultPlan
    report: CheckReport
    faults: Mapping[FaultKind, int]
    sites: Mapping[str, int]
    exercised: Mapping[str, int]
    jobs: int
    accepted: int
    attempts: int
    states: Mapping[JobState, int]
    events: int
    quiet_at_s: float | None
    crash: str | None
    """The exception that stopped the world, when one did (a bug, by definition)."""
    cut_short: str | None
    trace: tuple[str, ...]
    digest: str
    labels: Mapping[str, str]
    """Job id -> its short label in the trace (j1, j2, ...)."""

    @property
    def ok(self) -> bool:
        return self.report.ok and self.crash is None

    @property
    def broken(self) -> tuple[str, ...]:
        names = list(self.report.broken)
        if self.crash is not None:
            names.insert(0, "no_crash")
        return tuple(names)


def simulate(
    seed: int,
    profile: str = "default",
    *,
    store_factory: StoreFactory = memory_store_view,
    run: Run | None = None,
) -> RunResult:
    """Run the world of `seed` under `profile` (or the given `run`) and check it."""
    drawn = run if run is not None else draw(seed, profile)
    world = World(
        seed=drawn.seed,
        scenario=drawn.scenario,
        plan=drawn.plan,
        workload=drawn.workload,
        store_factory=store_factory,
    )
    crash: str | None = None
    try:
        world.run()
    except Exception as exc:
        lines = traceback.format_exception(exc)
        crash = f"{type(exc).__name__}: {exc}"
        world.note(world.current, f"CRASHED {crash}")
        for line in "".join(lines[-6:]).splitlines():
            world.note(world.current, f"  {line}")
    history = world.history()
    report = check(history).with_extra("worker_slots", world.violations)
    report = report.with_extra(CLIENT_ANSWERS, world.clients.violations)
    report = report.with_extra(HOOKS_BALANCED, world.hook_violations)
    for name, found in check_schedules(
        history.jobs,  # pruned jobs included: a fire's job counts after retention deleted it
        world.schedule_log,
        changes=history.log or (),
        healed_at_s=world.healed_at,
        end_s=world.now,
    ).items():
        report = report.with_extra(name, found)
    stuck = (
        []
        if world.quiet_at is not None or crash is not None
        else [
            Violation(
                invariant="quiescence",
                message=f"{world.cut_short}: {world.busy_nodes()}",
            )
        ]
    )
    report = report.with_extra("quiescence", stuck)
    world.note(
        "world",
        f"checked {len(report.checked)} invariants, {sum(report.counts.values())} violation(s)",
    )
    states = Counter(job.state for job in history.jobs.values())
    return RunResult(
        seed=drawn.seed,
        profile=drawn.profile,
        plan=drawn.plan,
        report=report,
        faults=dict(world.fault_counts),
        sites=dict(world.site_counts),
        exercised={**world.exercised, "pruned": len(history.pruned or ())},
        jobs=len(history.jobs),
        accepted=len(world.acknowledged),
        attempts=sum(len(records) for records in history.attempts.values()),
        states=dict(states),
        events=world.events,
        quiet_at_s=world.quiet_at,
        crash=crash,
        cut_short=world.cut_short,
        trace=tuple(world.trace.lines),
        digest=world.trace.digest(),
        labels={str(job_id): world.job_label(job_id) for job_id in sorted(history.jobs)},
    )


def replay_command(seed: int, profile: str) -> str:
    flag = "" if profile == "default" else f" --profile {profile}"
    return f"taskyard simulate --seed {seed}{flag} --trace"


def _violation_line(result: RunResult, violation: Violation) -> str:
    where = ""
    if violation.job_id is not None:
        where = f" {result.labels.get(str(violation.job_id), str(violation.job_id))}"
    when = f" at {at_s(violation.at):.3f}" if violation.at is not None else ""
    return f"  {violation.invariant}{where}{when}: {violation.message}"


def summary(result: RunResult, *, commit: str, with_trace: bool = False) -> list[str]:
    """What `taskyard simulate --seed N` prints (the first line names the run)."""
    lines = [f"SEED={result.seed} PROFILE={result.profile} COMMIT={commit}"]
    if with_trace:
        lines.append("--- trace ---")
        lines.extend(result.trace)
        lines.append("--- end of trace ---")
    states = ", ".join(
        f"{state.value} {result.states[state]}" for state in JobState if result.states.get(state)
    )
    quiet = (
        f"quiet at {result.quiet_at_s:.3f} s" if result.quiet_at_s is not None else "never quiet"
    )
    fired = ", ".join(
        f"{kind.value} {result.faults[kind]}" for kind in FaultKind if result.faults.get(kind)
    )
    exercised = ", ".join(
        f"{name} {result.exercised[name]}" for name in EXERCISED if result.exercised.get(name)
    )
    lines += [
        f"jobs       {result.accepted} accepted, {result.jobs} in the store, "
        f"{result.attempts} attempts",
        f"ended      {states or 'nothing'} ({quiet}, {result.events} events)",
        f"faults     {fired or 'none'}",
        f"exercised  {exercised or 'nothing of note'}",
        f"invariants {len(result.report.checked)} checked, {len(result.broken)} broken"
        + (f", skipped {', '.join(result.report.skipped)}" if result.report.skipped else ""),
        f"trace      {len(result.trace)} lines, digest {result.digest}",
    ]
    if result.ok:
        lines.append("result     ok")
        return lines
    lines.append(f"result     FAILED: {', '.join(result.broken)}")
    if result.crash is not None:
        lines.append(f"  no_crash: the world stopped on {result.crash}")
    if result.cut_short is not None:
        lines.append(f"  note: {result.cut_short}")
    lines.extend(_violation_line(result, v) for v in result.report.violations)
    if not with_trace:
        lines.append(f"--- trace tail (last {TRACE_TAIL_LINES} lines) ---")
        lines.extend(result.trace[-TRACE_TAIL_LINES:])
    lines.append("fault plan:")
    lines.extend(f"  {line}" for line in result.plan.describe())
    lines.append(f"replay     {replay_command(result.seed, result.profile)}")
    return lines
