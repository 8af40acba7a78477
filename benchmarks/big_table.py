"""The jobs table at 10^5, 10^6 and 10^7 rows: filled with COPY, then the claim's plan.

    python benchmarks/big_table.py                             # 1e5, 1e6, 1e7 rows
    python benchmarks/big_table.py --sizes 10000000 --keep     # one size; keep the database

Creates a database of its own on the server of --admin-url (`taskyard_bench_big_<pid>`,
dropped at the end unless --keep) and applies the schema. For each size, in one
transaction: empties the tables, drops the jobs table's secondary indexes, and streams the
rows with `COPY taskyard.jobs ... FROM STDIN WITH (FREEZE)` (rows written frozen, so no
later vacuum has to visit them); then recreates the indexes exactly as the migrations
declared them (their definitions are read from `pg_indexes` first) and analyses the
table. All but --queued rows are succeeded jobs that finished over the last 29 days; the
rest are queued in 4 queues with priorities -1..1. No attempt records are written: the
claim and the prune's candidate query do not read them.

Then, per size, it prints the plan of the claim (`taskyard.claim`, as `auto_explain` logs
the statement inside it, in a transaction rolled back), for a worker of every queue and a
worker of one queue, and the plan of one prune batch (the store's candidate query for
succeeded jobs older than a day, 500 rows, with its row locks, rolled back). A summary
table at the end shows, per size: fill seconds, table size, and for each plan its top
scan node, execution time and buffers.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from claims import _explain, _url_for  # the claim's plan, as claims.py prints it

COLUMNS = (
    "id, task, args, queue, priority, run_at, max_attempts, backoff, state, attempt,"
    " attempt_limit, created_at, updated_at, finished_at, result, fingerprint"
)
BACKOFF = '{"base_seconds": 1.0, "factor": 2.0, "max_seconds": 300.0, "jitter": "full"}'
SPREAD = 100_000
"""Distinct finish times, 25 s apart: about 29 days."""
CHUNK = 20_000

PRUNE = """
SELECT j.id FROM taskyard.jobs AS j
WHERE j.state = 'succeeded' AND j.finished_at <= now() - interval '1 day'
  AND NOT EXISTS (SELECT 1 FROM taskyard.dependencies AS d WHERE d.depends_on = j.id)
ORDER BY j.finished_at, j.id LIMIT 500 FOR UPDATE SKIP LOCKED
"""
"""`PostgresRows.prunable` for the default rule of succeeded jobs (no overrides)."""


def rows(count: int, queued: int) -> Iterator[str]:
    """COPY text, a chunk at a time: `count - queued` succeeded jobs, then `queued` queued."""
    base = datetime.now(UTC)
    times = [(base - timedelta(seconds=25 * k)).isoformat() for k in range(SPREAD)]
    terminal = count - queued
    for start in range(0, terminal, CHUNK):
        out = io.StringIO()
        for n in range(start, min(terminal, start + CHUNK)):
            at = times[n % SPREAD]
            out.write(
                f'{n + 1:032x}\twork\t{{"n": {n}}}\tq{n % 4}\t0\t{at}\t3\t{BACKOFF}\tsucceeded'
                f"\t1\t3\t{at}\t{at}\t{at}\tnull\tbench\n"
            )
        yield out.getvalue()
    out = io.StringIO()
    for n in range(terminal, count):
        at = times[n % 600]
        out.write(
            f'{n + 1:032x}\twork\t{{"n": {n}}}\tq{n % 4}\t{n % 3 - 1}\t{at}\t3\t{BACKOFF}'
            f"\tqueued\t0\t3\t{at}\t{at}\t\\N\t\\N\tbench\n"
        )
    yield out.getvalue()


def fill(conn: psycopg.Connection[Any], count: int, queued: int, indexes: Sequence[str]) -> float:
    began = time.monotonic()
    with conn.transaction():
        conn.execute("TRUNCATE taskyard.jobs, taskyard.attempts, taskyard.dependencies")
        for name in _names(indexes):
            conn.execute(sql.SQL("DROP INDEX taskyard.{}").format(sql.Identifier(name)))
        with conn.cursor().copy(f"COPY taskyard.jobs ({COLUMNS}) FROM STDIN WITH (FREEZE)") as copy:
            for chunk in rows(count, queued):
                copy.write(chunk)
    copied = time.monotonic()
    for definition in indexes:
        conn.execute(definition)
    conn.execute("ANALYZE taskyard.jobs")
    done = time.monotonic()
    print(
        f"{count:,} rows: COPY {copied - began:.1f} s, indexes and ANALYZE {done - copied:.1f} s",
        flush=True,
    )
    return done - began


def _names(indexes: Sequence[str]) -> list[str]:
    return [re.search(r"INDEX (\w+) ON", d).group(1) for d in indexes]  # type: ignore[union-attr]


def prune_plan(url: str) -> str:
    with psycopg.connect(url) as conn:
        lines = [r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {PRUNE}")]
        conn.rollback()
    return "\n".join(lines)


def summary(plan: str) -> str:
    """The first scan node of a plan's text, its execution time and the top's buffers."""
    scan = re.search(
        r"((?:Index Only Scan|Index Scan|Bitmap Heap Scan|Seq Scan)[^(]* on jobs [^(]*)", plan
    )
    took = re.findall(r"actual time=[\d.]+\.\.([\d.]+)", plan)
    buffers = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
    touched = int(buffers.group(1)) + int(buffers.group(2) or 0) if buffers else 0
    return (
        f"{scan.group(1).strip() if scan else '?'}, {float(took[0]) if took else 0:.2f} ms, "
        f"{touched} buffers"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="the claim's batch")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    assert all(args.queued < size <= 20_000_000 for size in sizes), sizes

    from taskyard.adapters.postgres import migrate

    name = f"taskyard_bench_big_{os.getpid()}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _url_for(args.admin_url, name)
    table = ["| rows | fill s | jobs table | claim, every queue | claim, one queue | prune batch |"]
    table.append("| ---: | ---: | ---: | --- | --- | --- |")
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            indexes = [
                d
                for (d,) in conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = 'taskyard'"
                    " AND tablename = 'jobs' AND indexname <> 'jobs_pkey' ORDER BY indexname"
                )
            ]
            for size in sizes:
                seconds = fill(conn, size, args.queued, indexes)
                row = conn.execute(
                    "SELECT pg_size_pretty(pg_total_relation_size('taskyard.jobs'))"
                ).fetchone()
                plans = [
                    _explain(url, by_queue=False, limit=args.batch),
                    _explain(url, by_queue=True, limit=args.batch),
                    prune_plan(url),
                ]
                labels = ("claim of every queue", "claim of one queue (q1)", "one prune batch")
                for label, plan in zip(labels, plans, strict=True):
                    print(f"\n--- {size:,} rows: {label} ---\n{plan}", flush=True)
                shown = " | ".join(summary(plan) for plan in plans)
                table.append(f"| {size:,} | {seconds:.0f} | {row[0] if row else '?'} | {shown} |")
        print("\n" + "\n".join(table))
    finally:
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
