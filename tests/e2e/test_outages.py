"""A worker and a scheduler started while PostgreSQL and Redis are both unreachable stay up,
say so once, and do their work as soon as both answer."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from taskyard.adapters.postgres import PostgresJobStore
from taskyard.domain.model import JobState
from taskyard.entrypoints.library import App
from tests import services
from tests.e2e.harness import Gate, Proc, Procs, clean_environment
from tests.eventually import eventually

WAIT_S = 30.0


def _through(url: str, port: int) -> str:
    """`url` with its host and port replaced by the gate's, and a short pool timeout so a
    refused connection is reported within a second."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    query = f"{parts.query}&pool_timeout=1" if parts.query else "pool_timeout=1"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@pytest.fixture
def gate(migrated_postgres_url: str) -> Iterator[Gate]:
    parts = urlsplit(migrated_postgres_url)
    closed = Gate(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        yield closed
    finally:
        closed.close()


def _said(proc: Proc, start: str) -> bool:
    return any(str(line.get("message", "")).startswith(start) for line in proc.log_lines())


def test_processes_wait_out_postgresql_and_redis_being_down_at_start(
    procs: Procs, migrated_postgres_url: str, gate: Gate
) -> None:
    with services.throwaway_redis(start=False) as redis:
        env = clean_environment(
            TASKYARD_DATABASE_URL=_through(migrated_postgres_url, gate.port),
            TASKYARD_REDIS_URL=redis.url,
            TASKYARD_REDIS_KEY_PREFIX=f"outage-{secrets.token_hex(3)}:",
            TASKYARD_LOG_FORMAT="json",
            TASKYARD_POLL_INTERVAL_SECONDS="0.2",
        )
        queue = f"outage-{secrets.token_hex(3)}"
        worker = procs.start("worker", ["worker", "--queues", queue], env=env)
        scheduler = procs.start("scheduler", ["scheduler"], env=env)
        for proc in (worker, scheduler):
            proc.banner()

        def both_warned() -> bool:
            return all(
                _said(proc, "store unavailable") and _said(proc, "coordinator unavailable")
                for proc in (worker, scheduler)
            )

        eventually(both_warned, timeout_s=WAIT_S, what="both processes said what is down")
        assert worker.process.poll() is None and scheduler.process.poll() is None

        # A delayed job (written straight to the database): it needs the scheduler to
        # promote it and the worker to run it, once they can reach PostgreSQL.
        with App(migrated_postgres_url) as app:
            job = app.enqueue("sleep", args={"seconds": 0}, queue=queue, delay_seconds=0.5)
            gate.open()
            redis.start()
            eventually(
                lambda: app.get(job).state is JobState.SUCCEEDED,
                timeout_s=WAIT_S,
                what="the job ran once both came back",
            )
        for proc in (worker, scheduler):
            eventually(
                lambda proc=proc: (
                    _said(proc, "store is back") and _said(proc, "coordinator is back")
                ),
                timeout_s=WAIT_S,
                what=f"{proc.name} said both are back",
            )
            warnings: list[dict[str, Any]] = [
                line for line in proc.log_lines() if "unavailable" in line["message"]
            ]
            assert len([w for w in warnings if w["message"].startswith("store")]) == 1, warnings
        assert worker.stop() == 0 and scheduler.stop() == 0
        with PostgresJobStore.from_url(migrated_postgres_url) as store:
            [attempt] = store.attempts(job.id)
            assert attempt.worker == worker.process_id()
