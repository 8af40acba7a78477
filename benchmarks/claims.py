"""Claim throughput of the PostgreSQL store on a large table.

    python benchmarks/claims.py                       # 1,000,000 rows, 1/4/8 claimers
    python benchmarks/claims.py --rows 100000 --queued 5000 --claimers 1,4

Creates a database of its own on the server of --admin-url (dropped at the end unless
--keep), applies the schema, and fills `taskyard.jobs` with one statement,
`INSERT ... SELECT ... FROM generate_series(1, N)`: all but --queued rows are terminal
(succeeded, with one attempt record each, spread over the last 30 days), the rest are
queued in 4 queues with priorities -1..1. It prints the claim statement's
`EXPLAIN (ANALYZE, BUFFERS)` (run in a transaction that is rolled back), for a worker of
every queue and for a worker of one queue, then measures claims per second with 1, 4 and
8 claimer processes (each its own store and pool), three rounds each, and prints the
median. Every round claims a fresh set of --queued jobs and is cut off after
--round-timeout seconds; claimed jobs are then marked succeeded so the next round starts
from the same shape.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

QUEUES = ("q0", "q1", "q2", "q3")

FILL_TERMINAL = """
INSERT INTO taskyard.jobs (id, task, args, queue, priority, run_at, max_attempts, backoff,
    state, attempt, attempt_limit, created_at, updated_at, finished_at, result, fingerprint)
SELECT gen_random_uuid(), 'work', jsonb_build_object('n', g), 'q' || (g %% 4), 0,
    now() - (g %% 2592000) * interval '1 second', 3,
    '{"base_seconds": 1.0, "factor": 2.0, "max_seconds": 300.0, "jitter": "full"}',
    'succeeded', 1, 3,
    now() - (g %% 2592000) * interval '1 second',
    now() - (g %% 2592000) * interval '1 second' + interval '2 seconds',
    now() - (g %% 2592000) * interval '1 second' + interval '2 seconds',
    'null', 'bench'
FROM generate_series(1, %(count)s) AS g
"""

FILL_ATTEMPTS = """
INSERT INTO taskyard.attempts (job_id, attempt, worker, started_at, lease_expires_at,
    finished_at, outcome)
SELECT id, 1, 'bench', run_at, run_at + interval '10 seconds', finished_at, 'succeeded'
FROM taskyard.jobs WHERE state = 'succeeded'
"""

FILL_QUEUED = """
INSERT INTO taskyard.jobs (id, task, args, queue, priority, run_at, max_attempts, backoff,
    state, attempt, attempt_limit, created_at, updated_at, fingerprint)
SELECT gen_random_uuid(), 'work', jsonb_build_object('n', g), 'q' || (g %% 4), (g %% 3) - 1,
    now() - (g %% 600) * interval '1 second', 3,
    '{"base_seconds": 1.0, "factor": 2.0, "max_seconds": 300.0, "jitter": "full"}',
    'queued', 0, 3, now(), now(), 'bench'
