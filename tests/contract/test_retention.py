"""Retention on every store: `prune` deletes finished jobs past their period, with their
attempts and dependency rows, and nothing else; a queue's override wins; a job another job
still depends on stays until that one is gone; an idempotency key is free once its job is
pruned."""

from __future__ import annotations

import pytest

from taskyard.domain.errors import JobNotFound
from taskyard.domain.model import Job, JobState
from taskyard.domain.ports import JobQuery, JobStore
from taskyard.domain.retention import Retention
from tests import factories as f
from tests.contract.conftest import Harness

S = JobState
SHORT = Retention(succeeded_s=1, dead_s=1, cancelled_s=1)
PERIOD_PASSED_S = 1.1


def finished(store: JobStore, state: JobState, **kwargs: object) -> Job:
    """A job that ended in `state`, after one attempt (cancelled: before any)."""
    job = f.enqueue(store, **kwargs)
    if state is S.CANCELLED:
        return store.cancel(job.id)
    claimed = f.claim_one(store, queues=frozenset({job.queue}))
    assert claimed.id == job.id
    report = f.succeed(claimed) if state is S.SUCCEEDED else f.fail(claimed, retryable=False)
    [result] = store.report([report])
    assert result.state is state
    return store.get(job.id)


def gone(store: JobStore, job: Job) -> bool:
    try:
        store.get(job.id)
    except JobNotFound:
        with pytest.raises(JobNotFound):
            store.attempts(job.id)
        return True
    return False


def test_finished_jobs_past_their_period_are_deleted_with_their_attempts_and_no_other(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    old = [finished(store, state, queue=state.value) for state in (S.SUCCEEDED, S.DEAD)]
    old.append(finished(store, S.CANCELLED))
    queued = f.enqueue(store, queue="waiting")
    running = f.claim_one(store, queues=frozenset({f.enqueue(store, queue="busy").queue}))
    scheduled = f.enqueue(store, delay_s=3600)
    store_harness.pass_time(PERIOD_PASSED_S)
    recent = finished(store, S.SUCCEEDED, queue="recent")

    assert store.prune(SHORT, limit=100) == 3
    assert all(gone(store, job) for job in old)
    for job in (queued, running, scheduled, recent):
        assert store.get(job.id).state is job.state
    assert len(store.attempts(running.id)) == 1
    listed = store.list_jobs(JobQuery(limit=100)).jobs
    assert {job.id for job in listed} == {queued.id, running.id, scheduled.id, recent.id}
    assert store.prune(SHORT, limit=100) == 0


def test_zero_keeps_forever_and_a_queues_override_wins_for_the_states_it_names(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    store.set_retention("keep", {S.DEAD: 0})
    store.set_retention("fast", {S.SUCCEEDED: 1})
    store.set_retention("dropped", {S.SUCCEEDED: 1})
    store.set_retention("dropped", {})
    assert store.retention_overrides() == {"keep": {S.DEAD: 0}, "fast": {S.SUCCEEDED: 1}}
    kept = [
        finished(store, S.SUCCEEDED, queue="default"),  # the default keeps it forever
        finished(store, S.DEAD, queue="keep"),  # the queue keeps it forever
        finished(store, S.SUCCEEDED, queue="keep"),  # the default, which keeps forever
        finished(store, S.SUCCEEDED, queue="dropped"),  # no override any more
    ]
    pruned = [
        finished(store, S.SUCCEEDED, queue="fast"),
        finished(store, S.DEAD, queue="default"),
        finished(store, S.DEAD, queue="fast"),  # the queue names no dead period
    ]
    store_harness.pass_time(PERIOD_PASSED_S)

    assert store.prune(Retention(succeeded_s=0, dead_s=1, cancelled_s=0), limit=100) == 3
    assert all(gone(store, job) for job in pruned)
    assert not any(gone(store, job) for job in kept)


def test_a_job_another_job_depends_on_stays_until_that_job_is_gone(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    first = finished(store, S.SUCCEEDED)
    second = f.enqueue(store, depends_on=[first.id])
    store_harness.pass_time(PERIOD_PASSED_S)
    assert store.prune(SHORT, limit=100) == 0  # a queued job depends on it

    claimed = f.claim_one(store)
    assert claimed.id == second.id
    store.report([f.succeed(claimed)])
    store_harness.pass_time(PERIOD_PASSED_S)
    assert store.prune(SHORT, limit=100) == 1  # the dependent goes first...
    assert gone(store, second) and not gone(store, first)
    assert store.prune(SHORT, limit=100) == 1  # ...then what it depended on
    assert gone(store, first)


def test_a_prune_deletes_at_most_its_limit_oldest_finished_first(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    jobs = []
    for _ in range(5):
        jobs.append(finished(store, S.SUCCEEDED))
        store_harness.pass_time(0.01)  # each finishes later than the one before
    store_harness.pass_time(PERIOD_PASSED_S)
    assert store.prune(SHORT, limit=2) == 2
    assert [gone(store, job) for job in jobs] == [True, True, False, False, False]
    assert store.prune(SHORT, limit=10) == 3


def test_an_idempotency_key_is_free_again_once_its_job_is_pruned(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    key, args = "nightly-2026-12-06", {"day": 6}
    first = finished(store, S.SUCCEEDED, idempotency_key=key, args=args)
    [again] = store.enqueue([f.new_job(store, idempotency_key=key, args=args)])
    assert (again.created, again.job.id) == (False, first.id)
    store_harness.pass_time(PERIOD_PASSED_S)
    assert store.prune(SHORT, limit=10) == 1

    [after] = store.enqueue([f.new_job(store, idempotency_key=key, args=args)])
    assert after.created and after.job.id != first.id
    assert after.job.state is S.QUEUED


def test_the_attempt_totals_still_count_a_pruned_jobs_attempts(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    finished(store, S.SUCCEEDED)
    finished(store, S.DEAD)
    before = store.attempt_totals(run_s_buckets=(60.0,))
    store_harness.pass_time(PERIOD_PASSED_S)
    assert store.prune(SHORT, limit=10) == 2
    assert store.attempt_totals(run_s_buckets=(60.0,)) == before
