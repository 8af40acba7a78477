"""The checker bites: each deliberately broken variant of the store (or the worker) is
caught within a bounded number of seeds, by the invariant that names what broke.

The variants live here, never in the product: they patch the pure transition functions
the in-memory store calls, hand the simulator a different store view, or patch the
worker back to what it did before it confined the store's refusals.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast
from uuid import UUID

import attrs
import pytest

from taskyard.adapters.memory import InMemoryJobStore, MemoryRows, MemoryState
from taskyard.domain import hooks, transitions
from taskyard.domain.context import CancelReason
from taskyard.domain.errors import Refusal
from taskyard.domain.flow import Start
from taskyard.domain.model import DeadGroup, Job, JobState, LeaseRef
from taskyard.domain.ports import Clock, JobFilter, JobStore
from taskyard.domain.retention import Retention
from taskyard.domain.schedules import Fired, Schedule
from taskyard.domain.store import Rows, reads
from taskyard.domain.store.rows import Running
from taskyard.domain.transitions import Report
from taskyard.domain.worker import Worker
from taskyard.simulation.checker import Violation
from taskyard.simulation.run import RunResult, simulate, summary
from taskyard.simulation.world import StoreFactory, memory_store_view

T = TypeVar("T")


def first_caught(
    seeds: range,
    expected: Collection[str],
    store_factory: StoreFactory = memory_store_view,
    profile: str = "default",
) -> RunResult | None:
    """The first run whose failures include one of `expected`."""
    for seed in seeds:
        result = simulate(seed, profile, store_factory=store_factory)
        if set(result.broken) & set(expected):
            return result
    return None


def _explain(result: RunResult) -> str:
    return "\n".join(summary(result, commit="test")[:12])


# --- the variants ---------------------------------------------------------------------------


def _no_fence(job: Job, ref: LeaseRef, *, now: datetime) -> transitions.StaleFence | None:
    return None


class NoReaping(InMemoryJobStore):
    def reap_expired(self, *, limit: int) -> list[Job]:
        return []


def no_reaping(store_clock: Clock, node_clock: Clock, state: MemoryState) -> JobStore:
    return NoReaping(store_clock, state=state)


_promote = transitions.promote


def _ungated_promote(
    job: Job, *, now: datetime, dependency_states: Mapping[UUID, JobState]
) -> transitions.Step | Refusal:
    everything_done = dict.fromkeys(dependency_states, JobState.SUCCEEDED)
    return _promote(job, now=now, dependency_states=everything_done)


class PrunesRunning(InMemoryJobStore):
    """Retention gone wrong: a prune takes a running job along with the finished ones."""

    def prune(self, retention: Retention, *, limit: int) -> int:
        def work(rows: Rows) -> int:
            running = rows.matching(JobFilter(), states=[JobState.RUNNING])[:1]
            if running:
                rows.delete(running)
            return len(running)

        return self.writing(work) + super().prune(retention, limit=limit)


def prunes_running(store_clock: Clock, node_clock: Clock, state: MemoryState) -> JobStore:
    return PrunesRunning(store_clock, state=state)


def node_clock_store(store_clock: Clock, node_clock: Clock, state: MemoryState) -> JobStore:
    """Each node's view of the store reads the node's own (skewed) clock, so lease expiry
    is judged by whichever worker or scheduler asks."""
    return InMemoryJobStore(node_clock, state=state)


def _stops_on_refusal(self: Worker, pending: list[Report], error: Exception) -> None:
    """The worker as it was: a report the store refuses escapes the tick, every tick."""
    raise error


def _loses_silently(self: Worker, held: Any, reason: CancelReason) -> None:
    """A worker that drops a lost lease's attempt without telling its hooks."""
    held.reported = True
    _lose(self, held, reason)


_lose = Worker._lose


def _oldest_as_newest(rows: Rows) -> list[DeadGroup]:
    """The dashboard's dead groups, each with its oldest job where the newest belongs
    (an `ORDER BY created_at` without its `DESC`)."""
    groups = _dead_groups(rows)
    oldest = {
        (g.task, g.error_type): rows.error_ids(
            state=JobState.DEAD, task=g.task, error_type=g.error_type, limit=10**6
        )[-1]
        for g in groups
    }
    jobs = {job.id: job for job in rows.jobs(list(oldest.values()))}
    return [attrs.evolve(g, newest=jobs[oldest[g.task, g.error_type]]) for g in groups]


