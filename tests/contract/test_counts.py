"""The counts a store keeps (`queues`, `count_jobs`, `attempt_totals`) equal a real count of
its rows, on every store, under generated histories and after rows are deleted behind the
engine's back (as retention or a person with psql would); and the dashboard's reads
(`find_by_key`, `dependents`, `dead_groups`, `dead_ids`) answer what the rows say."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.model import RUN_S_BUCKETS, Job, JobState, Outcome
from taskyard.domain.ports import JobFilter, JobQuery, JobStore
from taskyard.domain.transitions import Report
from tests import factories as f
from tests.contract.conftest import Harness
from tests.contract.test_job_store_more import claim

S = JobState
QUEUES = ("a", "b")
TASKS = ("t1", "t2")


def every_job(store: JobStore) -> list[Job]:
    jobs: list[Job] = []
    query = JobQuery(limit=1000)
    while True:
        page = store.list_jobs(query)
        jobs.extend(page.jobs)
        if page.next_cursor is None:
            return jobs
        query = JobQuery(limit=1000, cursor=page.next_cursor)


def assert_counts_are_real(store: JobStore) -> None:
    jobs = every_job(store)
    real = Counter((job.queue, job.state) for job in jobs)
    kept = {
        (info.name, state): count
        for info in store.queues()
        for state, count in info.counts.items()
        if count
    }
    assert kept == dict(real)
    dead = Counter(
        (job.task, job.last_error.type if job.last_error else None)
        for job in jobs
        if job.state is S.DEAD
    )
    assert {(g.task, g.error_type): g.count for g in store.dead_groups()} == dict(dead)
    for info in store.queues():
        queued = [job.run_at for job in jobs if job.queue == info.name and job.state is S.QUEUED]
        assert (info.oldest_queued_age_s is None) == (not queued)
    for job_filter in (
        JobFilter(),
        JobFilter(states=frozenset({S.DEAD, S.CANCELLED})),
        JobFilter(queues=frozenset({"a"}), tasks=frozenset({"t2"})),
        JobFilter(states=frozenset({S.QUEUED}), tasks=frozenset({"t1"})),
    ):
        expected = sum(
            1 for job in jobs if job_filter.admits(state=job.state, queue=job.queue, task=job.task)
        )
        assert store.count_jobs(job_filter) == expected, job_filter


def assert_attempt_totals_are_real(store: JobStore, deleted: Counter[Outcome]) -> None:
    """`deleted`: the outcomes of the attempts of jobs deleted since the store began (they
    still count)."""
    records = [a for job in every_job(store) for a in store.attempts(job.id)]
    totals = store.attempt_totals(run_s_buckets=RUN_S_BUCKETS)
    real = Counter(a.outcome for a in records) + deleted
    assert {o: n for o, n in totals.by_outcome.items() if n} == dict(real)


def delete_jobs(
    harness: Harness[JobStore], request: pytest.FixtureRequest, ids: Sequence[UUID]
) -> None:
    """Delete job rows below the engine, the way each store keeps them (their attempt
    records stay). The outcomes of their attempts are tallied on the test's node."""
    if not ids:
        return
    deleted: Counter[Outcome] = request.node.__dict__.setdefault("deleted_attempts", Counter())
    for job_id in ids:
        deleted.update(a.outcome for a in harness.adapter.attempts(job_id))
    if harness.name == "memory":
        store = harness.adapter
        assert isinstance(store, InMemoryJobStore)
        state = store.state
        with state.lock:
            for job_id in ids:
                job = state.jobs.pop(job_id)
                state.by_state[job.state].discard(job_id)
                if job.idempotency_key is not None:
                    state.idempotency.pop(job.idempotency_key, None)
    elif harness.name == "sqlite":
        path = request.getfixturevalue("tmp_path") / "contract.db"
        with sqlite3.connect(path) as conn:
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(str(i),) for i in ids])
    else:
        import psycopg

        url = request.getfixturevalue("migrated_postgres_url")
        with psycopg.connect(url) as conn:
            conn.execute("DELETE FROM taskyard.jobs WHERE id = ANY(%s)", (list(ids),))


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.sampled_from(QUEUES), st.sampled_from(TASKS),
                  st.integers(1, 4), st.booleans()),
        st.tuples(st.just("claim"), st.integers(1, 6)),
        st.tuples(st.just("report"), st.sampled_from(["succeed", "retry", "dead"])),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("retry"), st.integers(0, 50)),
        st.tuples(st.just("delete"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=12,
)  # fmt: skip


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_counts_equal_a_real_count_under_any_history(
    store_harness: Harness[JobStore], request: pytest.FixtureRequest, ops: list[tuple[object, ...]]
) -> None:
    store = store_harness.adapter
    running: list[Job] = []
    for op in ops:
        kind = op[0]
        if kind == "enqueue":
            _, queue, task, count, later = op
            f.enqueue_many(
                store, int(count), queue=queue, task=task, delay_s=600 if later else None
            )  # type: ignore[arg-type]
        elif kind == "claim":
            running.extend(claim(store, limit=int(op[1])))  # type: ignore[call-overload]
        elif kind == "report" and running:
            job = running.pop(0)
            how = op[1]
            report: Report = (
                f.succeed(job)
                if how == "succeed"
                else f.fail(job, retryable=how == "retry", delay_s=600)
            )
            store.report([report])
        elif kind in ("cancel", "retry", "delete"):
            jobs = every_job(store)
            if not jobs:
                continue
            chosen = jobs[int(op[1]) % len(jobs)]  # type: ignore[call-overload]
            if kind == "cancel" and chosen.state not in (S.SUCCEEDED, S.DEAD, S.CANCELLED):
                store.cancel(chosen.id)
            elif kind == "retry" and chosen.state in (S.DEAD, S.CANCELLED):
                store.retry(chosen.id)
            elif (
                kind == "delete"
                and chosen.state in (S.SUCCEEDED, S.DEAD, S.CANCELLED)
                and not store.dependents(chosen.id, limit=1)
            ):
                delete_jobs(store_harness, request, [chosen.id])
    assert_counts_are_real(store)
    assert_attempt_totals_are_real(store, request.node.__dict__.get("deleted_attempts", Counter()))


def test_counts_follow_deletes_of_many_jobs_at_once(
    store_harness: Harness[JobStore], request: pytest.FixtureRequest
) -> None:
    store = store_harness.adapter
    for queue in QUEUES:
        for task in TASKS:
            f.enqueue_many(store, 3, queue=queue, task=task)
    done = claim(store, limit=5)
    store.report([f.succeed(job) for job in done])
    assert_counts_are_real(store)
    delete_jobs(store_harness, request, [job.id for job in done])
    delete_jobs(
        store_harness,
        request,
        [job.id for job in every_job(store) if job.queue == "b" and job.task == "t1"],
    )
    assert_counts_are_real(store)
    assert store.count_jobs(JobFilter(states=frozenset({S.SUCCEEDED}))) == 0
    # Attempts are counted since the store began: the deleted jobs' runs still count.
    assert store.attempt_totals(run_s_buckets=()).by_outcome[Outcome.SUCCEEDED] == 5


def test_find_by_key_finds_the_job_that_holds_the_key(store: JobStore) -> None:
    keyed = f.enqueue(store, idempotency_key="order-17")
    f.enqueue(store, idempotency_key="order-18")
    assert store.find_by_key("order-17") == keyed
    assert store.find_by_key("order-19") is None


def test_dependents_are_the_jobs_that_wait_on_a_job_oldest_first(store: JobStore) -> None:
    parent = f.enqueue(store)
    other = f.enqueue(store)
    first = f.enqueue(store, depends_on=[parent.id])
    second = f.enqueue(store, depends_on=[parent.id, other.id])
    f.enqueue(store, depends_on=[other.id])
    expected = sorted([first, second], key=lambda j: (j.created_at, j.id))
    assert store.dependents(parent.id, limit=10) == expected
    assert store.dependents(parent.id, limit=1) == expected[:1]
    assert store.dependents(first.id, limit=10) == []


def test_dead_jobs_are_grouped_by_task_and_error_type_largest_first(store: JobStore) -> None:
    for task, count in (("t1", 3), ("t2", 1)):
        f.enqueue_many(store, count, task=task, max_attempts=1)
    jobs = claim(store, limit=10)
    assert len(jobs) == 4
    f.enqueue(store, task="t3")  # stays queued: not dead
    store.report([f.fail(job, retryable=False) for job in jobs])
    cancelled = store.cancel(f.enqueue(store, task="t1").id)
    store.retry(cancelled.id)
    groups = store.dead_groups()
    assert [(g.task, g.error_type, g.count) for g in groups] == [
        ("t1", "RuntimeError", 3),
        ("t2", "RuntimeError", 1),
    ]
    dead_t1 = sorted(
        (j for j in jobs if j.task == "t1"), key=lambda j: (j.created_at, j.id), reverse=True
    )
    assert groups[0].newest.id == dead_t1[0].id
    assert groups[0].newest.state is S.DEAD
    ids = store.dead_ids(task="t1", error_type="RuntimeError", limit=10)
    assert ids == [j.id for j in dead_t1]
    assert store.dead_ids(task="t1", error_type="RuntimeError", limit=2) == ids[:2]
    assert store.dead_ids(task="t1", error_type="KeyError", limit=10) == []
    assert store.dead_ids(task="t1", error_type=None, limit=10) == []


def test_the_outcome_series_counts_what_ended_in_each_slice_as_stats_does(
    store_harness: Harness[JobStore],
) -> None:
    store = store_harness.adapter

    def finish(succeed: int, die: int, fail: int) -> None:
        f.enqueue_many(store, succeed + die + fail, max_attempts=2)
        jobs = claim(store, limit=succeed + die + fail)
        reports = [f.succeed(job) for job in jobs[:succeed]]
        reports += [f.fail(job, retryable=False) for job in jobs[succeed : succeed + die]]
        reports += [f.fail(job, delay_s=600) for job in jobs[succeed + die :]]
        store.report(reports)

    finish(2, 1, 1)
    if not store_harness.real_time:
        store_harness.pass_time(130)  # two slices of 60 s later
    finish(3, 0, 2)
    series = store.outcome_series(bucket_s=60, buckets=4)
    assert len(series) == 4
    assert [b.start for b in series] == sorted(b.start for b in series)
    stats = store.stats(window_s=240)
    assert sum(b.succeeded for b in series) == stats.succeeded == 5
    assert sum(b.dead for b in series) == stats.dead == 1
    # a dead job's attempt and a retried one's are both charged
    assert sum(b.failed_attempts for b in series) == stats.failed_attempts == 4
    assert series[-1].succeeded >= 3  # the latest slice holds the latest jobs
    if not store_harness.real_time:
        assert [(b.succeeded, b.dead, b.failed_attempts) for b in series] == [
            (0, 0, 0),
            (2, 1, 2),
            (0, 0, 0),
            (3, 0, 2),
        ]
