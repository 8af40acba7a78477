"""The SQLite store on a real file: many threads, a second process, locking, its schema."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import taskyard
from taskyard.adapters.clock import SystemClock
from taskyard.adapters.sqlite import SqliteJobStore
from taskyard.adapters.sqlshared import load_migrations
from taskyard.domain.errors import JobNotFound, StoreUnavailable
from taskyard.domain.model import JobState, Outcome
from taskyard.domain.ports import ClaimRequest, JobQuery
from taskyard.domain.transitions import Report, ReportKind
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import ConfigError, Settings
from tests.integration.helpers import new_jobs

ROOT = Path(__file__).resolve().parents[2]
THREADS = 8


def _drain(store: SqliteJobStore, worker: str, start: threading.Barrier | None = None) -> list[str]:
    """Claim and succeed until nothing is left; the ids claimed. With `start`, every
    drainer claims its first batch before any drainer goes on, so they really overlap."""
    mine: list[str] = []
    if start is not None:
        jobs = store.claim(ClaimRequest(worker=worker, limit=5, lease_ttl_s=300))
        start.wait(timeout=60)
        store.report([Report(ref=j.ref(), kind=ReportKind.SUCCEEDED) for j in jobs])
        mine.extend(str(j.id) for j in jobs)
    while True:
        jobs = store.claim(ClaimRequest(worker=worker, limit=5, lease_ttl_s=300))
        if not jobs:
            return mine
        results = store.report([Report(ref=j.ref(), kind=ReportKind.SUCCEEDED) for j in jobs])
        assert all(r.state is JobState.SUCCEEDED for r in results)
        mine.extend(str(j.id) for j in jobs)


def _all_succeeded_once(store: SqliteJobStore, expected: set[str], seen: list[str]) -> None:
    assert len(seen) == len(expected) and set(seen) == expected
    jobs = store.list_jobs(JobQuery(limit=1000)).jobs
    assert {j.state for j in jobs} == {JobState.SUCCEEDED}
    for job in jobs[:50]:
        assert [a.outcome for a in store.attempts(job.id)] == [Outcome.SUCCEEDED]


def test_many_threads_share_one_store_without_a_double_claim(tmp_path: Path) -> None:
    with SqliteJobStore(tmp_path / "threads.db", clock=SystemClock()) as store:
        expected = {str(e.job.id) for e in store.enqueue(new_jobs(400))}
        start = threading.Barrier(THREADS)
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda i: _drain(store, f"t{i}", start), range(THREADS)))
        _all_succeeded_once(store, expected, [j for mine in results for j in mine])
        # Each thread held its first batch while all the others claimed theirs.
        assert all(len(mine) >= 5 for mine in results), "every thread claimed work at once"


def test_a_second_process_on_the_same_file_shares_the_work(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with SqliteJobStore(path, clock=SystemClock()) as store:
        expected = {str(e.job.id) for e in store.enqueue(new_jobs(600))}
        with subprocess.Popen(
            [sys.executable, "-m", "tests.integration.sqlite_claimer", str(path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as other:
            try:
                assert other.stdout is not None and other.stdin is not None
                assert other.stdout.readline().strip() == "ready"
                other.stdin.write("go\n")
                other.stdin.flush()
                first = other.stdout.readline().strip()  # the other process committed a batch
                with ThreadPoolExecutor(2) as pool:
                    here = [
                        j
                        for mine in pool.map(lambda i: _drain(store, f"h{i}"), range(2))
                        for j in mine
                    ]
                other.stdin.close()
                out = other.stdout.read()  # not communicate(): readline() above buffered some
                other.wait(timeout=120)
            finally:
                if other.poll() is None:
                    other.kill()
        assert other.returncode == 0
        lines = [first, *(line for line in out.splitlines() if line)]
        assert lines[-1] == "done"
        there = lines[:-1]
        _all_succeeded_once(store, expected, here + there)


def test_a_writer_that_cannot_get_the_lock_is_unavailable_and_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    with SqliteJobStore(path, clock=SystemClock(), busy_timeout_s=0.2) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            batch = new_jobs(3)
            with pytest.raises(StoreUnavailable):
                store.enqueue(batch)
            assert store.list_jobs(JobQuery()).jobs == []  # readers are not blocked
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert len(store.enqueue(batch)) == 3


SQLITE_LAST = load_migrations("sqlite")[-1].version


def test_the_schema_is_versioned_and_opening_again_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "versioned.db"
    with SqliteJobStore(path, clock=SystemClock()) as store:
        job = store.enqueue(new_jobs(1))[0].job
        assert store.schema_version == SQLITE_LAST
    with SqliteJobStore(path, clock=SystemClock()) as again:
        assert again.get(job.id) == job
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SQLITE_LAST,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(StoreUnavailable, match="schema version 99"):
        SqliteJobStore(path, clock=SystemClock())


def test_a_version_1_file_is_upgraded_keeping_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    [first] = [m for m in load_migrations("sqlite") if m.version == 1]
    conn = sqlite3.connect(path)
    try:
        conn.executescript(first.sql)
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    finally:
        conn.close()
    with SqliteJobStore(path, clock=SystemClock()) as store:
        assert store.schema_version == SQLITE_LAST
        job = store.enqueue(new_jobs(1))[0].job
        assert store.tasks() == []
        assert store.retention_overrides() == {}
    with SqliteJobStore(path, clock=SystemClock()) as again:
        assert again.get(job.id) == job


def test_an_app_runs_on_a_sqlite_url(tmp_path: Path) -> None:
    app = taskyard.App(f"sqlite:///{tmp_path / 'app.db'}")
    job = app.enqueue("work", args={"n": 1})
    assert app.get(job.id).state is JobState.QUEUED
    assert app.cancel(job).state is JobState.CANCELLED
    with pytest.raises(JobNotFound):
        app.get("00000000-0000-7000-8000-000000000000")
    store = app.store
    assert isinstance(store, SqliteJobStore)
    store.close()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:///x?y=1"]
)
def test_a_sqlite_url_without_a_plain_path_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="TASKYARD_DATABASE_URL"):
        bootstrap(Settings(database_url=url))
