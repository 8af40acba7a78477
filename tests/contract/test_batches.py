"""The `JobStore` contract for batches: many reports, heartbeats or jobs in one call.

A worker reports its outcomes in batches and extends all its leases in one call; the SQL
stores commit most successes with one set-based statement and hand the rest to the pure
functions. Whatever path a report takes, a batch answers exactly as the reports would
have been answered one at a time, in order, at the moment of the call.
"""

from __future__ import annotations

from taskyard.domain.model import ErrorInfo, JobState, LeaseRef, Outcome
from taskyard.domain.ports import ClaimRequest, JobStore, ReportStatus
from taskyard.domain.transitions import Report, ReportKind
from tests import factories as f
from tests.contract.conftest import Harness

S = JobState
TTL_SHORT_S = 0.2
TTL_LONG_S = 60.0


def _claim(store: JobStore, count: int, *, ttl_s: float = TTL_LONG_S) -> list:  # type: ignore[type-arg]
    jobs = store.claim(ClaimRequest(worker="w1", limit=count, lease_ttl_s=ttl_s))
    assert len(jobs) == count
    return jobs


def test_a_batch_of_every_kind_of_report_answers_as_one_at_a_time_in_order(
    store: JobStore,
) -> None:
    f.enqueue_many(store, 6, max_attempts=3)
    live, failing, cancelled, superseded, twice, first_fails = _claim(store, 6)
    store.cancel(cancelled.id)
    stranger = LeaseRef(job_id=f.new_job(store).id, attempt=1, worker="w1")
    wrong_attempt = LeaseRef(job_id=superseded.id, attempt=superseded.attempt + 1, worker="w1")
    batch = [
        f.succeed(live, {"n": 1}),
        f.fail(failing, delay_s=300),
        f.succeed(cancelled, "ignored"),
        Report(ref=wrong_attempt, kind=ReportKind.SUCCEEDED),
        Report(ref=stranger, kind=ReportKind.SUCCEEDED),
        f.succeed(twice, [1, 2]),
        f.fail(first_fails, delay_s=300),
        f.succeed(first_fails, "too late"),
        f.succeed(twice, [1, 2]),
    ]
    results = store.report(batch)
    assert [r.ref for r in results] == [r.ref for r in batch]
    assert [(r.status, r.state) for r in results] == [
        (ReportStatus.APPLIED, S.SUCCEEDED),
        (ReportStatus.APPLIED, S.RETRYING),
        (ReportStatus.APPLIED, S.CANCELLED),
        (ReportStatus.STALE, S.RUNNING),
        (ReportStatus.NOT_FOUND, None),
        (ReportStatus.APPLIED, S.SUCCEEDED),
        (ReportStatus.APPLIED, S.RETRYING),
        (ReportStatus.ALREADY_APPLIED, S.RETRYING),
        (ReportStatus.ALREADY_APPLIED, S.SUCCEEDED),
    ]
    assert store.get(live.id).result == {"n": 1}
    assert store.get(twice.id).result == [1, 2]
    assert store.get(cancelled.id).result is None
    assert store.get(first_fails.id).result is None
    outcomes = {
        job.id: [a.outcome for a in store.attempts(job.id)]
        for job in (live, failing, cancelled, superseded, twice, first_fails)
    }
    assert outcomes == {
        live.id: [Outcome.SUCCEEDED],
        failing.id: [Outcome.FAILED],
        cancelled.id: [Outcome.CANCELLED],
        superseded.id: [Outcome.RUNNING],
        twice.id: [Outcome.SUCCEEDED],
        first_fails.id: [Outcome.FAILED],
    }


