"""What the counting triggers cost the claim and the success report, on PostgreSQL, with
the schema as migrated beside version 10's `run_s_bound` and beside no triggers at all.

    python benchmarks/count_triggers.py                     # 20 rounds of 30 calls each
    python benchmarks/count_triggers.py --rounds 10 --calls 20

Makes one database per variant (dropped at the end), each migrated and filled with queued
jobs as `benchmarks/claims.py` fills them (4 queues, one task). Then, over one connection
per database, it takes turns: each round runs `--calls` claims of 4 (`hotpaths.claim`)
and the success report of each (`hotpaths.report_succeeded`) on every variant in turn,
each statement committed apart, so that a slower spell of the machine falls on all of
them. It prints each variant's median time of the claim's and the report's statement
(client side, without the commit) and of their commits, in milliseconds. The first round
is a warm-up and is not counted.

The variants: `migrated` (the schema as `taskyard migrate` leaves it), `version 10 bound`
(version 6's `run_s_bound`, as it was up to version 10, put back: a SQL function with a
subquery on `run_s_ladder`),
and `no triggers` (the count triggers of `jobs` and `attempts` disabled; the counts go
wrong, which is why this is only ever done here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import FILL_QUEUED

from taskyard.adapters.postgres import hotpaths
from taskyard.adapters.postgres.schema import migrate
from taskyard.domain.ports import ClaimRequest
from taskyard.domain.transitions import Report, ReportKind
from tests.services import LOCAL_POSTGRES, fresh_database

VERSION_10_BOUND = """
CREATE OR REPLACE FUNCTION taskyard.run_s_bound(p_run_s double precision)
RETURNS double precision LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_run_s IS NULL THEN -1 ELSE coalesce(
        (SELECT min(bound) FROM taskyard.run_s_ladder WHERE bound >= p_run_s),
        'Infinity') END
$$"""
NO_TRIGGERS = (
    "ALTER TABLE taskyard.jobs DISABLE TRIGGER jobs_count_update",
    "ALTER TABLE taskyard.attempts DISABLE TRIGGER attempts_count_insert",
    "ALTER TABLE taskyard.attempts DISABLE TRIGGER attempts_count_update",
)
VARIANTS: dict[str, tuple[str, ...]] = {
    "migrated": (),
    "version 10 bound": (VERSION_10_BOUND,),
    "no triggers": NO_TRIGGERS,
}
BATCH = 4


def _turn(conn: psycopg.Connection, times: list[list[float]]) -> None:
    started = time.perf_counter()
    jobs = hotpaths.claim(conn, ClaimRequest(worker="bench", limit=BATCH, lease_ttl_s=300.0))
    claimed = time.perf_counter()
    conn.commit()
    committed = time.perf_counter()
    assert len(jobs) == BATCH, "the fill holds enough queued jobs for every call"
    reports = [Report(ref=job.ref(), kind=ReportKind.SUCCEEDED) for job in jobs]
    done = hotpaths.report_succeeded(conn, reports)
    reported = time.perf_counter()
    conn.commit()
    finished = time.perf_counter()
    assert len(done) == BATCH, done
    for i, seconds in enumerate(
        (claimed - started, committed - claimed, reported - committed, finished - reported)
    ):
        times[i].append(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=LOCAL_POSTGRES, help="a server to use")
    parser.add_argument("--rounds", type=int, default=20, help="counted rounds")
    parser.add_argument("--calls", type=int, default=30, help="claims of 4 per variant a round")
    args = parser.parse_args()
    queued = (args.rounds + 1) * args.calls * BATCH + 1000
    with (
        fresh_database(args.database_url, prefix="taskyard_bench_ct") as a,
        fresh_database(args.database_url, prefix="taskyard_bench_ct") as b,
        fresh_database(args.database_url, prefix="taskyard_bench_ct") as c,
    ):
        urls = dict(zip(VARIANTS, (a, b, c), strict=True))
        conns: dict[str, psycopg.Connection] = {}
        try:
            for name, url in urls.items():
                migrate(url)
                with psycopg.connect(url, autocommit=True) as setup:
                    setup.execute(FILL_QUEUED, {"count": queued})
                    setup.execute("VACUUM ANALYZE taskyard.jobs")
                    for statement in VARIANTS[name]:
                        setup.execute(statement)
                conns[name] = psycopg.connect(url)
            times: dict[str, list[list[float]]] = {name: [[], [], [], []] for name in VARIANTS}
            for round_ in range(args.rounds + 1):
                for name, conn in conns.items():
                    counted: list[list[float]] = times[name] if round_ else [[], [], [], []]
                    for _ in range(args.calls):
                        _turn(conn, counted)
        finally:
            for conn in conns.values():
                conn.close()
    print(f"{args.rounds} rounds of {args.calls} claims of {BATCH} and their reports; ms, median")
    for name, series in times.items():
        claim, claim_commit, report, report_commit = (
            f"{statistics.median(xs) * 1000:.3f}" for xs in series
        )
        tail = f"report {report} (commit {report_commit})"
        print(f"{name:>17}: claim {claim} (commit {claim_commit}) | {tail}")


if __name__ == "__main__":
    main()
