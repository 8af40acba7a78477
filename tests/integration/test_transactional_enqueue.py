"""A transactional enqueue: a job written through the caller's psycopg connection commits or
rolls back with the caller's work, and its queue's workers are woken only once the
caller's transaction has committed (`app.transaction(conn)`, or `app.committed(conn)`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.string import TextLoader

import taskyard

QUEUE = f"tx-{secrets.token_hex(3)}"


@pytest.fixture
def app(migrated_postgres_url: str) -> Iterator[taskyard.App]:
    with taskyard.App(migrated_postgres_url, coordinator_url="memory://") as the_app:
        yield the_app


@pytest.fixture
def conn(migrated_postgres_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(migrated_postgres_url) as connection:
        connection.execute("CREATE TEMP TABLE orders (n int)")
        connection.commit()
        yield connection


def _task(app: taskyard.App) -> taskyard.Task[[int], int]:
    @app.task(name="tx.charge", queue=QUEUE)
    def charge(order: int) -> int:
        return order

    return charge


def _rung(app: taskyard.App) -> bool:
    """Whether the queue's doorbell rang since the last look (a ring is kept until then)."""
    assert app.coordinator is not None
    return app.coordinator.wait([QUEUE], timeout_s=0)


def test_options_take_the_connection_and_so_does_enqueue(
    app: taskyard.App, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    charge = _task(app)
    with app.transaction(conn):
        first = charge.options(connection=conn, priority=3).enqueue(order=1)
        second = charge.options(priority=4).enqueue(order=2, connection=conn)  # type: ignore[call-arg]
    assert (app.get(first).priority, app.get(second).priority) == (3, 4)
    assert app.get(second).args == {"order": 2}, "the connection is no argument of the job"


def test_the_workers_are_woken_once_the_transaction_commits(
    app: taskyard.App, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    charge = _task(app)
    with app.transaction(conn):
        conn.execute("INSERT INTO orders VALUES (1)")
        with app.transaction(conn):  # a savepoint: its end commits nothing yet
            job = charge.options(connection=conn).enqueue(order=1)
        with pytest.raises(taskyard.JobNotFound):
            app.get(job)
        assert not _rung(app), "no worker is woken before the commit"
    assert app.get(job).state == "queued"
    assert _rung(app)


def test_a_rolled_back_transaction_leaves_no_job_and_wakes_no_worker(
    app: taskyard.App, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    charge = _task(app)

    class Abandon(Exception):
        pass

    made: list[taskyard.Job] = []

    def enqueue_then_abandon() -> None:
        with app.transaction(conn):
            made.append(charge.options(connection=conn).enqueue(order=1))
            raise Abandon

    with pytest.raises(Abandon):
        enqueue_then_abandon()
    with pytest.raises(taskyard.JobNotFound):
        app.get(made[0])
    assert not _rung(app)
    with app.transaction(conn):
        conn.execute("INSERT INTO orders VALUES (2)")  # a later commit of nothing to ring
    assert not _rung(app), "the rolled-back job's ring is forgotten, not kept for later"


def test_after_a_commit_of_its_own_the_caller_says_so_with_committed(
    app: taskyard.App, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    charge = _task(app)
    job = charge.options(connection=conn).enqueue(order=1)
    conn.commit()
    assert not _rung(app), "the commit was the caller's own: nothing rang yet"
    app.committed(conn)
    assert app.get(job).state == "queued" and _rung(app)


def test_an_autocommit_connection_commits_and_rings_at_once(
    app: taskyard.App, migrated_postgres_url: str
) -> None:
    charge = _task(app)
    with psycopg.connect(migrated_postgres_url, autocommit=True) as auto:
        job = charge.options(connection=auto).enqueue(order=1)
        assert app.get(job).state == "queued"
        assert _rung(app)


class _NaiveTimestamps(TimestamptzLoader):
    """What a framework may load timestamps as (Django without USE_TZ): no zone."""

    def load(self, data: Any) -> datetime:
        return super().load(data).replace(tzinfo=None)


def test_a_connection_set_up_otherwise_is_written_through_as_the_stores_own(
    app: taskyard.App, migrated_postgres_url: str
) -> None:
    """A framework's connection (Django's: client-side cursors, jsonb loaded as text,
    timestamps perhaps without their zone) takes the enqueue as the pool's would, and
    keeps its own set-up for the caller's statements."""
    charge = _task(app)
    with psycopg.connect(migrated_postgres_url, cursor_factory=psycopg.ClientCursor) as theirs:
        theirs.adapters.register_loader("jsonb", TextLoader)
        theirs.adapters.register_loader("timestamptz", _NaiveTimestamps)
        with app.transaction(theirs):
            first = charge.options(connection=theirs).enqueue(order=1)
            keyed = charge.options(connection=theirs, idempotency_key="k1").enqueue(order=2)
            again = charge.options(connection=theirs, idempotency_key="k1").enqueue(order=2)
        assert again.id == keyed.id and again.args == {"order": 2}
        assert first.created_at.tzinfo is not None and again.created_at.tzinfo is not None
        assert type(theirs.cursor()) is psycopg.ClientCursor
        row = theirs.execute("SELECT '{\"a\": 1}'::jsonb, now()").fetchone()
        assert row is not None and row[0] == '{"a": 1}' and row[1].tzinfo is None
    assert app.get(first).state == "queued"
