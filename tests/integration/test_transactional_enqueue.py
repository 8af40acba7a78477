"""A transactional enqueue: a job written through the caller's psycopg connection commits or
rolls back with the caller's work, and its queue's workers are woken only once the
caller's transaction has committed (`app.transaction(conn)`, or `app.committed(conn)`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest

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
