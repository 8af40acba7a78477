"""`App.close()`: the store and coordinator the app built are closed (a PostgreSQL pool's
connections end, Redis connections drop); the app builds them afresh if used again."""

from __future__ import annotations

from pathlib import Path

import psycopg

from taskyard.adapters.postgres import PostgresJobStore
from taskyard.adapters.redis_coordinator import RedisCoordinator
from taskyard.adapters.sqlite import SqliteJobStore
from taskyard.entrypoints.library import App
from tests.eventually import eventually


def _connections(url: str, application_name: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_closing_an_app_closes_its_postgresql_pool(migrated_postgres_url: str) -> None:
    name = "taskyard-app-close-test"
    separator = "&" if "?" in migrated_postgres_url else "?"
    url = f"{migrated_postgres_url}{separator}application_name={name}&pool_min_size=2"
    app = App(url)
    job = app.enqueue("sleep", args={"seconds": 0})
    store = app.store
    assert isinstance(store, PostgresJobStore)
    assert _connections(migrated_postgres_url, name) >= 1
    app.close()
    # A backend leaves pg_stat_activity a moment after its client hung up.
    eventually(
        lambda: _connections(migrated_postgres_url, name) == 0,
        timeout_s=5,
        what="the pool's connections ended",
    )
    assert app.get(job).id == job.id  # used again: a new pool
    assert app.store is not store
    app.close()
    eventually(
        lambda: _connections(migrated_postgres_url, name) == 0,
        timeout_s=5,
        what="the new pool's connections ended",
    )


def test_closing_an_app_closes_its_sqlite_store_and_redis_coordinator(
    tmp_path: Path, redis_url: str
) -> None:
    with App(f"sqlite:///{tmp_path / 'app.db'}", coordinator_url=redis_url) as app:
        assert app.list_jobs().jobs == []
        # Built, not used: this test writes nothing under the shared Redis's default prefix.
        store, coordinator = app.store, app.coordinator
        assert isinstance(store, SqliteJobStore) and isinstance(coordinator, RedisCoordinator)
    assert store._closed and coordinator._closed
