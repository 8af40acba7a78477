"""What the counting triggers (`0006_counts.sql`) cost the worker's path on PostgreSQL.

    python benchmarks/counts_overhead.py                    # 5 rounds of 2,000 jobs
    python benchmarks/counts_overhead.py --jobs 500 --rounds 3 --batch 10

Creates a database of its own (dropped at the end), then alternates rounds with the
triggers on and off (`ALTER TABLE ... DISABLE TRIGGER USER`; the counts are wrong while
they are off, which is why this is only ever done here). Each round enqueues --jobs jobs
(in batches of 50), then one claimer claims --batch at a time and reports each batch
succeeded, as a worker does, through the store's hot paths. It prints the median over
rounds of the time per job for the enqueue and for the claim-and-report, with and
without the triggers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from taskyard.domain.ports import ClaimRequest, JobStore
from tests import factories as f
from tests.services import LOCAL_POSTGRES, fresh_database

TABLES = ("taskyard.jobs", "taskyard.attempts")


def one_round(store: JobStore, url: str, *, jobs: int, batch: int, on: bool) -> tuple[float, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"ALTER TABLE {table} {'ENABLE' if on else 'DISABLE'} TRIGGER USER")
        conn.execute("TRUNCATE taskyard.jobs, taskyard.attempts, taskyard.dependencies")
    started = time.perf_counter()
    for _ in range(0, jobs, 50):
        f.enqueue_many(store, 50, queue="q")
    enqueue_us = (time.perf_counter() - started) * 1e6 / jobs
    started = time.perf_counter()
    done = 0
    while done < jobs:
        claimed = store.claim(ClaimRequest(worker="w", limit=batch, lease_ttl_s=60.0))
        if not claimed:
            break
        store.report([f.succeed(job) for job in claimed])
        done += len(claimed)
    assert done >= jobs, done
    work_us = (time.perf_counter() - started) * 1e6 / done
    return enqueue_us, work_us


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--admin-url", default=os.environ.get("TASKYARD_TEST_DATABASE_URL", LOCAL_POSTGRES)
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    assert 50 <= args.jobs <= 100_000 and 1 <= args.rounds <= 50 and 1 <= args.batch <= 1000

    from taskyard.adapters.postgres import PostgresJobStore, migrate

    with fresh_database(args.admin_url, prefix="taskyard_countcost") as url:
        migrate(url)
        results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        with PostgresJobStore.from_url(url) as store:
            one_round(store, url, jobs=100, batch=args.batch, on=True)  # warm up
            for _ in range(args.rounds):
                for on in (True, False):
                    results[on].append(
                        one_round(store, url, jobs=args.jobs, batch=args.batch, on=on)
                    )
        print(f"{args.jobs:,} jobs a round, claims of {args.batch}, median of {args.rounds}")
        print(f"{'triggers':10} {'enqueue µs/job':>15} {'claim+report µs/job':>20}")
        for on in (True, False):
            enqueue = statistics.median(e for e, _ in results[on])
            work = statistics.median(w for _, w in results[on])
            print(f"{'on' if on else 'off':10} {enqueue:15.0f} {work:20.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
