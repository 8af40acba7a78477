"""What the worker's two hot statements cost PostgreSQL, their execution timed apart from
their commit: the claim (`hotpaths.claim`) and the success report of what it claimed
(`hotpaths.report_succeeded`), on one connection.

    python benchmarks/statement_costs.py                  # claims of 4, 16 and 100
    python benchmarks/statement_costs.py --sizes 16 --calls 400

For each size it makes a throwaway database (`timers.throwaway_database`), fills it with
queued jobs the way `benchmarks/claims.py` does (`FILL_QUEUED`: 5,000, or 300 claims' worth
when that is more), then claims and reports `--calls` times, and prints the medians of the
four times. The table is left as the fill made it, never analysed, which is how a queue
table stands after a burst until something analyses it; `--analyse` runs `ANALYZE` after
the fill instead. Every loop is bounded by `--calls` and by the jobs the fill queued.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import psycopg
from claims import FILL_QUEUED
from timers import ADMIN_URL, throwaway_database

from taskyard.adapters.postgres import hotpaths
from taskyard.domain.ports import ClaimRequest
from taskyard.domain.transitions import Report, ReportKind

WARM_UP = 20
"""Calls made before timing: the connection's first plans."""


def measure(admin_url: str, size: int, calls: int, *, analyse: bool) -> dict[str, float]:
    """Medians, in ms, of the claim's execution and commit and the report's."""
    with throwaway_database(admin_url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FILL_QUEUED, {"count": max(5_000, 300 * size)})
            if analyse:
                conn.execute("ANALYZE taskyard.jobs")
        times: dict[str, list[float]] = {
            k: [] for k in ("claim", "claim_commit", "report", "report_commit")
        }
        with psycopg.connect(url) as conn:
            request = ClaimRequest(worker="statement-costs", limit=size, lease_ttl_s=300)
            for n in range(WARM_UP + calls):
                t0 = time.perf_counter()
                jobs = hotpaths.claim(conn, request)
                t1 = time.perf_counter()
                conn.commit()
                t2 = time.perf_counter()
                if not jobs:
                    break
                reports = [Report(ref=job.ref(), kind=ReportKind.SUCCEEDED) for job in jobs]
                hotpaths.report_succeeded(conn, reports)
                t3 = time.perf_counter()
                conn.commit()
                t4 = time.perf_counter()
                if n >= WARM_UP:
                    for key, seconds in zip(
                        times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True
                    ):
                        times[key].append(seconds)
        return {key: statistics.median(values) * 1000 for key, values in times.items() if values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--admin", default=ADMIN_URL)
    parser.add_argument("--sizes", default="4,16,100")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--analyse", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if not (all(1 <= s <= 1_000 for s in sizes) and 1 <= args.calls <= 10_000):
        parser.error("--sizes must be 1 to 1,000 each and --calls 1 to 10,000")
    state = "analysed" if args.analyse else "never analysed"
    print(f"medians over {args.calls} calls, one connection, ms; the table {state}")
    print("| jobs per claim | claim | its commit | success report | its commit |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        got = measure(args.admin, size, args.calls, analyse=args.analyse)
        print(
            f"| {size} | {got['claim']:.2f} | {got['claim_commit']:.2f} | {got['report']:.2f} "
            f"| {got['report_commit']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
