"""The counts migration (PostgreSQL `counts`, SQLite `counts`) backfills the rows already
there, and both stores' run-time ladder is the domain's `RUN_S_BUCKETS`; PostgreSQL's
bucket of a run time (`run_s_bound`, written out from the ladder by version 11) follows
the ladder's rule, and its run-time totals equal a recount of the rows."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from taskyard.adapters.clock import SystemClock
from taskyard.adapters.postgres import PostgresJobStore, migrate
from taskyard.adapters.sqlite import SqliteJobStore
from taskyard.adapters.sqlshared import Migration, load_migrations
from taskyard.domain.model import REPORTED_OUTCOMES, RUN_S_BUCKETS, JobState, Outcome
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


def test_postgres_run_time_totals_equal_a_recount_across_the_ladder(fresh_url: str) -> None:
    """The attempt counters' run-time histogram, through each way attempts are written (a
    claim's insert of open records, a report's update closing them, the engine's insert of
    closed records and its upsert closing open ones), equals a recount of the rows: run
    times at every bound, just past it, and past the whole ladder."""
    migrate(fresh_url)
    runs_s = [0.0, *RUN_S_BUCKETS, *(b + 1e-6 for b in RUN_S_BUCKETS), 7200.0]
    with psycopg.connect(fresh_url) as conn:
        # One statement of open records (a claim), then one closing half of them (a report).
        conn.execute(
            """INSERT INTO taskyard.attempts (job_id, attempt, worker, started_at,
                   lease_expires_at, outcome)
               SELECT gen_random_uuid(), 1, 'w', now() - interval '1 day', now(), 'running'
               FROM unnest(%s::double precision[]) AS r(s)""",
            (runs_s,),
        )
        conn.execute(
            """UPDATE taskyard.attempts AS a
               SET outcome = CASE WHEN r.i %% 3 = 0 THEN 'failed' ELSE 'succeeded' END,
                   finished_at = a.started_at + r.s * interval '1 second'
               FROM (SELECT job_id, row_number() OVER (ORDER BY job_id) AS i
                     FROM taskyard.attempts) AS o,
                    unnest(%s::double precision[]) WITH ORDINALITY AS r(s, i)
               WHERE a.job_id = o.job_id AND o.i = r.i AND r.i %% 2 = 0""",
            (runs_s,),
        )
        # Closed records inserted whole, then an upsert that closes the open ones left.
        conn.execute(
            """INSERT INTO taskyard.attempts (job_id, attempt, worker, started_at,
                   lease_expires_at, finished_at, outcome)
               SELECT gen_random_uuid(), 2, 'w', t0, t0, t0 + r.s * interval '1 second',
                      'timeout'
               FROM unnest(%s::double precision[]) AS r(s),
                    (SELECT now() - interval '1 day' AS t0) AS t""",
            (runs_s,),
        )
        conn.execute(
            """INSERT INTO taskyard.attempts AS t (job_id, attempt, worker, started_at,
                   lease_expires_at, finished_at, outcome)
               SELECT a.job_id, a.attempt, a.worker, a.started_at, a.lease_expires_at,
                      a.started_at + (0.25 * row_number() OVER (ORDER BY a.job_id))
                          * interval '1 second',
                      'cancelled'
               FROM taskyard.attempts AS a WHERE a.outcome = 'running' AND a.attempt = 1
                 AND a.job_id < (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY job_id)
                                 FROM taskyard.attempts WHERE outcome = 'running')
               ON CONFLICT (job_id, attempt) DO UPDATE
               SET outcome = excluded.outcome, finished_at = excluded.finished_at
               WHERE t.outcome = 'running'"""
        )
        conn.commit()
        rows = conn.execute(
            """SELECT outcome, extract(epoch FROM finished_at - started_at)::float8
               FROM taskyard.attempts"""
        ).fetchall()
    reported = [s for outcome, s in rows if Outcome(outcome) in REPORTED_OUTCOMES]
    assert all(s is not None for s in reported)
    assert {o for o, _ in rows} >= {"running", "succeeded", "failed", "timeout", "cancelled"}
    with PostgresJobStore.from_url(fresh_url) as store:
        totals = store.attempt_totals(run_s_buckets=RUN_S_BUCKETS)
    by_outcome = Counter(Outcome(outcome) for outcome, _ in rows)
    assert {o: n for o, n in totals.by_outcome.items() if n} == dict(by_outcome)
    assert totals.run_s_count == len(reported)
    assert totals.run_s_sum_s == pytest.approx(sum(reported))
    assert totals.run_s_counts == tuple(
        sum(1 for s in reported if s <= bound) for bound in RUN_S_BUCKETS
    )