_dead_groups = reads.dead_groups

SCHEDULE_LAG_S = 3.0
_VERSIONS: weakref.WeakKeyDictionary[MemoryState, dict[str, list[Schedule]]] = (
    weakref.WeakKeyDictionary()
)


class _StaleScheduleRows:
    """Rows whose schedules are read as they were `SCHEDULE_LAG_S` ago: what a store read
    from a lagging replica, or without the row lock, hands a scheduler."""

    def __init__(self, rows: MemoryRows, versions: dict[str, list[Schedule]]) -> None:
        self._rows = rows
        self._versions = versions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rows, name)

    def due_schedules(self, *, now: datetime, limit: int) -> list[Schedule]:
        lagged = now - timedelta(seconds=SCHEDULE_LAG_S)
        stale = []
        for current in self._rows.schedule_rows():
            versions = self._versions.get(current.name, [])
            if not versions or versions[-1] != current:
                stale.append(current)  # an operator's change: seen at once
                continue
            older = [v for v in versions[-50:] if v.updated_at <= lagged]
            stale.append(older[-1] if older else current)
        due = [s for s in stale if not s.paused and s.next_fire_at <= now]
        return sorted(due, key=lambda s: (s.next_fire_at, s.name))[:limit]

    def put_schedules(self, schedules: Sequence[Schedule]) -> None:
        self._rows.put_schedules(schedules)
        for schedule in schedules:
            self._versions.setdefault(schedule.name, []).append(schedule)


class StaleSchedules(InMemoryJobStore):
    """A view that fires from schedule rows a few seconds stale; `keyed` False also
    forgets each fire's unique key (the broken variant)."""

    keyed = True

    def writing(self, work: Callable[[Rows], T]) -> T:
        with self.state.lock:
            rows = MemoryRows(self.state, self._clock.now())
            versions = _VERSIONS.setdefault(self.state, {})
            return work(cast(Rows, _StaleScheduleRows(rows, versions)))

    reading = writing

    def fire_schedules(self, *, limit: int, keyed: bool = True) -> Fired:
        return super().fire_schedules(limit=limit, keyed=keyed and self.keyed)


class StaleUnkeyedSchedules(StaleSchedules):
    keyed = False


def stale_schedules(store_clock: Clock, node_clock: Clock, state: MemoryState) -> JobStore:
    return StaleSchedules(store_clock, state=state)


def stale_unkeyed_schedules(store_clock: Clock, node_clock: Clock, state: MemoryState) -> JobStore:
    return StaleUnkeyedSchedules(store_clock, state=state)


class _OverAdmittingRows:
    """Rows that count one job fewer than hold a live lease in each queue and key (or one
    start fewer in each rate window): a claim over them admits one job past the limit."""

    def __init__(self, rows: MemoryRows, *, misses: str) -> None:
        self._rows = rows
        self._misses = misses

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rows, name)

    def running(
        self, queues: Collection[str] | None, *, state: JobState, now: datetime
    ) -> list[Running]:
        found = self._rows.running(queues, state=state, now=now)
        if self._misses != "running":
            return found
        return [attrs.evolve(r, count=r.count - 1) for r in found if r.count > 1]

    def starts(self, queue: str, *, after: datetime) -> list[Start]:
        found = self._rows.starts(queue, after=after)
        return found[1:] if self._misses == "starts" else found


class OverAdmits(InMemoryJobStore):
    """A store whose claim counts one running job fewer than there are."""

    misses = "running"

    def writing(self, work: Callable[[Rows], T]) -> T:
        with self.state.lock:
            rows = MemoryRows(self.state, self._clock.now())
            return work(cast(Rows, _OverAdmittingRows(rows, misses=self.misses)))

    reading = writing


class OverStarts(OverAdmits):
    """A store whose claim counts one start fewer than there were in each rate window."""

    misses = "starts"


def over_admits(store_clock: Clock, node_clock: Clock, state: MemoryState) -> JobStore:
    return OverAdmits(store_clock, state=state)


def over_starts(store_clock: Clock, node_clock: Clock, state: MemoryState) -> JobStore:
    return OverStarts(store_clock, state=state)


# --- the tests ------------------------------------------------------------------------------


def test_the_product_passes_the_seeds_that_catch_the_variants() -> None:
    for seed in range(1, 21):
        result = simulate(seed)
        assert result.ok, _explain(result)