def test_a_report_batch_that_straddles_a_lease_expiry_commits_only_live_leases(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    f.enqueue(store, max_attempts=3)
    [expiring] = _claim(store, 1, ttl_s=TTL_SHORT_S)
    f.enqueue(store, max_attempts=3)
    [lasting] = _claim(store, 1)
    store_harness.pass_time(TTL_SHORT_S * 2)
    late, on_time = store.report([f.succeed(expiring, "late"), f.succeed(lasting, "on time")])
    assert (late.status, late.state) == (ReportStatus.STALE, S.RUNNING)
    assert (on_time.status, on_time.state) == (ReportStatus.APPLIED, S.SUCCEEDED)
    assert store.get(lasting.id).result == "on time"
    assert store.get(expiring.id).result is None
    [stale] = store.attempts(expiring.id)
    assert stale.outcome is Outcome.STALE
    # The reaper counts the lost lease; the stale attempt keeps its outcome; the job runs
    # again and its new attempt commits once.
    [reaped] = store.reap_expired(limit=10)
    assert reaped.id == expiring.id and reaped.state is S.QUEUED
    again = f.claim_one(store, worker="w2")
    assert again.id == expiring.id and again.attempt == expiring.attempt + 1
    [done] = store.report([f.succeed(again, "second run")])
    assert done.status is ReportStatus.APPLIED
    assert [a.outcome for a in store.attempts(expiring.id)] == [Outcome.STALE, Outcome.SUCCEEDED]
    assert store.get(expiring.id).result == "second run"


def test_a_heartbeat_batch_that_straddles_a_lease_expiry_extends_only_live_leases(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter
    f.enqueue(store)
    [expiring] = _claim(store, 1, ttl_s=TTL_SHORT_S)
    f.enqueue(store)
    [lasting] = _claim(store, 1, ttl_s=TTL_SHORT_S * 20)
    store_harness.pass_time(TTL_SHORT_S * 2)
    lost, held = store.heartbeat([expiring.ref(), lasting.ref()], lease_ttl_s=TTL_LONG_S)
    assert (lost.held, held.held) == (False, True)
    assert held.expires_at is not None and lasting.lease is not None
    assert held.expires_at > lasting.lease.expires_at
    assert store.get(expiring.id).lease == expiring.lease, "an expired lease is not revived"


def test_a_batch_sent_again_after_a_partial_answer_commits_only_what_had_not_landed(
    store: JobStore,
) -> None:
    """A worker that lost the answer to a report call sends the same outcomes again, with
    any that finished meanwhile: what landed answers `already_applied`, the rest lands."""
    f.enqueue_many(store, 4, max_attempts=3)
    a, b, c, d = _claim(store, 4)
    first = [f.succeed(a, "a"), f.fail(b, delay_s=300)]
    assert [r.status for r in store.report(first)] == [ReportStatus.APPLIED] * 2
    after_a, after_b = store.get(a.id), store.get(b.id)
    results = store.report([*first, f.succeed(c, "c"), f.fail(d, retryable=False)])
    assert [r.status for r in results] == [
        ReportStatus.ALREADY_APPLIED,
        ReportStatus.ALREADY_APPLIED,
        ReportStatus.APPLIED,
        ReportStatus.APPLIED,
    ]
    assert (store.get(a.id), store.get(b.id)) == (after_a, after_b)
    assert [store.get(j.id).state for j in (c, d)] == [S.SUCCEEDED, S.DEAD]
    for job in (a, b, c, d):
        assert len(store.attempts(job.id)) == 1, "one attempt, one committed outcome"


def test_a_batched_success_closes_its_attempt_with_the_lease_it_had(store: JobStore) -> None:
    f.enqueue(store)
    [job] = _claim(store, 1, ttl_s=30.0)
    [status] = store.heartbeat([job.ref()], lease_ttl_s=90.0)
    assert status.held and status.expires_at is not None
    [result] = store.report([f.succeed(job, {"x": [1, None, "y"]})])
    assert result.status is ReportStatus.APPLIED
    done = store.get(job.id)
    [attempt] = store.attempts(job.id)
    assert attempt.outcome is Outcome.SUCCEEDED and attempt.error is None
    assert attempt.lease_expires_at == status.expires_at
    assert attempt.finished_at == done.finished_at == done.updated_at
    assert done.lease is None and done.result == {"x": [1, None, "y"]}
    assert done.last_error is None


def test_a_success_after_a_failed_attempt_clears_the_last_error(store: JobStore) -> None:
    """A succeeded job shows no error; the failed attempt keeps its own (issue 19)."""
    f.enqueue(store, max_attempts=3)
    [job] = _claim(store, 1)
    error = ErrorInfo(type="boom", message="first try", traceback="Traceback ...")
    store.report([Report(ref=job.ref(), kind=ReportKind.FAILED, error=error, retry_delay_s=0.0)])
    assert store.promote_due(limit=10).count == 1
    [again] = _claim(store, 1)
    [result] = store.report([f.succeed(again, 2)])
    assert result.status is ReportStatus.APPLIED
    done = store.get(job.id)
    assert done.state is S.SUCCEEDED and done.result == 2
    assert done.last_error is None
    failed, succeeded = store.attempts(job.id)
    assert failed.error is not None and failed.error.message == "first try"
    assert succeeded.outcome is Outcome.SUCCEEDED and succeeded.error is None


def test_a_large_plain_batch_and_a_small_one_read_back_as_returned(store: JobStore) -> None:
    """The SQL stores write plain jobs (no key, no dependency) by other statements than
    keyed ones; what `enqueue` returns is what `get` reads, delays by the store's clock."""
    small = store.enqueue([f.new_job(store, delay_s=0.000_000_5) for _ in range(3)])
    large = store.enqueue(
        [f.new_job(store, args={"n": n, "t": (1, 2)}) for n in range(150)]
        + [f.new_job(store, delay_s=3600.25)]
    )
    for enqueued in (*small, *large):
        assert enqueued.created
        assert store.get(enqueued.job.id) == enqueued.job
    assert [e.job.state for e in small] == [S.QUEUED] * 3
    delayed = large[-1].job
    assert delayed.state is S.SCHEDULED
    assert (delayed.run_at - delayed.created_at).total_seconds() == 3600.25
