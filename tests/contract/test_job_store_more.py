"""More of the `JobStore` contract: corners the main suite leaves open, which the SQL stores
must settle exactly as the in-memory store does (batches with repeats, several queues in
one claim, bulk changes with dependencies, reads of unknown jobs)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from taskyard.domain.errors import JobNotFound
from taskyard.domain.ids import uuid7
from taskyard.domain.model import Job, JobState, LeaseRef, Outcome
from taskyard.domain.ports import ClaimRequest, JobFilter, JobQuery, JobStore, ReportStatus
from taskyard.domain.transitions import Report, ReportKind
from tests import factories as f
from tests.contract.conftest import Harness

S = JobState


def claim(store: JobStore, limit: int = 10, **kwargs: object) -> list[Job]:
    kwargs.setdefault("worker", "w1")
    kwargs.setdefault("lease_ttl_s", 30.0)
    return store.claim(ClaimRequest(limit=limit, **kwargs))  # type: ignore[arg-type]


def unknown_id(store: JobStore) -> LeaseRef:
    return LeaseRef(job_id=uuid7(store.now(), random.Random(77)), attempt=1, worker="w1")


# --- claim --------------------------------------------------------------------------------


def test_a_claim_over_several_queues_keeps_one_claim_order(store: JobStore) -> None:
    now = store.now()
    a_low = f.enqueue(store, queue="a", priority=1, run_at=now - timedelta(seconds=5))
    b_high = f.enqueue(store, queue="b", priority=9, run_at=now - timedelta(seconds=1))
    a_high_old = f.enqueue(store, queue="a", priority=9, run_at=now - timedelta(seconds=9))
    b_low_old = f.enqueue(store, queue="b", priority=1, run_at=now - timedelta(seconds=7))
    f.enqueue(store, queue="c", priority=50)
    taken = claim(store, limit=3, queues=frozenset({"a", "b"}))
    assert [j.id for j in taken] == [a_high_old.id, b_high.id, b_low_old.id]
    rest = claim(store, limit=3, queues=frozenset({"a", "b"}))
    assert [j.id for j in rest] == [a_low.id]


def test_a_claim_for_no_task_or_no_queue_takes_nothing(store: JobStore) -> None:
    f.enqueue(store)
    assert claim(store, tasks=frozenset()) == []
    assert claim(store, queues=frozenset()) == []
    assert len(claim(store)) == 1


def test_a_paused_queue_among_several_is_skipped(store: JobStore) -> None:
    f.enqueue(store, queue="a")
    b = f.enqueue(store, queue="b")
    store.set_paused("a", paused=True)
    store.set_paused("a", paused=True)
    assert [j.id for j in claim(store, queues=frozenset({"a", "b"}))] == [b.id]
    assert claim(store) == []


# --- heartbeat ----------------------------------------------------------------------------


def test_heartbeat_answers_every_ref_in_order_even_repeated_or_unknown(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    stranger = unknown_id(store)
    statuses = store.heartbeat([job.ref(), stranger, job.ref()], lease_ttl_s=30)
    assert [s.ref for s in statuses] == [job.ref(), stranger, job.ref()]
    assert [s.held for s in statuses] == [True, False, True]
    assert store.heartbeat([], lease_ttl_s=30) == []


def test_heartbeat_never_shortens_a_lease(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store, lease_ttl_s=600)
    [status] = store.heartbeat([job.ref()], lease_ttl_s=5)
    assert status.held
    assert job.lease is not None and status.expires_at == job.lease.expires_at


# --- reports ------------------------------------------------------------------------------


def test_a_repeated_failure_report_answers_already_applied(store: JobStore) -> None:
    f.enqueue(store, max_attempts=3)
    job = f.claim_one(store)
    report = f.fail(job, delay_s=300)
    [first] = store.report([report])
    assert first.status is ReportStatus.APPLIED and first.state is S.RETRYING
    waiting = store.get(job.id)
    [again] = store.report([report])
    assert again.status is ReportStatus.ALREADY_APPLIED and again.state is S.RETRYING
    assert store.get(job.id) == waiting


def test_the_same_report_twice_in_one_batch_is_applied_once(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    results = store.report([f.succeed(job, 1), f.succeed(job, 1)])
    assert [r.status for r in results] == [ReportStatus.APPLIED, ReportStatus.ALREADY_APPLIED]
    assert store.get(job.id).result == 1
    assert [a.outcome for a in store.attempts(job.id)] == [Outcome.SUCCEEDED]


def test_a_report_after_a_release_is_stale_and_keeps_the_attempt_worker_lost(
    store: JobStore,
) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    store.release([job.ref()])
    [late] = store.report([f.succeed(job)])
    assert late.status is ReportStatus.STALE and late.state is S.QUEUED
    [attempt] = store.attempts(job.id)
    assert attempt.outcome is Outcome.WORKER_LOST
    [again] = store.release([job.ref()])
    assert again.status is ReportStatus.STALE


def test_reports_and_releases_of_unknown_jobs_are_not_found(store: JobStore) -> None:
    stranger = unknown_id(store)
    [result] = store.report([Report(ref=stranger, kind=ReportKind.SUCCEEDED)])
    assert result.status is ReportStatus.NOT_FOUND and result.state is None
    [released] = store.release([stranger])
    assert released.status is ReportStatus.NOT_FOUND
    assert store.report([]) == [] and store.release([]) == []


def test_a_cancelled_failure_keeps_the_handler_error(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    store.cancel(job.id)
    [result] = store.report([f.fail(job, message="stopped")])
    assert result.state is S.CANCELLED
    [attempt] = store.attempts(job.id)
    assert attempt.outcome is Outcome.CANCELLED
    assert attempt.error is not None and attempt.error.message == "stopped"
    ended = store.get(job.id)
    assert ended.last_error is not None and ended.last_error.message == "stopped"


def test_a_released_cancel_requested_job_ends_cancelled(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    store.cancel(job.id)
    [released] = store.release([job.ref()])
    assert released.status is ReportStatus.APPLIED and released.state is S.CANCELLED
    assert store.get(job.id).finished_at is not None


def test_checkpoint_and_attempts_of_an_unknown_job_are_not_found(store: JobStore) -> None:
    stranger = unknown_id(store)
    with pytest.raises(JobNotFound):
        store.checkpoint(stranger, {"x": 1})
    with pytest.raises(JobNotFound):
        store.attempts(stranger.job_id)


def test_json_values_read_back_as_json(store: JobStore) -> None:
    f.enqueue(store, args={"nested": {"list": [1, 2.5, "x", None, True]}})
    job = f.claim_one(store)
    store.checkpoint(job.ref(), {"pair": [1, 2]})
    store.report([f.succeed(job, ["done", {"n": 3}])])
    done = store.get(job.id)
    assert dict(done.args) == {"nested": {"list": [1, 2.5, "x", None, True]}}
    assert done.checkpoint == {"pair": [1, 2]}
    assert done.result == ["done", {"n": 3}]


# --- the scheduler's path -----------------------------------------------------------------


def test_promote_takes_the_earliest_run_at_first_up_to_its_limit(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    later = f.enqueue(store, delay_s=0.2, queue="q")
    earlier = f.enqueue(store, delay_s=0.1, queue="q")
    store_harness.pass_time(0.4)
    assert store.promote_due(limit=1).count == 1
    assert store.get(earlier.id).state is S.QUEUED
    assert store.get(later.id).state is S.SCHEDULED
    assert dict(store.promote_due(limit=5).by_queue) == {"q": 1}


def test_a_dependent_of_a_succeeded_job_is_queued_at_once(store: JobStore) -> None:
    f.enqueue(store)
    parent = f.claim_one(store)
    store.report([f.succeed(parent)])
    child = f.enqueue(store, depends_on=[parent.id])
    assert child.state is S.QUEUED


def test_a_dependent_names_the_lowest_failed_dependency(store: JobStore) -> None:
    first = f.enqueue(store, delay_s=600)
    second = f.enqueue(store, delay_s=600)
    child = f.enqueue(store, depends_on=[second.id, first.id])
    store.cancel(second.id)
    store.cancel(first.id)
    [cancelled] = store.resolve_dependencies(limit=10)
    assert cancelled.id == child.id
    lowest = min(first.id, second.id)
    assert cancelled.last_error is not None
    assert cancelled.last_error.message == f"dependency {lowest} ended cancelled"
    assert store.resolve_dependencies(limit=10) == []


def test_a_chain_of_dependents_resolves_one_level_per_call(store: JobStore) -> None:
    """The port's promise: every job is judged on the states at the start of the call."""
    parent = f.enqueue(store, delay_s=600)
    child = f.enqueue(store, depends_on=[parent.id])
    grandchild = f.enqueue(store, depends_on=[child.id])
    store.cancel(parent.id)
    assert [j.id for j in store.resolve_dependencies(limit=10)] == [child.id]
    assert store.get(grandchild.id).state is S.SCHEDULED
    assert [j.id for j in store.resolve_dependencies(limit=10)] == [grandchild.id]
    assert store.resolve_dependencies(limit=10) == []