def test_removing_the_fence_check_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Searched under the chaos profile, where every fault kind is on in every run: the
    fault that makes a report meet an expired lease before any reaper (`reaper_late`) is on
    in only about half of the default profile's runs, and since the scheduler reaps at a
    lease's expiry (not on its next half-second pass) the default profile's first 40 seeds
    no longer happen to reach that window (its first catch is seed 41)."""
    monkeypatch.setattr(transitions, "check_fence", _no_fence)
    caught = first_caught(range(1, 41), {"fenced_writes", "fenced_writes_log"}, profile="chaos")
    assert caught is not None, "a store without fencing went unnoticed for 40 chaos seeds"


def test_removing_lease_expiry_reaping_is_caught_as_a_lost_job() -> None:
    caught = first_caught(range(1, 21), {"no_job_lost"}, store_factory=no_reaping)
    assert caught is not None, "a store that never reaps went unnoticed for 20 seeds"
    lost = [v for v in caught.report.violations if v.invariant == "no_job_lost"]
    assert any("still running" in v.message for v in lost), _explain(caught)


def test_removing_dependency_gating_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transitions, "promote", _ungated_promote)
    caught = first_caught(range(1, 11), {"dependency_order", "dependency_order_log"})
    assert caught is not None, "promotion without dependency gating went unnoticed for 10 seeds"


def test_a_prune_that_deletes_a_running_job_is_caught() -> None:
    caught = first_caught(range(1, 11), {"prune_finished_only"}, store_factory=prunes_running)
    assert caught is not None, "a prune deleting running jobs went unnoticed for 10 seeds"
    found = [v for v in caught.report.violations if v.invariant == "prune_finished_only"]
    assert any("a running job was deleted" in v.message for v in found), _explain(caught)


def test_judging_leases_by_the_callers_skewed_clock_is_caught() -> None:
    caught = first_caught(
        range(1, 21),
        {"one_live_lease", "one_live_lease_log", "fenced_writes", "fenced_writes_log"},
        store_factory=node_clock_store,
    )
    assert caught is not None, "lease expiry by a skewed node clock went unnoticed for 20 seeds"


def test_a_worker_that_stops_on_a_refused_report_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Worker, "_report_apart", _stops_on_refusal)
    caught = first_caught(range(1, 21), {"refusal_confined"})
    assert caught is not None, "a worker stopped by one refused report went unnoticed"
    assert caught.exercised.get("tick_failed", 0) > 0, _explain(caught)
    lost = [v for v in caught.report.violations if v.invariant == "refusal_confined"]
    assert all("was not confined" in v.message for v in lost)


def test_fires_without_their_unique_key_are_caught_as_doubles() -> None:
    """Schedulers that fire from stale schedule rows re-fire what another already fired;
    without the (schedule, fire time) key the store takes the second job."""
    caught = first_caught(
        range(1, 21), {"schedule_fire_once"}, store_factory=stale_unkeyed_schedules
    )
    assert caught is not None, "fires without their unique key went unnoticed for 20 seeds"
    doubles = [v for v in caught.report.violations if v.invariant == "schedule_fire_once"]
    assert any("twice" in v.message for v in doubles), _explain(caught)


def test_the_unique_key_alone_stops_doubles_from_stale_schedule_rows() -> None:
    """The same stale rows with the key: a re-fire finds its fire's job and adds none."""
    for seed in range(1, 5):
        result = simulate(seed, store_factory=stale_schedules)
        assert "schedule_fire_once" not in result.broken, _explain(result)


def test_a_failing_seed_prints_the_broken_invariant_the_trace_tail_and_the_replay() -> None:
    caught = first_caught(range(1, 21), {"no_job_lost"}, store_factory=no_reaping)
    assert caught is not None
    text = "\n".join(summary(caught, commit="abc"))
    assert text.startswith(f"SEED={caught.seed} PROFILE=default COMMIT=abc\n")
    assert "result     FAILED: no_job_lost" in text
    assert "--- trace tail (last 40 lines) ---" in text
    assert "fault plan:" in text
    assert text.endswith(f"replay     taskyard simulate --seed {caught.seed} --trace")


