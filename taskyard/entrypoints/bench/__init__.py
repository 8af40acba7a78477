"""`taskyard bench`: a burn-down benchmark against a store (and optionally Redis).

`run_bench` sets up a store of the bench's own (`target`), runs the phases (`phases`) the
asked number of times, and returns every run's figures with their medians, plus what the
numbers came from (the machine, its load, the server versions). Worker and scheduler
processes are spawned fresh (`processes`), from the same runtime production uses.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

from taskyard import __version__
from taskyard.entrypoints.bench.phases import (
    PHASES,
    RUNNERS,
    BenchFailed,
    BenchOptions,
    median_of,
)
from taskyard.entrypoints.bench.target import Target, bench_target

__all__ = ["PHASES", "BenchFailed", "BenchOptions", "run_bench"]


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _server_version(target: Target) -> str:
    if target.scheme != "postgresql":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    import psycopg

    from taskyard.adapters.postgres.store import split_url

    with psycopg.connect(split_url(target.store_url)[0], autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('fsync'),"
            " current_setting('synchronous_commit')"
        ).fetchone()
    assert row is not None
    return f"PostgreSQL {row[0]} (fsync {row[1]}, synchronous_commit {row[2]})"


def _redis_version(target: Target) -> str | None:
    if not target.redis_url:
        return None
    import redis

    client: Any = redis.Redis.from_url(target.redis_url, socket_timeout=5)
    try:
        return f"Redis {client.info('server').get('redis_version', '?')}"
    finally:
        client.close()


def run_bench(
    store_url: str,
    *,
    redis_url: str | None,
    options: BenchOptions,
    phases: Sequence[str] = PHASES,
    repeat: int = 1,
    allow_remote: bool = False,
    on_run: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run `phases` `repeat` times each, in the order given, and return the report."""
    assert repeat >= 1, repeat
    assert all(p in RUNNERS for p in phases), phases
    with bench_target(store_url, redis_url, allow_remote=allow_remote) as target:
        report: dict[str, Any] = {
            "taskyard": __version__,
            "store": target.label,
            "server": _server_version(target),
            "redis": _redis_version(target),
            "redis_prefix": target.redis_prefix,
            "machine": {
                "system": f"{platform.system()} {platform.release()} {platform.machine()}",
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_before": _load(),
            },
            "options": {
                "jobs": options.jobs,
                "batch_size": options.batch_size,
                "workers": options.workers,
                "concurrency": options.concurrency,
                "worker_overrides": dict(options.worker_overrides),
                "repeat": repeat,
            },
            "phases": {},
        }
        began = time.monotonic()
        for phase in phases:
            runs: list[dict[str, Any]] = []
            for n in range(repeat):
                figures = RUNNERS[phase](target, options)
                figures["load"] = _load()
                runs.append(figures)
                if on_run is not None:
                    on_run(phase, n + 1, figures)
                if "skipped" in figures:
                    break
            report["phases"][phase] = {"median": median_of(runs), "runs": runs}
        report["seconds"] = round(time.monotonic() - began, 1)
        report["machine"]["load_after"] = _load()
    return report