FROM generate_series(1, %(count)s) AS g
"""

FINISH_CLAIMED = (
    """UPDATE taskyard.jobs SET state = 'succeeded', lease_worker = NULL,
        lease_expires_at = NULL, finished_at = now(), updated_at = now()
    WHERE state = 'running'""",
    """UPDATE taskyard.jobs SET state = 'succeeded', finished_at = now(), updated_at = now()
    WHERE state = 'queued'""",
    """UPDATE taskyard.attempts SET outcome = 'succeeded', finished_at = now()
    WHERE outcome = 'running'""",
)
"""After a round: every job it claimed (and any it left) is done, as if reported."""


def _url_for(admin_url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _explain(url: str, *, by_queue: bool, limit: int) -> str:
    """The plan of the claim statement inside `taskyard.claim` (migration 0003), with its
    own planner settings, as `auto_explain` logs it to this session (a superuser's: `LOAD`),
    in a transaction that is rolled back."""
    plans: list[str] = []
    with psycopg.connect(url) as conn:
        conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        for statement in (
            "LOAD 'auto_explain'",
            "SET LOCAL auto_explain.log_min_duration = 0",
            "SET LOCAL auto_explain.log_analyze = on",
            "SET LOCAL auto_explain.log_buffers = on",
            "SET LOCAL auto_explain.log_nested_statements = on",
            "SET LOCAL client_min_messages = log",
        ):
            conn.execute(statement)
        from taskyard.domain.store import plans as p

        conn.execute(
            "SELECT count(*) FROM taskyard.claim(%s, %s, %s, %s::text[], NULL, %s, %s)",
            ("explain", limit, 30.0, ["q1"] if by_queue else None, p.LEASED.value, p.OPEN.value),
        )
        conn.rollback()
    nested = [p for p in plans if "taskyard.jobs" in p and ("LockRows" in p or "claimed" in p)]
    return "\n".join(nested or plans)


def _claimer(
    url: str, batch: int, timeout_s: float, with_report: bool, barrier: Any, out: Any
) -> None:
    from taskyard.adapters.postgres import PostgresJobStore
    from taskyard.domain.ports import ClaimRequest
    from taskyard.domain.transitions import Report, ReportKind

    worker = f"bench-{os.getpid()}"
    claimed = 0
    with PostgresJobStore.from_url(url) as store:
        store.now()
        barrier.wait()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            jobs = store.claim(ClaimRequest(worker=worker, limit=batch, lease_ttl_s=300))
            if not jobs:
                break
            if with_report:
                store.report([Report(ref=j.ref(), kind=ReportKind.SUCCEEDED) for j in jobs])
            claimed += len(jobs)
    out.put(claimed)


def _round(
    url: str, claimers: int, *, batch: int, queued: int, timeout_s: float, with_report: bool
) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL_QUEUED, {"count": queued})
        conn.execute("VACUUM ANALYZE taskyard.jobs")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(claimers + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_claimer, args=(url, batch, timeout_s, with_report, barrier, out))
        for _ in range(claimers)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=60)
    started = time.monotonic()
    total = sum(out.get(timeout=timeout_s + 60) for _ in procs)
    elapsed = time.monotonic() - started
    for proc in procs:
        proc.join(timeout=30)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in FINISH_CLAIMED:
            conn.execute(statement)
    return total / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "TASKYARD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queued", type=int, default=50_000)
    parser.add_argument("--claimers", default="1,4,8")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-timeout", type=float, default=60.0)
    parser.add_argument(
        "--with-report",
        action="store_true",
        help="each claimer also reports success for every batch it claims (a drain)",
    )
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args(argv)
    assert 0 < args.queued < args.rows, "--queued must be below --rows"

    from taskyard.adapters.postgres import migrate

    name = f"taskyard_bench_{os.getpid()}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _url_for(args.admin_url, name)
    try:
        migrate(url)
        print(f"database {name}: filling {args.rows:,} rows", flush=True)
        started = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FILL_TERMINAL, {"count": args.rows - args.queued})
            conn.execute(FILL_ATTEMPTS)
            conn.execute(FILL_QUEUED, {"count": args.queued})
            conn.execute("VACUUM ANALYZE")
            counts = conn.execute(
                "SELECT state, count(*) FROM taskyard.jobs GROUP BY state ORDER BY state"
            ).fetchall()
            size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('taskyard.jobs'))"
            ).fetchone()
        print(f"filled in {time.monotonic() - started:.1f}s: {dict(counts)}, jobs {size[0]}")
        server = psycopg.connect(url).info.server_version
        print(f"PostgreSQL {server // 10000}.{server % 10000}, {os.cpu_count()} CPUs")

        for by_queue, label in ((False, "every queue"), (True, "one queue (q1)")):
            print(f"\n--- EXPLAIN (ANALYZE, BUFFERS): claim of {args.batch}, {label} ---")
            print(_explain(url, by_queue=by_queue, limit=args.batch))

        what = "claims+reports" if args.with_report else "claims"
        print(
            f"\n--- {what}/s: batch {args.batch}, {args.queued:,} queued jobs per round, "
            f"median of {args.rounds} ---"
        )
        for claimers in (int(c) for c in args.claimers.split(",")):
            rates = [
                _round(
                    url,
                    claimers,
                    batch=args.batch,
                    queued=args.queued,
                    timeout_s=args.round_timeout,
                    with_report=args.with_report,
                )
                for _ in range(args.rounds)
            ]
            shown = ", ".join(f"{r:,.0f}" for r in rates)
            print(f"{claimers} claimer(s): {statistics.median(rates):,.0f} jobs/s ({shown})")
    finally:
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
