"""`App.wait` returns a job once it has finished: woken by the finished bell a worker
rings through Redis, and by looking at the store now and then without one."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import taskyard
from taskyard.entrypoints import config, library
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.runtime import WorkerRuntime
from tests.eventually import eventually

DEADLINE_S = 20.0
NO_POLLING_S = 600.0
"""A wait's interval between looks at the store when only the bell may wake it in time."""


class Waiter:
    """`app.wait(job)` on a thread of its own, counting its looks at the store."""

    def __init__(self, app: taskyard.App, job: taskyard.Job, monkeypatch: pytest.MonkeyPatch):
        self.looks = 0
        self.outcome: list[Any] = []
        real_get = app.store.get

        def counted_get(job_id: Any) -> taskyard.Job:
            self.looks += 1
            return real_get(job_id)

        monkeypatch.setattr(app.store, "get", counted_get)

        def wait() -> None:
            try:
                self.outcome.append(app.wait(job, timeout=DEADLINE_S))
            except Exception as exc:
                self.outcome.append(exc)

        self.thread = threading.Thread(target=wait, daemon=True)
        self.thread.start()

    def result(self) -> Any:
        self.thread.join(DEADLINE_S + 10)
        assert self.outcome, "the wait came back"
        return self.outcome[0]


def _worker(app: taskyard.App, url: str, redis_url: str | None, prefix: str) -> WorkerRuntime:
    side = bootstrap(
        config.Settings(database_url=url, redis_url=redis_url, redis_key_prefix=prefix)
    )
    runtime = side.worker_runtime(
        side.task_registry(app.tasks), worker_id=f"waited-{secrets.token_hex(3)}"
    )
    runtime.start()
    return runtime


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _app(url: str, release: threading.Event, **settings: Any) -> taskyard.App:
    app = taskyard.App(url, **settings)

    @app.task(name="waited.hold", queue=f"q-{secrets.token_hex(3)}")
    def hold() -> str:
        assert release.wait(DEADLINE_S), "released"
        return "held and let go"

    return app


def test_a_wait_is_woken_by_the_finished_bell_of_a_worker_elsewhere(
    migrated_postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    release: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(library, "WAIT_POLL_S_MIN", NO_POLLING_S)
    monkeypatch.setattr(library, "WAIT_POLL_S_MAX", NO_POLLING_S)
    app = _app(
        migrated_postgres_url, release, coordinator_url=redis_url, redis_key_prefix=redis_prefix
    )
    runtime = _worker(app, migrated_postgres_url, redis_url, redis_prefix)
    try:
        job = app.enqueue("waited.hold")
        waiter = Waiter(app, job, monkeypatch)
        eventually(lambda: waiter.looks >= 1, timeout_s=DEADLINE_S, what="the first look")
        release.set()  # the job finishes after the waiter looked: only the bell tells it
        done = waiter.result()
        assert isinstance(done, taskyard.Job), done
        assert done.state == "succeeded" and done.result == "held and let go"
        assert waiter.looks == 2, "one look before the job finished, one after the bell"
    finally:
        runtime.stop(grace_s=5.0)
        app.close()


@pytest.mark.parametrize(
    "coordinator_url",
    [None, "redis://127.0.0.1:1/0"],
    ids=["no-redis", "redis-unreachable"],
)
def test_without_a_bell_to_hear_a_wait_finds_the_job_by_looking_at_the_store(
    migrated_postgres_url: str,
    redis_prefix: str,
    release: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
    coordinator_url: str | None,
    tmp_path: Path,
) -> None:
    for setting in config.SETTINGS.values():
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # no taskyard.toml: without a Redis URL, no Redis
    app = _app(migrated_postgres_url, release, coordinator_url=coordinator_url)
    runtime = _worker(app, migrated_postgres_url, None, redis_prefix)
    try:
        job = app.enqueue("waited.hold")
        waiter = Waiter(app, job, monkeypatch)
        eventually(lambda: waiter.looks >= 2, timeout_s=DEADLINE_S, what="looks again")
        release.set()
        done = waiter.result()
        assert isinstance(done, taskyard.Job), done
        assert done.state == "succeeded"
    finally:
        runtime.stop(grace_s=5.0)
        app.close()


def test_a_wait_that_runs_out_of_time_raises_with_the_job_as_last_seen() -> None:
    app = taskyard.App("memory://", coordinator_url="memory://")
    job = app.enqueue("sleep")
    with pytest.raises(taskyard.WaitTimeout) as late:
        app.wait(job, timeout=0.05)
    assert isinstance(late.value, TimeoutError)
    assert late.value.job.id == job.id and late.value.job.state == "queued"
    cancelled = app.cancel(job)
    assert app.wait(job.id, timeout=0) == cancelled, "a finished job comes back at once"