def test_a_failing_seed_shrinks_to_a_short_fault_plan() -> None:
    from taskyard.simulation.profiles import draw
    from taskyard.simulation.shrink import describe, shrink

    caught = first_caught(range(1, 21), {"no_job_lost"}, store_factory=no_reaping)
    assert caught is not None
    drawn = draw(caught.seed)
    # A run that loses a job never goes quiet: a shorter liveness bound keeps each try cheap.
    original = attrs.evolve(drawn, scenario=attrs.evolve(drawn.scenario, liveness_max_s=120.0))
    shrunk = shrink(original, store_factory=no_reaping, runs_max=120)
    assert "no_job_lost" in shrunk.result.broken
    assert len(shrunk.run.plan.actions) <= 3 < len(original.plan.actions)
    assert len(shrunk.run.workload.ops) < len(original.workload.ops)
    text = describe(shrunk)
    assert text[0].startswith(f"shrunk in {shrunk.runs} runs to ")


def _caught_by(invariant: str, seeds: range, message: str, unnoticed: str) -> list[Violation]:
    """The violations of `invariant` in the first of `seeds` that breaks it; each must
    say `message`."""
    caught = first_caught(seeds, {invariant})
    assert caught is not None, unnoticed
    found = [v for v in caught.report.violations if v.invariant == invariant]
    assert found and all(message in v.message for v in found), _explain(caught)
    return found


def test_a_worker_that_does_not_end_a_lost_attempt_for_its_hooks_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Worker, "_lose", _loses_silently)
    unended = _caught_by(
        "hooks_balanced",
        range(1, 21),
        "never ended",
        "an attempt its hooks never heard end went unnoticed",
    )
    assert all(v.job_id is not None for v in unended)


def test_hooks_told_of_a_failure_that_was_none_are_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Hooks` as if it told `attempt_failed` of every ending, a success included."""
    monkeypatch.setattr(hooks, "FAILURES", frozenset(hooks.Ending))
    _caught_by(
        "hooks_balanced",
        range(1, 6),
        "told as a failure",
        "a success told to the hooks as a failure went unnoticed",
    )


def test_a_dead_group_whose_newest_job_is_not_its_newest_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reads, "dead_groups", _oldest_as_newest)
    _caught_by(
        "client_answers",
        range(1, 21),
        "'s newest is",
        "a dead group shown with its oldest job went unnoticed",
    )


def test_a_claim_that_counts_one_running_job_fewer_is_caught() -> None:
    """Limits are drawn for most worlds (`profiles.draw_limits`): a store that admits one
    job past a concurrency limit is seen at the instant it does, by both flow checks."""
    caught = first_caught(range(1, 11), {"flow_limits", "flow_limits_log"}, over_admits)
    assert caught is not None, "a claim over-admitting past its limits went unnoticed"
    assert {"flow_limits", "flow_limits_log"} <= set(caught.broken), _explain(caught)
    over = [v for v in caught.report.violations if v.invariant == "flow_limits_log"]
    assert all("running with live leases" in v.message for v in over), _explain(caught)
    assert all(v.job_id is not None and v.at is not None for v in over)


def test_a_claim_that_counts_one_start_fewer_is_caught_by_the_rate_window() -> None:
    caught = first_caught(range(1, 21), {"flow_limits", "flow_limits_log"}, over_starts)
    assert caught is not None, "a claim starting past its rate limit went unnoticed"
    found = [v for v in caught.report.violations if v.invariant == "flow_limits_log"]
    assert found and all("starts in" in v.message for v in found), _explain(caught)


def test_an_over_admitting_claim_shrinks_to_the_limits_that_bind() -> None:
    """The limits are part of what a shrink drops: those it keeps are the ones broken."""
    from taskyard.simulation.profiles import draw
    from taskyard.simulation.shrink import describe, shrink

    caught = first_caught(range(1, 11), {"flow_limits_log"}, over_admits)
    assert caught is not None
    original = draw(caught.seed)
    shrunk = shrink(original, store_factory=over_admits, runs_max=40)
    assert "flow_limits_log" in shrunk.result.broken
    assert 1 <= len(shrunk.run.scenario.limits) <= len(original.scenario.limits)
    kept = {queue for queue, _ in shrunk.run.scenario.limits}
    named = {
        word
        for v in shrunk.result.report.violations
        if v.invariant == "flow_limits_log"
        for word in v.message.replace(" (", " ").split()
    }
    assert kept & named, describe(shrunk)
    assert any(line.startswith("  limits of queue ") for line in describe(shrunk))