def test_reaping_honours_its_limit(store_harness: Harness[JobStore]) -> None:
    store = store_harness.adapter
    f.enqueue_many(store, 3)
    claim(store, limit=3, lease_ttl_s=0.2)
    store_harness.pass_time(0.4)
    first = store.reap_expired(limit=2)
    assert len(first) == 2 and [j.id for j in first] == sorted(j.id for j in first)
    assert len(store.reap_expired(limit=2)) == 1
    assert store.reap_expired(limit=2) == []


def test_next_wakeup_ignores_finished_jobs(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    store.report([f.succeed(job)])
    assert store.next_wakeup() is None


# --- a person's path ----------------------------------------------------------------------


def test_bulk_cancel_requests_cancellation_of_running_jobs_once(store: JobStore) -> None:
    f.enqueue_many(store, 2, queue="x")
    running = f.claim_one(store)
    f.enqueue(store, queue="x", delay_s=600)
    assert store.cancel_many(JobFilter(queues=frozenset({"x"}))) == 3
    assert store.get(running.id).cancel_requested
    assert store.get(running.id).state is S.RUNNING
    assert store.cancel_many(JobFilter(queues=frozenset({"x"}))) == 0
    states = sorted(j.state.value for j in store.list_jobs(JobQuery()).jobs)
    assert states == ["cancelled", "cancelled", "running"]


def test_bulk_retry_waits_for_dependencies_that_have_not_succeeded(store: JobStore) -> None:
    parent = f.enqueue(store, queue="p", max_attempts=1)
    child = f.enqueue(store, queue="c", depends_on=[parent.id])
    store.report([f.fail(f.claim_one(store))])
    store.resolve_dependencies(limit=10)
    assert store.get(child.id).state is S.CANCELLED
    assert store.retry_many(JobFilter()) == 2
    assert store.get(parent.id).state is S.QUEUED
    retried = store.get(child.id)
    assert retried.state is S.SCHEDULED and retried.attempt_limit == retried.max_attempts
    assert retried.finished_at is None


def test_retry_of_a_cancelled_running_job_clears_the_cancel_request(store: JobStore) -> None:
    f.enqueue(store)
    job = f.claim_one(store)
    store.cancel(job.id)
    store.report([f.succeed(job)])
    retried = store.retry(job.id)
    assert retried.state is S.QUEUED and not retried.cancel_requested
    assert retried.attempt_limit == 1 + retried.max_attempts


def test_rescheduling_a_due_job_into_the_future_makes_it_wait(store: JobStore) -> None:
    job = f.enqueue(store)
    moved = store.reschedule(job.id, run_at=store.now() + timedelta(hours=1))
    assert moved.state is S.SCHEDULED
    assert store.get(job.id) == moved
    back = store.reschedule(job.id, priority=3)
    assert back.state is S.SCHEDULED and back.priority == 3
    with pytest.raises(JobNotFound):
        store.reschedule(unknown_id(store).job_id, priority=1)


def test_an_idempotency_key_returns_the_job_whatever_its_state(store: JobStore) -> None:
    [made] = store.enqueue([f.new_job(store, idempotency_key="once", args={"n": 1})])
    job = f.claim_one(store)
    store.report([f.succeed(job)])
    [again] = store.enqueue([f.new_job(store, idempotency_key="once", args={"n": 1})])
    assert not again.created and again.job.id == made.job.id
    assert again.job.state is S.SUCCEEDED
    assert store.enqueue([]) == []


# --- reading ------------------------------------------------------------------------------


def test_listing_filters_by_state(store: JobStore) -> None:
    f.enqueue(store, delay_s=600)
    queued = f.enqueue(store)
    page = store.list_jobs(JobQuery(filter=JobFilter(states=frozenset({S.QUEUED}))))
    assert [j.id for j in page.jobs] == [queued.id]
    assert page.next_cursor is None


def test_queues_show_a_paused_queue_with_jobs_and_the_oldest_queued_age(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    f.enqueue(store, queue="slow")
    store_harness.pass_time(0.05)
    f.enqueue(store, queue="slow")
    store.set_paused("slow", paused=True)
    [info] = [q for q in store.queues() if q.name == "slow"]
    assert info.paused and info.counts[S.QUEUED] == 2
    assert info.oldest_queued_age_s is not None and info.oldest_queued_age_s >= 0.05
    store.set_paused("slow", paused=False)
    [info] = [q for q in store.queues() if q.name == "slow"]
    assert not info.paused


def test_stats_percentiles_are_durations_of_successful_attempts(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    f.enqueue_many(store, 3, max_attempts=1)
    jobs = claim(store, limit=3)
    store_harness.pass_time(0.05)
    store.report([f.succeed(jobs[0])])
    store_harness.pass_time(0.05)
    store.report([f.succeed(jobs[1]), f.fail(jobs[2])])
    stats = store.stats(window_s=3600)
    assert stats.succeeded == 2 and stats.dead == 1 and stats.failed_attempts == 1
    durations = sorted(
        a.duration_s for j in jobs[:2] for a in store.attempts(j.id) if a.duration_s is not None
    )
    assert stats.run_s_p50 == durations[0]
    assert stats.run_s_p95 == durations[1]
    assert stats.throughput_per_s == 3 / 3600
