"""The checker on histories made by hand: clean ones pass, each kind of damage is named.

Histories come from the real in-memory store driven step by step; a damaged one is the
same history with one record changed, as a buggy store would have left it. Most checks
need only jobs and attempts (what a PostgreSQL store can give); the log-only ones are
skipped without a log.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import attrs

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore, MemoryState
from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.model import JobState
from taskyard.domain.timefmt import after
from taskyard.domain.transitions import Event
from taskyard.simulation.checker import INVARIANTS, Bystander, History, Needs, Replay, check
from tests.factories import claim_one, enqueue, new_job, succeed

LOG_ONLY = {i.name for i in INVARIANTS if i.needs & Needs.LOG}


def _store() -> tuple[InMemoryJobStore, ManualClock]:
    clock = ManualClock()
    return InMemoryJobStore(clock, state=MemoryState(keep_history=True)), clock


def _history(store: InMemoryJobStore, *, with_log: bool = True) -> History:
    state = store.state
    return History(
        jobs=dict(state.jobs),
        attempts={k: list(v) for k, v in state.attempts.items()},
        log=list(store.history) if with_log else None,
        acknowledged=frozenset(state.jobs),
    )


def _run_two_jobs() -> tuple[InMemoryJobStore, ManualClock, UUID, UUID]:
    """A job that succeeds, and one that depends on it and succeeds after it."""
    store, clock = _store()
    first = enqueue(store)
    second = enqueue(store, depends_on=[first.id])
    job = claim_one(store)
    clock.advance(1)
    store.report([succeed(job)])
    store.promote_due(limit=10)
    job = claim_one(store)
    clock.advance(1)
    store.report([succeed(job)])
    return store, clock, first.id, second.id


def test_a_clean_history_passes_every_invariant() -> None:
    store, _, _, _ = _run_two_jobs()
    report = check(_history(store))
    assert report.ok, report.violations
    assert set(report.checked) == {i.name for i in INVARIANTS}


def test_without_a_log_the_log_checks_are_skipped_and_the_rest_still_run() -> None:
    store, _, _, _ = _run_two_jobs()
    report = check(_history(store, with_log=False))
    assert report.ok
    assert set(report.skipped) == LOG_ONLY
    assert {"no_job_lost", "fenced_writes", "one_live_lease", "dependency_order"} <= set(
        report.checked
    )


def test_an_open_job_after_quiescence_is_lost() -> None:
    store, _ = _store()
    job = enqueue(store)
    report = check(_history(store))
    assert report.broken == ("no_job_lost",)
    assert report.violations[0].job_id == job.id
    assert "still queued" in report.violations[0].message
    assert "no_job_lost" not in check(_history(store), at_rest=False).checked


def test_an_acknowledged_job_missing_from_the_store_is_lost() -> None:
    store, _, _, _ = _run_two_jobs()
    history = attrs.evolve(_history(store), acknowledged=frozenset({UUID(int=7)}))
    assert check(history).broken == ("no_job_lost",)


def test_an_outcome_committed_after_the_lease_expired_breaks_the_fence() -> None:
    store, _, first, _ = _run_two_jobs()
    history = _history(store, with_log=False)
    [attempt] = history.attempts[first]
    late = attrs.evolve(attempt, finished_at=after(attempt.lease_expires_at, 0.5))
    damaged = attrs.evolve(history, attempts={**history.attempts, first: [late]})
    report = check(damaged)
    assert "fenced_writes" in report.broken
    assert "0.500 s after its lease expired" in report.violations[0].message


def test_a_second_success_breaks_one_outcome() -> None:
    store, _, first, _ = _run_two_jobs()
    history = _history(store, with_log=False)
    [attempt] = history.attempts[first]
    again = attrs.evolve(attempt, attempt=2)
    job = attrs.evolve(history.jobs[first], attempt=2, attempt_limit=3)
    damaged = attrs.evolve(
        history,
        jobs={**history.jobs, first: job},
        attempts={**history.attempts, first: [attempt, again]},
    )
    assert "one_outcome" in check(damaged).broken


def test_a_claim_before_the_previous_lease_expired_breaks_one_live_lease() -> None:
    store, clock = _store()
    job = enqueue(store, max_attempts=3)
    claimed = claim_one(store, lease_ttl_s=10)
    assert claimed.lease is not None
    clock.advance(11)
    store.reap_expired(limit=10)
    claim_one(store, lease_ttl_s=10)
    clean = _history(store)
    assert check(clean, at_rest=False).ok
    first, second = clean.attempts[job.id]
    early = attrs.evolve(second, started_at=after(first.lease_expires_at, -2))
    damaged = attrs.evolve(clean, attempts={job.id: [first, early]}, log=None)
    assert check(damaged, at_rest=False).broken == ("one_live_lease",)


def test_an_attempt_past_the_limit_breaks_the_budget() -> None:
    store, _, first, _ = _run_two_jobs()
    history = _history(store, with_log=False)
    job = attrs.evolve(history.jobs[first], attempt_limit=0)
    assert (
        "attempt_budget" in check(attrs.evolve(history, jobs={**history.jobs, first: job})).broken
    )


def test_running_before_a_dependency_succeeded_breaks_dependency_order() -> None:
    store, _, first, second = _run_two_jobs()
    history = _history(store, with_log=False)
    [attempt] = history.attempts[second]
    dep = history.jobs[first]
    assert dep.finished_at is not None
    early = attrs.evolve(attempt, started_at=after(dep.finished_at, -0.25))
    damaged = attrs.evolve(history, attempts={**history.attempts, second: [early]})
    assert "dependency_order" in check(damaged).broken


def test_a_dependent_left_open_after_its_dependency_died_breaks_dependency_failure() -> None:
    store, _ = _store()
    dep = enqueue(store, max_attempts=1)
    enqueue(store, depends_on=[dep.id])
    store.cancel(dep.id)
    report = check(_history(store))
    assert "dependency_failure" in report.broken
    store.resolve_dependencies(limit=10)
    assert check(_history(store)).ok


def test_a_transition_outside_the_table_is_illegal() -> None:
    store, _, _, _ = _run_two_jobs()
    history = _history(store)
    assert history.log is not None
    index = next(i for i, r in enumerate(history.log) if r.event is Event.COMPLETE)
    bad = attrs.evolve(
        history.log[index], after=attrs.evolve(history.log[index].after, state=JobState.QUEUED)
    )
    damaged = attrs.evolve(history, log=[*history.log[:index], bad, *history.log[index + 1 :]])
    assert "legal_transitions" in check(damaged, only=["legal_transitions"]).broken


def test_a_claim_before_run_at_breaks_time() -> None:
    store, clock = _store()
    enqueue(store, delay_s=5)
    clock.advance(6)
    store.promote_due(limit=10)
    claim_one(store)
    history = _history(store)
    assert history.log is not None
    early = [
        attrs.evolve(r, at=after(r.at, -3)) if r.event is Event.CLAIM else r for r in history.log
    ]
    report = check(attrs.evolve(history, log=early), only=["run_at_respected"])
    assert report.broken == ("run_at_respected",)


def test_a_write_by_a_worker_without_the_lease_breaks_the_fence_in_the_log() -> None:
    store, _, _, _ = _run_two_jobs()
    history = _history(store)
    assert history.log is not None
    forged = [
        attrs.evolve(r, worker="intruder") if r.event is Event.COMPLETE else r for r in history.log
    ]
    report = check(attrs.evolve(history, log=forged), only=["fenced_writes_log"])
    assert report.broken == ("fenced_writes_log",)
    assert "complete by intruder landed on the lease of w1" in report.violations[0].message


def test_a_replay_that_returns_another_job_breaks_idempotency() -> None:
    store, _, first, second = _run_two_jobs()
    history = attrs.evolve(
        _history(store),
        replays=[Replay(key="k", first_job_id=first, replay_job_id=second, same_body=True)],
    )
    assert check(history).broken == ("idempotency",)


def test_the_history_of_a_simulated_world_feeds_every_invariant() -> None:
    from taskyard.simulation.run import simulate

    result = simulate(3)
    assert result.ok
    assert not result.report.skipped
    assert result.attempts > 0
    assert set(result.report.checked) == {i.name for i in INVARIANTS} | {
        "worker_slots",
        "client_answers",
        "hooks_balanced",
        "quiescence",
        "schedule_fire_once",
        "schedule_fires_in_time",
        "schedule_policies",
    }


def test_a_requested_cancellation_that_ends_in_success_is_not_honoured() -> None:
    store, clock = _store()
    enqueue(store)
    job = claim_one(store)
    store.cancel(job.id)
    clock.advance(1)
    store.report([succeed(job)])
    history = _history(store)
    assert history.jobs[job.id].state is JobState.CANCELLED
    assert check(history).ok
    assert history.log is not None
    forged = [
        attrs.evolve(r, after=attrs.evolve(r.after, state=JobState.SUCCEEDED))
        if r.event is Event.COMPLETE
        else r
        for r in history.log
    ]
    report = check(attrs.evolve(history, log=forged), only=["cancel_honoured"])
    assert report.broken == ("cancel_honoured",)


def test_a_last_attempt_before_run_at_breaks_time_without_a_log() -> None:
    store, clock = _store()
    job = enqueue(store, delay_s=5)
    clock.advance(6)
    store.promote_due(limit=10)
    claimed = claim_one(store)
    clock.advance(1)
    store.report([succeed(claimed)])
    history = _history(store, with_log=False)
    assert check(history).ok
    [attempt] = history.attempts[job.id]
    early = attrs.evolve(attempt, started_at=after(history.jobs[job.id].run_at, -0.5))
    damaged = attrs.evolve(history, attempts={job.id: [early]})
    report = check(damaged)
    assert report.broken == ("run_at_respected_jobs",)
    assert "0.500 s before run_at" in report.violations[0].message


def test_an_attempt_started_after_a_cancel_breaks_cancellation_without_a_log() -> None:
    store, clock = _store()
    job = enqueue(store, max_attempts=3)
    claimed = claim_one(store, lease_ttl_s=10)
    store.cancel(job.id)
    clock.advance(1)
    store.report([succeed(claimed)])
    history = _history(store, with_log=False)
    cancelled = history.jobs[job.id]
    assert cancelled.state is JobState.CANCELLED and cancelled.finished_at is not None
    assert check(history).ok
    [attempt] = history.attempts[job.id]
    rerun = attrs.evolve(attempt, attempt=2, started_at=after(cancelled.finished_at, 0.25))
    damaged = attrs.evolve(
        history,
        jobs={job.id: attrs.evolve(cancelled, attempt=2)},
        attempts={job.id: [attempt, rerun]},
    )
    report = check(damaged, only=["cancel_honoured_jobs"])
    assert report.broken == ("cancel_honoured_jobs",)
    assert "started 0.250 s after the job was cancelled" in report.violations[0].message


def test_a_flagged_job_that_ends_otherwise_breaks_cancellation_without_a_log() -> None:
    store, _, first, _ = _run_two_jobs()
    history = _history(store, with_log=False)
    flagged = attrs.evolve(history.jobs[first], cancel_requested=True)
    report = check(attrs.evolve(history, jobs={**history.jobs, first: flagged}))
    assert report.broken == ("cancel_honoured_jobs",)
    assert "yet the job is succeeded" in report.violations[0].message


def test_a_bystander_that_lost_its_lease_breaks_refusal_confinement() -> None:
    store, clock = _store()
    culprit, bystander, excused = enqueue(store), enqueue(store), enqueue(store)
    for _ in range(3):
        claim_one(store)
    struck = clock.now()
    clock.advance(31)
    store.reap_expired(limit=10)  # every lease lapsed: the worker stopped heartbeating
    history = attrs.evolve(
        _history(store),
        bystanders=tuple(
            Bystander(
                job_id=job.id,
                attempt=1,
                worker="w1",
                culprit=culprit.id,
                struck_at=struck,
                excused=job is excused,
            )
            for job in (bystander, excused)
        ),
    )
    report = check(history, at_rest=False)
    assert report.broken == ("refusal_confined",)
    [violation] = report.violations
    assert violation.job_id == bystander.id and "worker_lost" in violation.message


# --- flow control -----------------------------------------------------------------------------

FLOW = {"flow_limits", "flow_limits_log"}


def _keyed(store: InMemoryJobStore, clock: ManualClock, key: str | None) -> None:
    """Enqueue a job of queue `default` with `key`, a millisecond after the one before
    (so that jobs are claimed in the order enqueued)."""
    store.enqueue([attrs.evolve(new_job(store), concurrency_key=key)])
    clock.advance(0.001)


def _limited(history: History, **limits: Any) -> History:
    return attrs.evolve(history, limits={"default": QueueLimits(**limits)})


def test_more_running_jobs_than_a_queue_limit_break_flow_limits_with_and_without_a_log() -> None:
    """The store itself has no limits here: the history is judged by the limits given."""
    store, clock = _store()
    for _ in range(3):
        _keyed(store, clock, None)
    claim_one(store, lease_ttl_s=10)
    clock.advance(1)
    claim_one(store, lease_ttl_s=10)
    history = _history(store)
    assert check(_limited(history, concurrency_limit=2), at_rest=False).ok
    report = check(_limited(history, concurrency_limit=1), at_rest=False)
    assert set(report.broken) == FLOW
    assert all(
        "queue default" in v.message and "concurrency_limit 1" in v.message
        for v in report.violations
    )
    assert check(
        attrs.evolve(_limited(history, concurrency_limit=1), log=None), at_rest=False
    ).broken == ("flow_limits",)
    assert check(
        attrs.evolve(history, limits={"mail": QueueLimits(concurrency_limit=1)}), at_rest=False
    ).ok


def test_a_key_limit_holds_per_key_and_not_for_jobs_without_a_key() -> None:
    store, clock = _store()
    for key in ("a", None, None, "b", "a"):
        _keyed(store, clock, key)
    for _ in range(4):
        claim_one(store, lease_ttl_s=10)
        clock.advance(0.1)
    history = _limited(_history(store), key_concurrency_limit=1)
    assert check(history, at_rest=False).ok, "a, two without a key, b: one per key"
    claim_one(store, lease_ttl_s=10)  # the second job of key a
    report = check(_limited(_history(store), key_concurrency_limit=1), at_rest=False)
    assert set(report.broken) == FLOW
    assert all("key 'a' of queue default" in v.message for v in report.violations)


def test_an_expired_lease_gives_its_capacity_back_at_once_but_not_before() -> None:
    """A lease is live up to and including its expiry instant: a claim at that very
    instant is one too many; a microsecond later it is not (no reaper ran in between)."""
    for wait_s, over in ((10.0, True), (10.000001, False)):
        store, clock = _store()
        _keyed(store, clock, None)
        _keyed(store, clock, None)
        claim_one(store, lease_ttl_s=10)
        clock.advance(wait_s)
        claim_one(store, lease_ttl_s=10)
        report = check(_limited(_history(store), concurrency_limit=1), at_rest=False)
        assert set(report.broken) == (FLOW if over else set()), (wait_s, report.violations)


def test_a_report_gives_its_capacity_back_at_once() -> None:
    store, clock = _store()
    _keyed(store, clock, None)
    _keyed(store, clock, None)
    job = claim_one(store, lease_ttl_s=10)
    store.report([succeed(job)])
    claim_one(store, lease_ttl_s=10)  # at the same instant
    assert check(_limited(_history(store), concurrency_limit=1), at_rest=False).ok


def test_more_starts_than_a_rate_limit_in_a_window_break_flow_limits() -> None:
    """Starts 0.4 s apart. The window is half-open, `(t - period, t]`: a start exactly one
    period back no longer counts. Per queue and per key alike."""
    store, clock = _store()
    for key in ("a", "a", "a"):
        _keyed(store, clock, key)
    for _ in range(3):
        job = claim_one(store, lease_ttl_s=10)
        store.report([succeed(job)])
        clock.advance(0.4)
    history = _history(store)
    for field in ("rate_limit", "key_rate_limit"):
        for count, period_s, broken in (
            (1, 0.4, False),
            (1, 0.41, True),
            (2, 0.8, False),
            (2, 0.81, True),
        ):
            rate = RateLimit(count=count, period_s=period_s)
            report = check(_limited(history, **{field: rate}))
            assert set(report.broken) == (FLOW if broken else set()), (field, rate)
            assert all(
                f"({field} {count} per {period_s:g} s)" in v.message for v in report.violations
            )
