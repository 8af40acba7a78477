"""The counts migration (PostgreSQL `counts`, SQLite `counts`) backfills the rows already
there, and both stores' run-time ladder is the domain's `RUN_S_BUCKETS`."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from taskyard.adapters.clock import SystemClock
from taskyard.adapters.postgres import PostgresJobStore, migrate
from taskyard.adapters.sqlite import SqliteJobStore
from taskyard.adapters.sqlshared import Migration, load_migrations
from taskyard.domain.model import RUN_S_BUCKETS, JobState
from taskyard.domain.ports import ClaimRequest, JobStore
from tests import factories as f
from tests import services


def _counts_migration(dialect: str) -> Migration:
    [found] = [m for m in load_migrations(dialect) if m.name == "counts"]
    return found


def _created(migration: Migration) -> list[tuple[str, str]]:
    """(kind, name) of what the migration creates, in reverse order (to drop it)."""
    found = re.findall(r"CREATE (TABLE|TRIGGER|INDEX|FUNCTION) ((?:taskyard\.)?\w+)", migration.sql)
    return [(kind, name) for kind, name in reversed(found)]


def _history(store: JobStore) -> dict[tuple[str, JobState], int]:
    """Jobs in several queues and states, with finished attempts; the store's counts."""
    for queue in ("a", "b"):
        f.enqueue_many(store, 4, queue=queue, task=f"t-{queue}")
    running = store.claim(ClaimRequest(worker="w1", limit=5, lease_ttl_s=30.0))
    store.report([f.succeed(job) for job in running[:3]])
    store.report([f.fail(job, retryable=False) for job in running[3:]])
    return {
        (info.name, state): count
        for info in store.queues()
        for state, count in info.counts.items()
        if count
    }


@pytest.fixture
def fresh_url(postgres_admin_url: str) -> Iterator[str]:
    with services.fresh_database(postgres_admin_url, prefix="taskyard_counts") as url:
        yield url


def test_postgres_counts_are_backfilled_from_the_rows_already_there(fresh_url: str) -> None:
    migrate(fresh_url)
    with PostgresJobStore.from_url(fresh_url) as store:
        before = _history(store)
        totals = store.attempt_totals(run_s_buckets=RUN_S_BUCKETS)
    counts = _counts_migration("postgres")
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        for kind, name in _created(counts):
            if kind == "TRIGGER":
                table = "taskyard.attempts" if name.startswith("attempts") else "taskyard.jobs"
                conn.execute(f"DROP TRIGGER {name} ON {table}")
            elif kind == "FUNCTION":
                conn.execute(f"DROP FUNCTION {name} CASCADE")
            else:
                conn.execute(f"DROP {kind} taskyard.{name.removeprefix('taskyard.')}")
        conn.execute("DELETE FROM taskyard.schema_migrations WHERE version = %s", (counts.version,))
        ladder_missing = conn.execute("SELECT to_regclass('taskyard.run_s_ladder')").fetchone()
        assert ladder_missing == (None,)
    migrate(fresh_url)
    with PostgresJobStore.from_url(fresh_url) as store:
        after = {
            (info.name, state): count
            for info in store.queues()
            for state, count in info.counts.items()
            if count
        }
        assert after == before
        assert store.attempt_totals(run_s_buckets=RUN_S_BUCKETS) == totals
    with psycopg.connect(fresh_url) as conn:
        ladder = [b for (b,) in conn.execute("SELECT bound FROM taskyard.run_s_ladder ORDER BY 1")]
    assert tuple(ladder) == RUN_S_BUCKETS


def test_sqlite_counts_are_backfilled_from_the_rows_already_there(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with SqliteJobStore(path, clock=SystemClock()) as store:
        before = _history(store)
        totals = store.attempt_totals(run_s_buckets=RUN_S_BUCKETS)
    counts = _counts_migration("sqlite")
    with sqlite3.connect(path) as conn:
        for kind, name in _created(counts):
            conn.execute(f"DROP {kind} {name}")
        # The file's later versions stay: the counts migration alone is applied again.
        conn.executescript(counts.sql)
    with SqliteJobStore(path, clock=SystemClock()) as store:
        after = {
            (info.name, state): count
            for info in store.queues()
            for state, count in info.counts.items()
            if count
        }
        assert after == before
        assert store.attempt_totals(run_s_buckets=RUN_S_BUCKETS) == totals
    with sqlite3.connect(path) as conn:
        ladder = [b for (b,) in conn.execute("SELECT bound FROM run_s_ladder ORDER BY 1")]
    assert tuple(ladder) == RUN_S_BUCKETS


def test_postgres_run_s_bound_is_the_smallest_ladder_bound_at_or_above(fresh_url: str) -> None:
    """`run_s_bound` is written out as a CASE from `run_s_ladder` (migration 0011): it gives
    what the table's rule gives, at every bound, between them, beyond them and for none."""
    migrate(fresh_url)
    nudged = [b * k for b in RUN_S_BUCKETS for k in (0.999999, 1.0, 1.000001)]
    probes = [None, float("-inf"), -1.0, 0.0, 1e-9, *nudged, 1e9, float("inf"), float("nan")]
    with psycopg.connect(fresh_url) as conn:
        rows = conn.execute(
            """SELECT x, taskyard.run_s_bound(x),
                   CASE WHEN x IS NULL THEN -1 ELSE coalesce(
                       (SELECT min(bound) FROM taskyard.run_s_ladder WHERE bound >= x),
                       'Infinity') END
               FROM unnest(%s::double precision[]) AS p(x)""",
            (probes,),
        ).fetchall()
    assert len(rows) == len(probes)
    assert [(x, got) for x, got, _ in rows] == [(x, want) for x, _, want in rows]
