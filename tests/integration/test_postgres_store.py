"""The PostgreSQL store against a real server: concurrency, killed connections, lost commit
answers, transactional enqueue."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import psycopg
import pytest

import taskyard
from taskyard.adapters.postgres import AmbiguousCommit, PoolSettings, PostgresJobStore
from taskyard.adapters.postgres.store import COPY_MIN_JOBS, split_url
from taskyard.domain.errors import JobNotFound, StoreUnavailable, UnknownDependency
from taskyard.domain.model import Enqueued, JobState, Outcome
from taskyard.domain.ports import ClaimRequest, JobQuery, ReportStatus
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import ConfigError, Settings
from tests import factories as f
from tests import services
from tests.integration.helpers import CommitDroppingProxy, new_jobs, via, wait_for

ROOT = Path(__file__).resolve().parents[2]
JOBS = 5_000
CLAIMERS = 8


@pytest.fixture
def url(migrated_postgres_url: str) -> str:
    services.truncate_taskyard(migrated_postgres_url)
    return migrated_postgres_url


@pytest.fixture
def store(url: str) -> Iterator[PostgresJobStore]:
    with PostgresJobStore.from_url(f"{url}?pool_max_size={CLAIMERS}") as store:
        yield store


def _fill(store: PostgresJobStore, count: int, **kwargs: Any) -> set[str]:
    ids: set[str] = set()
    batch = new_jobs(count, **kwargs)
    for start in range(0, count, 1000):
        ids.update(str(e.job.id) for e in store.enqueue(batch[start : start + 1000]))
    return ids


def _assert_claimed_once(url: str, expected: set[str], seen: list[str]) -> None:
    assert len(seen) == len(expected), "every job claimed, none twice"
    assert set(seen) == expected
    with psycopg.connect(url) as conn:
        states = dict(
            conn.execute("SELECT state, count(*) FROM taskyard.jobs GROUP BY state").fetchall()
        )
        attempts = conn.execute(
            "SELECT count(*), count(DISTINCT job_id), max(attempt) FROM taskyard.attempts"
        ).fetchone()
    assert states == {"running": len(expected)}
    assert attempts == (len(expected), len(expected), 1)


# --- concurrency --------------------------------------------------------------------------


def test_eight_claimer_threads_take_every_job_exactly_once(
    store: PostgresJobStore, url: str
) -> None:
    expected = _fill(store, JOBS)
    start = threading.Barrier(CLAIMERS)

    def claimer(index: int) -> list[str]:
        start.wait(timeout=30)
        mine: list[str] = []
        while True:
            jobs = store.claim(ClaimRequest(worker=f"t{index}", limit=25, lease_ttl_s=300))
            if not jobs:
                return mine
            mine.extend(str(j.id) for j in jobs)

    with ThreadPoolExecutor(CLAIMERS) as pool:
        results = list(pool.map(claimer, range(CLAIMERS)))
    seen = [job_id for mine in results for job_id in mine]
    _assert_claimed_once(url, expected, seen)
    assert sum(1 for mine in results if mine) >= 2, "the claimers really overlapped"


def test_eight_claimer_processes_take_every_job_exactly_once(
    store: PostgresJobStore, url: str
) -> None:
    expected = _fill(store, JOBS, queue="proc")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.integration.pg_claimer", url, "proc"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(CLAIMERS)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0] * CLAIMERS
    per_process = [[line for line in out.splitlines() if line] for out in outputs]
    seen = [job_id for lines in per_process for job_id in lines]
    _assert_claimed_once(url, expected, seen)
    assert sum(1 for lines in per_process if lines) >= 2, "the claimers really overlapped"


# --- failures -----------------------------------------------------------------------------


def _backend_waiting_on_a_lock(url: str) -> int:
    def probe() -> int | None:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                """SELECT pid FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'
                     AND pid <> pg_backend_pid()"""
            ).fetchone()
        return None if row is None else int(row[0])

    return wait_for("a store transaction to block on a lock", probe)


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_report_killed_after_its_writes_leaves_nothing_and_says_unavailable(
    store: PostgresJobStore, url: str
) -> None:
    f.enqueue_many(store, 2)
    first, second = sorted(f_claim(store, 2), key=lambda j: j.id)
    outcome: list[BaseException | object] = []
    with psycopg.connect(url) as blocker:
        # Hold the attempt record of the second job: the report's write statement updates
        # both jobs, then waits here, mid-transaction.
        blocker.execute(
            "SELECT 1 FROM taskyard.attempts WHERE job_id = %s FOR UPDATE", (second.id,)
        )

        def report() -> None:
            try:
                outcome.append(store.report([f.succeed(first), f.succeed(second)]))
            except BaseException as exc:
                outcome.append(exc)

        reporter = threading.Thread(target=report)
        reporter.start()
        _terminate(url, _backend_waiting_on_a_lock(url))
        reporter.join(timeout=30)
        blocker.rollback()
    [error] = outcome
    assert isinstance(error, StoreUnavailable) and not isinstance(error, AmbiguousCommit)
    for job in (first, second):
        assert store.get(job.id).state is JobState.RUNNING
        assert [a.outcome for a in store.attempts(job.id)] == [Outcome.RUNNING]
    results = store.report([f.succeed(first), f.succeed(second)])
    assert [r.status for r in results] == [ReportStatus.APPLIED] * 2


def test_an_enqueue_killed_mid_insert_stores_none_of_its_jobs(
    store: PostgresJobStore, url: str
) -> None:
    loose = f.new_job(store)
    keyed = f.new_job(store, idempotency_key="held")
    outcome: list[BaseException | object] = []
    with psycopg.connect(url) as blocker:
        # An uncommitted job with the same key: the store's insert waits on the unique index
        # after inserting `loose`.
        other = PostgresJobStore.from_url(url)
        other.enqueue_in(blocker, [f.new_job(store, idempotency_key="held")])

        def enqueue() -> None:
            try:
                outcome.append(store.enqueue([loose, keyed]))
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=enqueue)
        worker.start()
        _terminate(url, _backend_waiting_on_a_lock(url))
        worker.join(timeout=30)
        blocker.rollback()
        other.close()
    [error] = outcome
    assert isinstance(error, StoreUnavailable)
    for job_id in (loose.id, keyed.id):
        with pytest.raises(JobNotFound):
            store.get(job_id)
    assert store.list_jobs(JobQuery()).jobs == []


def test_an_enqueue_that_loses_an_idempotency_race_returns_the_winners_job(
    store: PostgresJobStore, url: str
) -> None:
    outcome: list[BaseException | object] = []
    with psycopg.connect(url) as winner:
        other = PostgresJobStore.from_url(url)
        [won] = other.enqueue_in(winner, [f.new_job(store, idempotency_key="race", args={})])

        def enqueue() -> None:
            try:
                outcome.append(store.enqueue([f.new_job(store, idempotency_key="race", args={})]))
            except BaseException as exc:
                outcome.append(exc)

        loser = threading.Thread(target=enqueue)
        loser.start()
        _backend_waiting_on_a_lock(url)  # the loser's insert waits on the unique index
        winner.commit()
        loser.join(timeout=30)
        other.close()
    [[result]] = outcome
    assert isinstance(result, Enqueued)
    assert not result.created and result.job.id == won.job.id


def test_a_lost_commit_answer_on_enqueue_is_resolved_by_reading_back(url: str) -> None:
    parts = urlsplit(url)
    proxy = CommitDroppingProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxied = via(url, "127.0.0.1", proxy.port, sslmode="disable", gssencmode="disable")
    try:
        with PostgresJobStore.from_url(proxied) as store:
            job = f.new_job(store)
            proxy.arm(b"SELECT ")  # a small plain batch is one autocommitted statement
            [enqueued] = store.enqueue([job])
            assert proxy.dropped.is_set(), "the commit's answer was really lost"
            assert enqueued.created and enqueued.job.id == job.id
            assert store.get(job.id).state is JobState.QUEUED

            running = f.claim_one(store)
            proxy.arm(b"SELECT ")  # a success is committed by one autocommitted statement
            with pytest.raises(AmbiguousCommit):
                store.report([f.succeed(running)])
            assert proxy.dropped.is_set()
            [again] = store.report([f.succeed(running)])
            assert again.status is ReportStatus.ALREADY_APPLIED
            assert store.get(job.id).state is JobState.SUCCEEDED
    finally:
        proxy.close()


@pytest.mark.parametrize("shape", ["copied", "keyed"])
def test_a_lost_commit_answer_on_a_batch_is_resolved_by_reading_back(url: str, shape: str) -> None:
    """A large plain batch (written with COPY) and one with idempotency keys run in a
    transaction; a lost COMMIT answer is resolved by reading every job back."""
    parts = urlsplit(url)
    proxy = CommitDroppingProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxied = via(url, "127.0.0.1", proxy.port, sslmode="disable", gssencmode="disable")
    jobs = new_jobs(COPY_MIN_JOBS if shape == "copied" else 3, seed=7)
    if shape == "keyed":
        jobs = [
            attrs.evolve(job, idempotency_key=f"key-{n}", fingerprint=f"fp-{n}")
            for n, job in enumerate(jobs)
        ]
    try:
        with PostgresJobStore.from_url(proxied) as store:
            store.now()
            proxy.arm()
            enqueued = store.enqueue(jobs)
            assert proxy.dropped.is_set(), "the commit's answer was really lost"
            assert [e.job.id for e in enqueued] == [job.id for job in jobs]
            assert all(e.created for e in enqueued)
            assert [store.get(job.id) for job in jobs] == [e.job for e in enqueued]
    finally:
        proxy.close()


def test_an_unreachable_server_is_unavailable_not_a_crash() -> None:
    settings = PoolSettings(timeout_s=0.5, connect_timeout_s=1)
    with (
        PostgresJobStore("postgresql://postgres@127.0.0.1:1/nothing", settings=settings) as store,
        pytest.raises(StoreUnavailable),
    ):
        store.now()


def test_an_unmigrated_database_is_unavailable_with_a_hint(postgres_admin_url: str) -> None:
    with services.fresh_database(postgres_admin_url, prefix="taskyard_bare") as bare:
        with PostgresJobStore.from_url(bare) as store, pytest.raises(StoreUnavailable) as err:
            store.list_jobs(JobQuery())
        assert "taskyard migrate" in str(err.value)


# --- transactional enqueue ----------------------------------------------------------------


@pytest.fixture
def app(url: str) -> Iterator[taskyard.App]:
    app = taskyard.App(url)
    yield app
    store = app.store
    assert isinstance(store, PostgresJobStore)
    store.close()


def test_a_rolled_back_transactional_enqueue_leaves_no_job(app: taskyard.App, url: str) -> None:
    with psycopg.connect(url) as conn:
        job = app.enqueue("work", args={"n": 1}, connection=conn)
        with pytest.raises(JobNotFound):
            app.get(job.id)  # not visible before the caller commits
        conn.rollback()
    with pytest.raises(JobNotFound):
        app.get(job.id)


def test_a_committed_transactional_enqueue_commits_with_the_callers_work(
    app: taskyard.App, url: str
) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TEMP TABLE orders (n int)")
        conn.execute("INSERT INTO orders VALUES (1)")
        job = app.enqueue("work", args={"n": 2}, connection=conn)
        conn.commit()
    assert app.get(job.id).state is JobState.QUEUED


def test_a_transactional_enqueue_in_an_autocommit_block_rolls_back_with_it(
    app: taskyard.App, url: str
) -> None:
    class Abort(Exception):
        pass

    made = []
    with psycopg.connect(url, autocommit=True) as conn:

        def enqueue_then_abort() -> None:
            with conn.transaction():
                made.append(app.enqueue("work", args={"n": 3}, connection=conn))
                raise Abort

        with pytest.raises(Abort):
            enqueue_then_abort()
        kept = app.enqueue("work", args={"n": 4}, connection=conn)
    with pytest.raises(JobNotFound):
        app.get(made[0].id)
    assert app.get(kept.id).state is JobState.QUEUED


def f_claim(store: PostgresJobStore, count: int) -> list[taskyard.Job]:
    jobs = store.claim(ClaimRequest(worker="w1", limit=count, lease_ttl_s=300))
    assert len(jobs) == count
    return jobs


def test_url_settings_are_taskyards_own_and_the_rest_goes_to_libpq() -> None:
    conninfo, settings = split_url(
        "postgres://u:p@db.example:6432/jobs?sslmode=disable&pool_max_size=3"
        "&pool_timeout=2.5&prepare_threshold=none"
    )
    assert conninfo == "postgresql://u:p@db.example:6432/jobs?sslmode=disable"
    assert settings == PoolSettings(max_size=3, timeout_s=2.5, prepare_threshold=None)
    for bad in ("pool_max_size=x", "pool_max_size=0", "pool_min_size=4&pool_max_size=2"):
        with pytest.raises(ConfigError, match="TASKYARD_DATABASE_URL: bad connection setting"):
            bootstrap(Settings(database_url=f"postgresql://db.example/jobs?{bad}"))


# --- retention ----------------------------------------------------------------------------


def test_an_enqueue_naming_a_dependency_pruned_under_it_is_refused_as_unknown(
    url: str, store: PostgresJobStore
) -> None:
    """The enqueue reads its dependency as stored; a prune holding that row (as its
    `FOR UPDATE SKIP LOCKED` does) deletes it before the enqueue's insert can take its key
    lock: the enqueue is refused as it would be had the dependency never existed."""
    dependency = f.enqueue(store)
    store.report([f.succeed(f.claim_one(store))])
    with psycopg.connect(url) as pruner, psycopg.connect(url, autocommit=True) as watcher:
        pruner.execute(
            "SELECT 1 FROM taskyard.jobs WHERE id = %s FOR UPDATE SKIP LOCKED", (dependency.id,)
        )
        with ThreadPoolExecutor(1) as pool:
            later = pool.submit(store.enqueue, [f.new_job(store, depends_on=[dependency.id])])
            wait_for(
                "the enqueue to wait on the row's lock",
                lambda: watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                ).fetchone(),
            )
            pruner.execute("DELETE FROM taskyard.attempts WHERE job_id = %s", (dependency.id,))
            pruner.execute("DELETE FROM taskyard.jobs WHERE id = %s", (dependency.id,))
            pruner.commit()
            with pytest.raises(UnknownDependency) as refused:
                later.result(timeout=10)
    assert refused.value.job_id == dependency.id
    assert store.list_jobs(JobQuery(limit=10)).jobs == []
