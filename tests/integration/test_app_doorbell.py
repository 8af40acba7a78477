"""An enqueue from a Python `App` configured only by the environment and `taskyard.toml`
wakes a real worker through Redis, under a custom key prefix, as one from the API does."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest
import redis

import taskyard
from taskyard.entrypoints import config
from taskyard.entrypoints.bootstrap import bootstrap
from tests.eventually import eventually

POLL_INTERVAL_S = 60.0
"""The worker looks at the store this seldom: only a ring can wake it within the deadline."""
PICKUP_DEADLINE_S = 20.0


def test_an_enqueue_from_an_app_set_up_by_the_environment_wakes_a_worker_on_its_prefix(
    migrated_postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"{redis_prefix}custom:"
    queue = f"pickup-{secrets.token_hex(3)}"
    for setting in config.SETTINGS.values():
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASKYARD_DATABASE_URL", migrated_postgres_url)
    monkeypatch.setenv("TASKYARD_REDIS_URL", redis_url)
    (tmp_path / "taskyard.toml").write_text(f'redis_key_prefix = "{prefix}"\n')

    app = taskyard.App()  # no argument: everything from the environment and the file
    started: list[str] = []
    ran = threading.Event()

    @app.task(name="pickup.probe", queue=queue)
    def probe(ctx: taskyard.JobContext) -> None:
        started.append(ctx.job_id)
        ran.set()

    worker_side = bootstrap(
        config.Settings(
            database_url=migrated_postgres_url,
            redis_url=redis_url,
            redis_key_prefix=prefix,
            queues=frozenset({queue}),
            poll_interval_s=POLL_INTERVAL_S,
        )
    )
    runtime = worker_side.worker_runtime(
        worker_side.task_registry(app.tasks), worker_id=f"pickup-{queue}"
    )
    peek = redis.Redis.from_url(redis_url)
    runtime.start()
    try:
        eventually(
            lambda: peek.exists(f"{prefix}worker:{runtime.config.worker_id}") == 1,
            timeout_s=PICKUP_DEADLINE_S,
            what="the worker registered under the custom prefix",
        )
        # A first job, so that the worker has surely made the claim it makes at start: its
        # next look at the store is a minute away.
        first = probe.enqueue()
        assert ran.wait(PICKUP_DEADLINE_S), "the first job started"
        eventually(
            lambda: app.get(first).state.is_terminal,
            timeout_s=PICKUP_DEADLINE_S,
            what="the first job ended",
        )
        ran.clear()
        rings_before = runtime.rings_received

        second = probe.enqueue()
        assert ran.wait(PICKUP_DEADLINE_S), (
            f"the second job did not start within {PICKUP_DEADLINE_S:g} s, so no ring reached "
            f"the worker (it polls every {POLL_INTERVAL_S:g} s)"
        )
        assert started == [str(first.id), str(second.id)]
        assert runtime.rings_received > rings_before
        assert app.settings.source("redis_key_prefix").endswith("taskyard.toml")
    finally:
        runtime.stop(grace_s=5.0)
        worker_side.close()
        app.close()
        peek.close()
