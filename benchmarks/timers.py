"""Timers keep their word: how late a delayed job and a retry start after their `run_at`,
beside the pickup of an immediate job (issue 19 item 1).

One worker runtime and one scheduler runtime (the production ones, at their defaults) and
a client, in this process, over PostgreSQL and Redis on loopback. Three phases of `--jobs`
jobs each, one enqueued every `--gap-ms`:

* `immediate`: due at once; latency = handler start - the start of its enqueue call;
* `delayed`: `delay_seconds` of `--delay-s` (shorter than the scheduler's pass interval, so
  only a due time that wakes the scheduler keeps it); latency = handler start - `run_at`;
* `retry`: the first attempt fails, the job's backoff is `--delay-s` with no jitter;
  latency = the second attempt's start - its `run_at` (the retry's due time).

`run_at` is the store's time (PostgreSQL's `now()` plus the delay); the handler reads the
wall clock of the same machine. Milliseconds; medians of the phase.

    python benchmarks/timers.py                  # a throwaway database on 127.0.0.1:5432
    python benchmarks/timers.py --store postgresql://postgres@127.0.0.1/bench --jobs 1000

Without `--store`, a database `taskyard_timers_<hex>` is created, migrated and dropped at
the end. Redis keys go under a fresh `bench-<hex>:` prefix and are deleted at the end (the
server is never flushed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import platform
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from taskyard.domain.context import JobContext, Registry, TaskSpec
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.submission import Submission
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings

PHASE_TIMEOUT_S = 120.0
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    import psycopg

    from taskyard.adapters.postgres.schema import migrate

    name = f"taskyard_timers_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def forget_prefix(redis_url: str, prefix: str) -> None:
    """Delete the keys a run wrote under its own `prefix`, one scan at a time (the shared
    server is never flushed)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def percentile(ordered: list[float], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class Probe:
    """The handlers' side: when each job (or its second attempt) started, and what it was
    measured from."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.lateness_ms: dict[str, float] = {}
        self.done = threading.Event()
        self._lock = threading.Lock()

    def record(self, key: str, late_ms: float) -> None:
        with self._lock:
            self.lateness_ms[key] = late_ms
            if len(self.lateness_ms) >= self.expected:
                self.done.set()


def _since(moment: datetime) -> float:
    return (time.time() - moment.timestamp()) * 1000


def run_phase(
    phase: str, *, settings: Settings, jobs: int, gap_s: float, delay_s: float
) -> dict[str, Any]:
    worker_side = bootstrap(settings)
    scheduler_side = bootstrap(settings, store=worker_side.store)
    client_side = bootstrap(settings, store=worker_side.store)
    probe = Probe(jobs)
    submitted: dict[str, float] = {}

    def immediate(ctx: JobContext, i: int) -> None:
        started = time.perf_counter()
        probe.record(ctx.job_id, (started - submitted[ctx.job_id]) * 1000)

    def delayed(ctx: JobContext, i: int) -> None:
        probe.record(ctx.job_id, _since(ctx.job.run_at))

    def flaky(ctx: JobContext, i: int) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("the first attempt fails")
        probe.record(ctx.job_id, _since(ctx.job.run_at))

    backoff = RetryPolicy(base_s=delay_s, factor=1.0, max_s=delay_s, jitter=Jitter.NONE)
    registry = Registry()
    registry.add(TaskSpec(name="immediate", handler=immediate))
    registry.add(TaskSpec(name="delayed", handler=delayed))
    registry.add(TaskSpec(name="flaky", handler=flaky, backoff=backoff))
    worker = worker_side.worker_runtime(registry, worker_id=f"timers-{phase}").start()
    scheduler = scheduler_side.scheduler_runtime(scheduler_id=f"timers-{phase}").start()
    client = client_side.client
    deadline = time.monotonic() + 10
    while (worker.doorbell_ok is None or not scheduler.leading) and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.perf_counter()
    for i in range(jobs):
        pause = began + i * gap_s - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        if phase == "immediate":
            submission = Submission(task="immediate", args={"i": i})
        elif phase == "delayed":
            submission = Submission(task="delayed", args={"i": i}, delay_s=delay_s)
        else:
            submission = Submission(task="flaky", args={"i": i}, backoff=backoff)
        at = time.perf_counter()
        [made] = client.prepare([submission])
        submitted[str(made.id)] = at
        client.enqueue([made])
    finished = probe.done.wait(PHASE_TIMEOUT_S)
    worker.stop(grace_s=5)
    scheduler.stop()
    for side in (client_side, scheduler_side, worker_side):
        side.close()
    if not finished:
        sys.exit(f"{phase}: only {len(probe.lateness_ms)} of {jobs} started within the bound")
    late = sorted(probe.lateness_ms.values())
    return {
        "phase": phase,
        "p50": percentile(late, 0.50),
        "p95": percentile(late, 0.95),
        "p99": percentile(late, 0.99),
        "max": late[-1],
        "early": sum(1 for ms in late if ms < 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a PostgreSQL URL (default: a throwaway database)")
    parser.add_argument("--admin", default=ADMIN_URL, help="where to create that database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=1000, help="per phase")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="between two enqueues")
    parser.add_argument("--delay-s", type=float, default=0.2, help="the delay and the backoff")
    parser.add_argument("--phases", default="immediate,delayed,retry")
    args = parser.parse_args(argv)
    assert 1 <= args.jobs <= 100_000 and args.gap_ms >= 0 and 0 < args.delay_s <= 60
    logging.basicConfig(level=logging.ERROR)
    prefix = f"bench-{secrets.token_hex(4)}:"
    print(
        f"timers: jobs={args.jobs} per phase, gap={args.gap_ms:g} ms, delay={args.delay_s:g} s,"
        f" python={platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    rows = []
    with contextlib.ExitStack() as stack:
        store = args.store or stack.enter_context(throwaway_database(args.admin))
        settings = Settings(database_url=store, redis_url=args.redis, redis_key_prefix=prefix)
        for phase in args.phases.split(","):
            rows.append(
                run_phase(
                    phase,
                    settings=settings,
                    jobs=args.jobs,
                    gap_s=args.gap_ms / 1000,
                    delay_s=args.delay_s,
                )
            )
        forget_prefix(args.redis, prefix)
    print(
        f"{'phase':<10} {'measured from':<22} {'p50_ms':>8} {'p95_ms':>8} {'p99_ms':>8} "
        f"{'max_ms':>8} {'early':>6}"
    )
    origin = {"immediate": "the enqueue call", "delayed": "run_at", "retry": "the retry's run_at"}
    for row in rows:
        print(
            f"{row['phase']:<10} {origin[row['phase']]:<22} {row['p50']:>8.2f} {row['p95']:>8.2f} "
            f"{row['p99']:>8.2f} {row['max']:>8.2f} {row['early']:>6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
