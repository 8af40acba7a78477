"""The `JobStore` contract: every adapter (memory, SQLite, PostgreSQL) passes it unchanged."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest

from taskyard.domain.errors import (
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    LeaseExpired,
    StaleFence,
    UnknownDependency,
)
from taskyard.domain.ids import uuid7
from taskyard.domain.model import JobState, LeaseRef, Outcome
from taskyard.domain.ports import (
    ClaimRequest,
    JobFilter,
    JobQuery,
    JobStore,
    ReportStatus,
)
from taskyard.domain.transitions import REAPABLE_AFTER, Report, ReportKind
from tests import factories as f
from tests.contract.conftest import Harness

S = JobState

TTL_SHORT_S = 0.2
"""A lease short enough to let expire in a test of a real database clock."""


def claim(store: JobStore, limit: int = 10, **kwargs: object) -> list:  # type: ignore[type-arg]
    kwargs.setdefault("worker", "w1")
    kwargs.setdefault("lease_ttl_s", 30.0)
    return store.claim(ClaimRequest(limit=limit, **kwargs))  # type: ignore[arg-type]


# --- enqueue ------------------------------------------------------------------------------


def test_a_due_job_is_queued_with_its_fields_kept(store: JobStore) -> None:
    before = store.now()
    job = f.enqueue(
        store,
        task="emails.send",
        args={"to": "a@b.c"},
        queue="mail",
        priority=7,
        correlation_id="req-1",
    )
    assert job.state is S.QUEUED
    assert job.attempt == 0
    assert job.task == "emails.send" and dict(job.args) == {"to": "a@b.c"}
    assert job.queue == "mail" and job.priority == 7
    assert job.correlation_id == "req-1"
    assert job.lease is None and job.finished_at is None
    assert before - timedelta(seconds=1) <= job.run_at <= store.now() + timedelta(seconds=1)
    assert store.get(job.id) == job
    assert store.attempts(job.id) == []


def test_a_job_with_a_future_run_at_is_scheduled(store: JobStore) -> None:
    run_at = store.now() + timedelta(hours=1)
    job = f.enqueue(store, run_at=run_at)
    assert job.state is S.SCHEDULED
    assert abs((job.run_at - run_at).total_seconds()) < 0.001


def test_delay_is_added_to_the_store_clock(store: JobStore) -> None:
    before = store.now()
    job = f.enqueue(store, delay_s=60)
    assert job.state is S.SCHEDULED
    offset = (job.run_at - before).total_seconds()
    assert 59.9 <= offset <= 61


def test_an_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.get(uuid7(store.now(), random.Random(5)))


def test_the_same_idempotency_key_and_body_returns_the_existing_job(store: JobStore) -> None:
    first = f.new_job(store, idempotency_key="invoice-42", args={"n": 1})
    [created] = store.enqueue([first])
    again = f.new_job(store, idempotency_key="invoice-42", args={"n": 1})
    [replayed] = store.enqueue([again])
    assert created.created and not replayed.created
    assert replayed.job.id == created.job.id
    with pytest.raises(JobNotFound):
        store.get(again.id)


def test_the_same_idempotency_key_with_another_body_is_refused(store: JobStore) -> None:
    [created] = store.enqueue([f.new_job(store, idempotency_key="k", args={"n": 1})])
    other = f.new_job(store, idempotency_key="k", args={"n": 2})
    with pytest.raises(IdempotencyConflict) as refused:
        store.enqueue([other])
    assert refused.value.existing_job_id == created.job.id
    with pytest.raises(JobNotFound):
        store.get(other.id)


def test_a_batch_is_all_or_nothing(store: JobStore) -> None:
    good = f.new_job(store)
    missing = uuid7(store.now(), random.Random(9))
    bad = f.new_job(store, depends_on=[missing])
    with pytest.raises(UnknownDependency) as refused:
        store.enqueue([good, bad])
    assert refused.value.job_id == missing
    with pytest.raises(JobNotFound):
        store.get(good.id)


def test_a_batch_may_depend_on_a_job_earlier_in_it(store: JobStore) -> None:
    parent = f.new_job(store)
    child = f.new_job(store, depends_on=[parent.id])
    results = store.enqueue([parent, child])
    assert [r.job.id for r in results] == [parent.id, child.id]
    assert results[1].job.state is S.SCHEDULED
    assert results[1].job.depends_on == (parent.id,)


def test_an_idempotency_key_repeated_inside_one_batch_creates_one_job(store: JobStore) -> None:
    one = f.new_job(store, idempotency_key="twice", args={"n": 1})
    two = f.new_job(store, idempotency_key="twice", args={"n": 1})
    results = store.enqueue([one, two])
    assert results[0].created and not results[1].created
    assert results[1].job.id == results[0].job.id


def test_depending_on_a_dead_job_cancels_the_new_job_at_once(store: JobStore) -> None:
    parent = f.enqueue(store, max_attempts=1)
    running = f.claim_one(store)
    store.report([f.fail(running)])
    assert store.get(parent.id).state is S.DEAD
    child = f.enqueue(store, depends_on=[parent.id])
    assert child.state is S.CANCELLED
    assert child.last_error is not None
    assert child.last_error.type == "dependency_failed"
    assert str(parent.id) in child.last_error.message


# --- claim --------------------------------------------------------------------------------


def test_claim_takes_jobs_by_priority_then_run_at_then_id(store: JobStore) -> None:
    now = store.now()
    older = f.enqueue(store, run_at=now - timedelta(seconds=30))
    newer = f.enqueue(store, run_at=now - timedelta(seconds=10))
    same_a = f.enqueue(store, run_at=now - timedelta(seconds=20), priority=0)
    same_b = f.enqueue(store, run_at=now - timedelta(seconds=20), priority=0)
    urgent = f.enqueue(store, run_at=now - timedelta(seconds=1), priority=50)
    low = f.enqueue(store, run_at=now - timedelta(seconds=60), priority=-5)
    order = [j.id for j in claim(store, limit=10)]
    first_same, second_same = sorted([same_a.id, same_b.id])
    assert order == [urgent.id, older.id, first_same, second_same, newer.id, low.id]


def test_claim_starts_an_attempt_with_a_lease_by_store_time(store: JobStore) -> None:
    job = f.enqueue(store)
    [running] = claim(store, limit=1, worker="w-7", lease_ttl_s=30)
    assert running.id == job.id
    assert running.state is S.RUNNING
    assert running.attempt == 1
    assert running.lease is not None and running.lease.worker == "w-7"
    remaining = (running.lease.expires_at - store.now()).total_seconds()
    assert 28 <= remaining <= 30.001
    [attempt] = store.attempts(job.id)
    assert attempt.attempt == 1 and attempt.worker == "w-7"
    assert attempt.outcome is Outcome.RUNNING and attempt.finished_at is None


def test_claim_respects_limit_queues_tasks_and_pauses(store: JobStore) -> None:
    a = f.enqueue(store, queue="a", task="t1")
    b = f.enqueue(store, queue="b", task="t1")
    c = f.enqueue(store, queue="a", task="t2")
    store.set_paused("b", paused=True)
    assert claim(store, queues=frozenset({"b"})) == []
    [only] = claim(store, queues=frozenset({"a"}), tasks=frozenset({"t2"}))
    assert only.id == c.id
    rest = claim(store)
    assert [j.id for j in rest] == [a.id]
    store.set_paused("b", paused=False)
    assert [j.id for j in claim(store)] == [b.id]


def test_claim_never_takes_a_job_twice_under_concurrency(store: JobStore) -> None:
    f.enqueue_many(store, 120)
    seen: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer(index: int) -> None:
        try:
            while True:
                jobs = claim(store, limit=7, worker=f"w{index}")
                if not jobs:
                    return
                with lock:
                    seen.extend(str(j.id) for j in jobs)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(seen) == 120
    assert len(set(seen)) == 120


def test_a_scheduled_job_is_not_claimed(store: JobStore) -> None:
    f.enqueue(store, delay_s=3600)
    assert claim(store) == []


# --- heartbeat and checkpoint -------------------------------------------------------------


def test_heartbeat_extends_every_live_lease_in_one_call(store: JobStore) -> None:
    f.enqueue_many(store, 3)
    jobs = claim(store, lease_ttl_s=5)
    statuses = store.heartbeat([j.ref() for j in jobs], lease_ttl_s=60)
    assert [s.ref.job_id for s in statuses] == [j.id for j in jobs]
    assert all(s.held for s in statuses)
    for status in statuses:
        assert status.expires_at is not None
        assert (status.expires_at - store.now()).total_seconds() > 50
        assert store.get(status.ref.job_id).lease.expires_at == status.expires_at  # type: ignore[union-attr]


def test_heartbeat_of_a_stale_attempt_is_refused(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    stale = LeaseRef(job_id=job.id, attempt=job.attempt - 1, worker="w1")
    wrong_worker = LeaseRef(job_id=job.id, attempt=job.attempt, worker="intruder")
    statuses = store.heartbeat([stale, wrong_worker, job.ref()], lease_ttl_s=30)
    assert [s.held for s in statuses] == [False, False, True]


def test_an_expired_lease_is_never_revived(store_harness: Harness[JobStore]) -> None:
    store = store_harness.adapter
    f.enqueue(store)
    job = f.claim_one(store, lease_ttl_s=TTL_SHORT_S)
    store_harness.pass_time(TTL_SHORT_S * 2)
    [status] = store.heartbeat([job.ref()], lease_ttl_s=30)
    assert not status.held
    assert store.get(job.id).lease.expires_at == job.lease.expires_at  # type: ignore[union-attr]


def test_heartbeat_tells_the_holder_that_cancellation_was_requested(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    store.cancel(job.id)
    [status] = store.heartbeat([job.ref()], lease_ttl_s=30)
    assert status.held and status.cancel_requested


def test_checkpoint_needs_the_live_lease(store_harness: Harness[JobStore]) -> None:
    store = store_harness.adapter
    f.enqueue(store)
    job = f.claim_one(store, lease_ttl_s=TTL_SHORT_S)
    store.checkpoint(job.ref(), {"page": 3})
    assert store.get(job.id).checkpoint == {"page": 3}
    with pytest.raises(StaleFence):
        store.checkpoint(LeaseRef(job_id=job.id, attempt=0, worker="w1"), {"page": 4})
    store_harness.pass_time(TTL_SHORT_S * 2)
    with pytest.raises(LeaseExpired):
        store.checkpoint(job.ref(), {"page": 5})
    assert store.get(job.id).checkpoint == {"page": 3}


def test_the_checkpoint_survives_into_the_next_attempt(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    store.checkpoint(job.ref(), {"done": [1, 2]})
    store.report([f.fail(job)])
    store.promote_due(limit=10)
    again = f.claim_one(store)
    assert again.attempt == 2
    assert again.checkpoint == {"done": [1, 2]}


# --- reports ------------------------------------------------------------------------------


def test_success_is_committed_once(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    [first] = store.report([f.succeed(job, {"ok": True})])
    assert first.status is ReportStatus.APPLIED and first.state is S.SUCCEEDED
    done = store.get(job.id)
    assert done.state is S.SUCCEEDED and done.result == {"ok": True}
    assert done.finished_at is not None and done.lease is None
    [again] = store.report([f.succeed(job, {"ok": True})])
    assert again.status is ReportStatus.ALREADY_APPLIED
    assert store.get(job.id) == done
    [attempt] = store.attempts(job.id)
    assert attempt.outcome is Outcome.SUCCEEDED and attempt.finished_at is not None
    assert attempt.duration_s is not None and attempt.duration_s >= 0


def test_a_failure_with_attempts_left_waits_for_its_backoff(store: JobStore) -> None:
    f.enqueue(store, max_attempts=3)
    job = f.claim_one(store)
    before = store.now()
    [result] = store.report([f.fail(job, delay_s=120)])
    assert result.status is ReportStatus.APPLIED and result.state is S.RETRYING
    waiting = store.get(job.id)
    assert waiting.state is S.RETRYING
    assert 119 <= (waiting.run_at - before).total_seconds() <= 121
    assert waiting.last_error is not None and waiting.last_error.message == "boom"
    [attempt] = store.attempts(job.id)
    assert attempt.outcome is Outcome.FAILED
    assert attempt.error is not None and attempt.error.traceback == "Traceback ..."
    assert store.promote_due(limit=10).count == 0
    assert claim(store) == []


def test_the_last_attempt_or_a_permanent_failure_ends_dead(store: JobStore) -> None:
    f.enqueue(store, max_attempts=1)
    job = f.claim_one(store)
    [result] = store.report([f.fail(job)])
    assert result.state is S.DEAD
    f.enqueue(store, max_attempts=5)
    other = f.claim_one(store)
    [permanent] = store.report([f.fail(other, retryable=False)])
    assert permanent.state is S.DEAD
    assert store.get(other.id).finished_at is not None


def test_a_report_from_a_superseded_attempt_changes_nothing(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    f.enqueue(store)
    first = f.claim_one(store, lease_ttl_s=TTL_SHORT_S)
    store_harness.pass_time(TTL_SHORT_S * 2)
    [reaped] = store.reap_expired(limit=10)
    assert reaped.state is S.QUEUED
    second = f.claim_one(store, worker="w2")
    [late] = store.report([f.succeed(first, "late")])
    assert late.status is ReportStatus.STALE
    current = store.get(first.id)
    assert current.state is S.RUNNING and current.attempt == 2 and current.result is None
    outcomes = [a.outcome for a in store.attempts(first.id)]
    assert outcomes == [Outcome.WORKER_LOST, Outcome.RUNNING]
    [ok] = store.report([f.succeed(second, "fresh")])
    assert ok.status is ReportStatus.APPLIED
    assert store.get(first.id).result == "fresh"


def test_a_report_after_expiry_is_refused_even_before_the_reaper_runs(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    f.enqueue(store, max_attempts=3)
    job = f.claim_one(store, lease_ttl_s=TTL_SHORT_S)
    store_harness.pass_time(TTL_SHORT_S * 2)
    [late] = store.report([f.succeed(job, "late")])
    assert late.status is ReportStatus.STALE
    assert store.get(job.id).state is S.RUNNING
    [attempt] = store.attempts(job.id)
    assert attempt.outcome is Outcome.STALE
    [reaped] = store.reap_expired(limit=10)
    assert reaped.state is S.QUEUED
    [attempt] = store.attempts(job.id)
    assert attempt.outcome is Outcome.STALE, "an outcome once set never changes"


def test_reports_in_one_batch_are_judged_each_on_its_own_fence(store: JobStore) -> None:
    f.enqueue_many(store, 3)
    a, b, c = claim(store, limit=3)
    stale = Report(
        ref=LeaseRef(job_id=c.id, attempt=c.attempt + 5, worker="w1"),
        kind=ReportKind.SUCCEEDED,
    )
    results = store.report([f.succeed(a), f.fail(b, retryable=False), stale])
    assert [r.status for r in results] == [
        ReportStatus.APPLIED,
        ReportStatus.APPLIED,
        ReportStatus.STALE,
    ]
    assert [store.get(j.id).state for j in (a, b, c)] == [S.SUCCEEDED, S.DEAD, S.RUNNING]


def test_cancel_of_a_running_job_wins_over_its_handler_result(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    requested = store.cancel(job.id)
    assert requested.state is S.RUNNING and requested.cancel_requested
    [result] = store.report([f.succeed(job, "ignored")])
    assert result.state is S.CANCELLED
    done = store.get(job.id)
    assert done.state is S.CANCELLED and done.result is None
    [attempt] = store.attempts(job.id)
    assert attempt.outcome is Outcome.CANCELLED


# --- the scheduler's path -----------------------------------------------------------------


def test_promote_makes_due_waiting_jobs_queued(store_harness: Harness[JobStore]) -> None:
    store = store_harness.adapter
    soon = f.enqueue(store, delay_s=TTL_SHORT_S, queue="q1")
    later = f.enqueue(store, delay_s=3600, queue="q2")
    assert store.promote_due(limit=10).count == 0
    store_harness.pass_time(TTL_SHORT_S * 2)
    promoted = store.promote_due(limit=10)
    assert dict(promoted.by_queue) == {"q1": 1}
    assert store.get(soon.id).state is S.QUEUED
    assert store.get(later.id).state is S.SCHEDULED


def test_a_dependent_waits_until_every_dependency_succeeded(store: JobStore) -> None:
    a = f.enqueue(store)
    b = f.enqueue(store)
    child = f.enqueue(store, depends_on=[a.id, b.id])
    assert child.state is S.SCHEDULED
    first = f.claim_one(store)
    store.report([f.succeed(first)])
    store.promote_due(limit=10)
    assert store.get(child.id).state is S.SCHEDULED
    second = f.claim_one(store)
    store.report([f.succeed(second)])
    assert store.promote_due(limit=10).count == 1
    assert store.get(child.id).state is S.QUEUED


def test_dependents_of_a_dead_job_end_cancelled_naming_it(store: JobStore) -> None:
    parent = f.enqueue(store, max_attempts=1)
    child = f.enqueue(store, depends_on=[parent.id])
    grandchild = f.enqueue(store, depends_on=[child.id])
    job = f.claim_one(store)
    store.report([f.fail(job)])
    cancelled_ids = []
    for _ in range(5):  # an adapter may resolve a chain one level per call
        cancelled_ids.extend(j.id for j in store.resolve_dependencies(limit=10))
    assert sorted(cancelled_ids) == sorted([child.id, grandchild.id])
    for dependent, dependency in ((child, parent), (grandchild, child)):
        ended = store.get(dependent.id)
        assert ended.state is S.CANCELLED
        assert ended.last_error is not None and ended.last_error.type == "dependency_failed"
        assert str(dependency.id) in ended.last_error.message


def test_reaping_counts_a_lost_worker_as_a_failed_attempt(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    f.enqueue(store, max_attempts=2)
    job = f.claim_one(store, lease_ttl_s=TTL_SHORT_S)
    assert store.reap_expired(limit=10) == []
    store_harness.pass_time(TTL_SHORT_S * 2)
    [requeued] = store.reap_expired(limit=10)
    assert requeued.state is S.QUEUED and requeued.lease is None
    assert requeued.last_error is not None and requeued.last_error.type == "worker_lost"
    again = f.claim_one(store, lease_ttl_s=TTL_SHORT_S)
    assert again.attempt == 2
    store_harness.pass_time(TTL_SHORT_S * 2)
    [dead] = store.reap_expired(limit=10)
    assert dead.state is S.DEAD
    assert [a.outcome for a in store.attempts(job.id)] == [Outcome.WORKER_LOST] * 2


def test_a_cancel_requested_job_whose_worker_dies_ends_cancelled(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    f.enqueue(store)
    job = f.claim_one(store, lease_ttl_s=TTL_SHORT_S)
    store.cancel(job.id)
    store_harness.pass_time(TTL_SHORT_S * 2)
    [reaped] = store.reap_expired(limit=10)
    assert reaped.state is S.CANCELLED


def test_next_wakeup_names_the_earliest_run_at_or_lease_expiry_ahead(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    assert store.next_wakeup() is None
    job = f.enqueue(store, delay_s=600)
    assert store.next_wakeup() == job.run_at
    f.enqueue(store)
    running = f.claim_one(store, lease_ttl_s=60)
    assert running.lease is not None
    reapable = running.lease.expires_at + REAPABLE_AFTER  # live through its expiry instant
    assert store.next_wakeup() == reapable
    # A job due now that waits on a dependency waits on that job, not on the clock.
    f.enqueue(store, delay_s=TTL_SHORT_S, depends_on=[job.id])
    store_harness.pass_time(TTL_SHORT_S * 2)
    assert store.next_wakeup() == reapable


# --- a person's path ----------------------------------------------------------------------


def test_cancel_ends_a_waiting_job_and_is_harmless_twice(store: JobStore) -> None:
    job = f.enqueue(store, delay_s=600)
    cancelled = store.cancel(job.id)
    assert cancelled.state is S.CANCELLED and cancelled.finished_at is not None
    assert store.cancel(job.id).state is S.CANCELLED


def test_a_finished_job_cannot_be_cancelled(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    store.report([f.succeed(job)])
    with pytest.raises(IllegalTransition):
        store.cancel(job.id)
    with pytest.raises(JobNotFound):
        store.cancel(uuid7(store.now(), random.Random(2)))


def test_retry_of_a_dead_job_keeps_counting_with_a_fresh_budget(store: JobStore) -> None:
    f.enqueue(store, max_attempts=1)
    job = f.claim_one(store)
    store.report([f.fail(job)])
    retried = store.retry(job.id)
    assert retried.state is S.QUEUED and retried.attempt == 1 and retried.finished_at is None
    again = f.claim_one(store)
    assert again.attempt == 2
    store.report([f.fail(again)])
    assert store.get(job.id).state is S.DEAD
    assert len(store.attempts(job.id)) == 2
    f.enqueue(store)
    running = f.claim_one(store)
    with pytest.raises(IllegalTransition):
        store.retry(running.id)


def test_reschedule_changes_priority_and_run_at_of_a_waiting_job(store: JobStore) -> None:
    job = f.enqueue(store)
    later = store.now() + timedelta(hours=2)
    moved = store.reschedule(job.id, priority=9, run_at=later)
    assert moved.priority == 9 and moved.state is S.SCHEDULED
    assert abs((moved.run_at - later).total_seconds()) < 0.001
    other = f.enqueue(store)
    running = f.claim_one(store)
    assert running.id == other.id
    with pytest.raises(IllegalTransition):
        store.reschedule(running.id, priority=1)


def test_release_hands_a_job_back_without_charging_the_attempt(store: JobStore) -> None:
    f.enqueue(store, max_attempts=1)
    job = f.claim_one(store)
    [released] = store.release([job.ref()])
    assert released.status is ReportStatus.APPLIED
    back = store.get(job.id)
    assert back.state is S.QUEUED and back.lease is None
    [attempt] = store.attempts(job.id)
    assert attempt.outcome is Outcome.WORKER_LOST
    assert attempt.error is not None and attempt.error.type == "shutdown"
    again = f.claim_one(store)
    [result] = store.report([f.fail(again)])
    assert result.state is S.DEAD, "one real attempt was allowed and used"


def test_bulk_cancel_and_retry_touch_only_what_they_may(store: JobStore) -> None:
    f.enqueue_many(store, 3, queue="bulk")
    f.enqueue(store, queue="other")
    assert store.cancel_many(JobFilter(queues=frozenset({"bulk"}))) == 3
    assert store.cancel_many(JobFilter(queues=frozenset({"bulk"}))) == 0
    assert store.retry_many(JobFilter(states=frozenset({S.CANCELLED}))) == 3
    states = sorted(j.state.value for j in store.list_jobs(JobQuery()).jobs)
    assert states == ["queued"] * 4


# --- reading ------------------------------------------------------------------------------


def test_listing_is_newest_first_with_filters_and_keyset_pages(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    made = []
    for index in range(7):
        made.append(
            f.enqueue(store, queue="even" if index % 2 == 0 else "odd", task=f"t{index % 3}")
        )
        store_harness.pass_time(0.002)
    page = store.list_jobs(JobQuery(limit=3))
    seen = [j.id for j in page.jobs]
    while page.next_cursor is not None:
        page = store.list_jobs(JobQuery(limit=3, cursor=page.next_cursor))
        seen.extend(j.id for j in page.jobs)
    assert seen == [j.id for j in reversed(made)]
    odd = store.list_jobs(JobQuery(filter=JobFilter(queues=frozenset({"odd"}))))
    assert [j.id for j in odd.jobs] == [made[5].id, made[3].id, made[1].id]
    mixed = store.list_jobs(
        JobQuery(filter=JobFilter(queues=frozenset({"even"}), tasks=frozenset({"t0", "t1"})))
    )
    assert [j.id for j in mixed.jobs] == [made[6].id, made[4].id, made[0].id]
    assert odd.next_cursor is None


def test_queues_count_jobs_by_state_and_show_pauses(store: JobStore) -> None:
    f.enqueue_many(store, 2, queue="reports")
    f.enqueue(store, queue="reports", delay_s=600)
    store.set_paused("idle", paused=True)
    by_name = {q.name: q for q in store.queues()}
    assert by_name["reports"].counts[S.QUEUED] == 2
    assert by_name["reports"].counts[S.SCHEDULED] == 1
    assert not by_name["reports"].paused
    assert by_name["reports"].oldest_queued_age_s is not None
    assert by_name["idle"].paused
    assert by_name["idle"].oldest_queued_age_s is None


def test_stats_count_outcomes_in_the_window(store: JobStore) -> None:
    f.enqueue_many(store, 3, max_attempts=1)
    a, b, c = claim(store, limit=3)
    store.report([f.succeed(a), f.succeed(b), f.fail(c)])
    stats = store.stats(window_s=3600)
    assert stats.succeeded == 2 and stats.dead == 1 and stats.failed_attempts == 1
    assert stats.run_s_p50 is not None and stats.run_s_p50 >= 0


def test_stats_count_the_attempts_charged_to_a_budget_as_failed(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    f.enqueue_many(store, 2, max_attempts=3)
    handed_back, late = claim(store, limit=2, lease_ttl_s=TTL_SHORT_S)
    store.release([handed_back.ref()])  # a graceful stop: not charged
    assert store.stats(window_s=3600).failed_attempts == 0
    store_harness.pass_time(TTL_SHORT_S * 2)
    [stale] = store.report([f.succeed(late)])  # its lease lapsed first: charged
    assert stale.status is ReportStatus.STALE
    assert store.stats(window_s=3600).failed_attempts == 1
    store.reap_expired(limit=10)
    assert store.stats(window_s=3600).failed_attempts == 1, "the stale attempt counts once"


def test_attempt_totals_count_outcomes_and_bucket_reported_run_times(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    empty = store.attempt_totals(run_s_buckets=(0.5, 60.0))
    assert set(empty.by_outcome) == set(Outcome)
    assert sum(empty.by_outcome.values()) == 0
    assert empty.run_s_counts == (0, 0) and empty.run_s_count == 0

    f.enqueue_many(store, 4, max_attempts=1)
    quick, failing, slow = claim(store, limit=3)
    [vanished] = claim(store, limit=1, lease_ttl_s=TTL_SHORT_S)
    store.report([f.fail(failing, retryable=False), f.succeed(quick)])
    store_harness.pass_time(1.0)
    # `slow` (a 30 s lease) reports after a second of running; `vanished` lets its short
    # lease expire and is reaped as worker_lost.
    store.report([f.succeed(slow)])
    assert [j.id for j in store.reap_expired(limit=10)] == [vanished.id]

    totals = store.attempt_totals(run_s_buckets=(0.5, 60.0))
    assert totals.by_outcome[Outcome.SUCCEEDED] == 2
    assert totals.by_outcome[Outcome.FAILED] == 1
    assert totals.by_outcome[Outcome.WORKER_LOST] == 1
    assert totals.by_outcome[Outcome.RUNNING] == 0
    # worker_lost is not a handler's run time: three reported attempts, one of them slow.
    assert totals.run_s_count == 3
    assert totals.run_s_counts == (2, 3)
    assert totals.run_s_sum_s >= 1.0

    f.enqueue(store)
    claim(store, limit=1)
    assert store.attempt_totals(run_s_buckets=()).by_outcome[Outcome.RUNNING] == 1
