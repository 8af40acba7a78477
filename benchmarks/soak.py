"""Soak: PostgreSQL under steady load with retention on, minute by minute.

    python benchmarks/soak.py                          # 20 minutes
    python benchmarks/soak.py --minutes 10 --svg docs/images/soak.svg --markdown out.md
    python benchmarks/soak.py --minutes 3 --rate 500   # a fixed rate, no drain measured

Creates a database of its own (`taskyard_bench_<hex>`, dropped at the end) and a Redis key
prefix of its own, as `taskyard bench` does. Then:

1. measures the maximum drain: `--measure-jobs` no-op jobs queued at once, drained by the
   soak's workers (`--workers` processes of `--concurrency` threads);
2. enqueues at half that rate (or `--rate`) in small batches every 50 ms, for `--minutes`,
   while the same workers drain and one scheduler process, with retention
   `--retention-seconds` for every finished state, promotes, reaps and prunes;
3. every minute records, for that minute: pickup p50 and p99 (from just before the
   enqueue call to the handler's first line, one monotonic clock for every process), the
   drain rate (handlers started per second), the jobs table's size
   (`pg_total_relation_size`), its live and dead tuples and autovacuum runs
   (`pg_stat_user_tables`), the attempts table's size, and the claim's pick statement
   under `EXPLAIN (ANALYZE, BUFFERS)`: its top scan node, time and buffers;
4. prints a markdown table, writes it (`--markdown`) and a plain SVG picture (`--svg`),
   and judges the targets: pickup p99 over the last 5 minutes at most 1.5x the first 5;
   table size and dead tuples growing by less than 10 % over the last 5 minutes.

The retention period is short (120 s by default) so that the table reaches its steady
size within the run: at the soak's rate the table holds about rate x retention finished
jobs, which is what a day's retention holds at a rate 720 times lower.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import psycopg

from taskyard.adapters.postgres.store import split_url
from taskyard.domain.submission import Submission
from taskyard.entrypoints.bench.phases import bench_processes, percentile
from taskyard.entrypoints.bench.processes import PROBE_TASK, Started
from taskyard.entrypoints.bench.target import bench_target
from taskyard.entrypoints.bootstrap import bootstrap

QUEUE = "soak"
TICK_S = 0.05

PICK = """
SELECT j.id FROM taskyard.jobs AS j
WHERE j.state = 'queued' AND j.run_at <= now()
  AND j.queue NOT IN (SELECT p.queue FROM taskyard.paused_queues AS p)
ORDER BY j.priority DESC, j.run_at, j.id
LIMIT 100
FOR UPDATE SKIP LOCKED
"""
"""The pick of `taskyard.claim` for a worker of every queue (migration 0003), row locks
included, under the function's settings, in a transaction that is rolled back (rows the
soak's workers hold are skipped, as the claim skips them). The locks matter to the plan:
without `FOR UPDATE` the planner may read the claim index of queues (`jobs_claim_queue`)
whole, index only, and sort it, a plan whose cost grows with the backlog and which the
claim itself never takes (it must visit each row to lock it)."""


@attrs.frozen(kw_only=True)
class Minute:
    minute: int
    enqueued: int
    started: int
    pickup_p50_ms: float | None
    pickup_p99_ms: float | None
    drain_per_s: float
    jobs_bytes: int
    attempts_bytes: int
    live: int
    dead: int
    autovacuums: int
    """Autovacuum runs of the jobs table in this minute."""
    autovacuums_attempts: int
    vacuums: int
    """Vacuums of the jobs table by the leading scheduler (TASKYARD_VACUUM_SECONDS)."""
    vacuums_attempts: int
    pick_node: str
    pick_ms: float
    pick_buffers: int


def start(procs: Any, *, workers: int, concurrency: int) -> None:
    """The workers and one scheduler, connected, then let go together."""
    for n in range(workers):
        procs.worker(f"soak-worker-{n}", concurrency=concurrency)
    procs.scheduler("soak-scheduler")
    procs.wait_ready()
    procs.go.set()


def drain_events(procs: Any, into: list[Started], timeout_s: float = 0.0) -> None:
    """Every handler start reported so far (waiting up to `timeout_s` for the first)."""
    event = procs.next_event(timeout_s)
    while event is not None:
        into.append(event)
        event = procs.next_event(0.0)


def table_stats(conn: psycopg.Connection[Any]) -> dict[str, dict[str, int]]:
    rows = conn.execute(
        """SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, vacuum_count,
                  pg_total_relation_size(relid)
           FROM pg_stat_user_tables WHERE schemaname = 'taskyard'
             AND relname IN ('jobs', 'attempts')"""
    ).fetchall()
    return {
        name: {"live": live, "dead": dead, "autovacuums": auto, "vacuums": manual, "bytes": size}
        for name, live, dead, auto, manual, size in rows
    }


def pick_plan(conn: psycopg.Connection[Any]) -> tuple[str, float, int]:
    """The pick's top scan node, execution time (ms) and shared buffers touched."""
    with conn.transaction(force_rollback=True):
        for setting in ("enable_bitmapscan", "enable_hashjoin", "enable_mergejoin"):
            conn.execute(f"SET LOCAL {setting} = off")
        row = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {PICK}").fetchone()
    assert row is not None
    plan = row[0][0]
    node = plan["Plan"]
    while node.get("Plans") and "Scan" not in node["Node Type"]:
        node = node["Plans"][0]
    top = plan["Plan"]
    buffers = int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))
    name = node["Node Type"] + (f" on {node['Index Name']}" if "Index Name" in node else "")
    return name, float(plan["Execution Time"]), buffers


def measure_drain(procs: Any, client: Any, jobs: int) -> float:
    """Jobs per second the workers start when `jobs` wait at once."""
    batch = [Submission(task=PROBE_TASK, queue=QUEUE, args={"i": -1})] * 500
    for _ in range(0, jobs, 500):
        client.submit(batch)
    seen: list[Started] = []
    began = time.monotonic()
    deadline = began + 300
    while len(seen) < jobs and time.monotonic() < deadline:
        drain_events(procs, seen, 0.1)
    if len(seen) < jobs:
        raise SystemExit(f"the drain measurement saw {len(seen)} of {jobs} jobs start")
    return jobs / (max(s.at for s in seen) - began)


def soak(args: argparse.Namespace) -> list[Minute]:
    with bench_target(args.admin_url, args.redis) as target:
        settings = attrs.evolve(
            target.settings(),
            retention_succeeded_s=args.retention_seconds,
            retention_dead_s=args.retention_seconds,
            retention_cancelled_s=args.retention_seconds,
            vacuum_every_s=args.vacuum_every,
        )
        system = bootstrap(settings)
        conninfo, _ = split_url(target.store_url)
        lifetime_s = args.minutes * 60 + 900
        try:
            with (
                bench_processes(target, lifetime_s, settings) as procs,
                psycopg.connect(conninfo, autocommit=True) as conn,
            ):
                if args.table_settings:
                    for table in ("jobs", "attempts"):
                        conn.execute(f"ALTER TABLE taskyard.{table} SET ({args.table_settings})")
                start(procs, workers=args.workers, concurrency=args.concurrency)
                rate = args.rate
                if rate is None:
                    drain = measure_drain(procs, system.client, args.measure_jobs)
                    rate = drain / 2
                    print(f"max drain {drain:,.0f} jobs/s: enqueueing at {rate:,.0f}/s", flush=True)
                return run(args, procs, system.client, conn, rate)
        finally:
            system.close()


def run(
    args: argparse.Namespace,
    procs: Any,
    client: Any,
    conn: psycopg.Connection[Any],
    rate: float,
) -> list[Minute]:
    submitted: dict[int, float] = {}
    events: list[Started] = []
    minutes: list[Minute] = []
    pickups: list[float] = []
    enqueued = started = 0
    label = 0
    carry = 0.0
    began = time.monotonic()
    before = table_stats(conn)
    next_minute = began + args.sample_s
    end = began + args.minutes * 60 + 1.0  # the last minute's sample included
    while time.monotonic() < end:
        tick_at = time.monotonic()
        carry += rate * TICK_S
        count, carry = int(carry), carry - int(carry)
        if count:
            batch = [
                Submission(task=PROBE_TASK, queue=QUEUE, args={"i": label + k})
                for k in range(count)
            ]
            at = time.monotonic()
            client.submit(batch)
            for k in range(count):
                submitted[label + k] = at
            label += count
            enqueued += count
        events.clear()
        drain_events(procs, events)
        for event in events:
            sent = submitted.pop(event.label, None) if event.label is not None else None
            if sent is not None and event.attempt == 1:
                pickups.append((event.at - sent) * 1000)
                started += 1
        if time.monotonic() >= next_minute:
            stats = table_stats(conn)
            node, pick_ms, buffers = pick_plan(conn)
            ordered = sorted(pickups)
            minute = Minute(
                minute=len(minutes) + 1,
                enqueued=enqueued,
                started=started,
                pickup_p50_ms=percentile(ordered, 0.5) if ordered else None,
                pickup_p99_ms=percentile(ordered, 0.99) if ordered else None,
                drain_per_s=started / args.sample_s,
                jobs_bytes=stats["jobs"]["bytes"],
                attempts_bytes=stats["attempts"]["bytes"],
                live=stats["jobs"]["live"],
                dead=stats["jobs"]["dead"],
                autovacuums=stats["jobs"]["autovacuums"] - before["jobs"]["autovacuums"],
                autovacuums_attempts=stats["attempts"]["autovacuums"]
                - before["attempts"]["autovacuums"],
                vacuums=stats["jobs"]["vacuums"] - before["jobs"]["vacuums"],
                vacuums_attempts=stats["attempts"]["vacuums"] - before["attempts"]["vacuums"],
                pick_node=node,
                pick_ms=pick_ms,
                pick_buffers=buffers,
            )
            minutes.append(minute)
            print(row(minute, args.sample_s), flush=True)
            before, pickups, enqueued, started = stats, [], 0, 0
            next_minute += args.sample_s
        pause_s = tick_at + TICK_S - time.monotonic()
        if pause_s > 0:
            time.sleep(pause_s)
    return minutes


HEADER = (
    "| min | enqueued/s | drain/s | pickup p50 ms | pickup p99 ms | jobs table MB | live "
    "| dead | autovacuum (jobs / attempts) | scheduler's vacuum (jobs / attempts) | attempts MB "
    "| claim pick |\n"
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def row(m: Minute, sample_s: float = 60.0) -> str:
    return (
        f"| {m.minute} | {m.enqueued / sample_s:,.0f} | {m.drain_per_s:,.0f} "
        f"| {_ms(m.pickup_p50_ms)} | {_ms(m.pickup_p99_ms)} "
        f"| {m.jobs_bytes / 1e6:,.1f} | {m.live:,} | {m.dead:,} "
        f"| {m.autovacuums} / {m.autovacuums_attempts} | {m.vacuums} / {m.vacuums_attempts} "
        f"| {m.attempts_bytes / 1e6:,.1f} "
        f"| {m.pick_node}, {m.pick_ms:.2f} ms, {m.pick_buffers} buffers |"
    )


def growth(first: float, last: float) -> float:
    return (last - first) / first if first else 0.0


def verdicts(minutes: Sequence[Minute]) -> list[str]:
    """The targets, on the first and last 5 minutes. Dead tuples rise and fall with each
    vacuum, so their plateau is judged on the peaks: the last 5 minutes' highest sample
    against the first 5 minutes' highest."""
    if len(minutes) < 10:
        return ["(fewer than 10 minutes: the 5-minute targets are not judged)"]
    head, tail = minutes[:5], minutes[-5:]
    p99_head = statistics.median(m.pickup_p99_ms or 0.0 for m in head)
    p99_tail = statistics.median(m.pickup_p99_ms or 0.0 for m in tail)
    size = growth(tail[0].jobs_bytes, tail[-1].jobs_bytes)
    dead_head, dead_tail = max(m.dead for m in head), max(m.dead for m in tail)
    return [
        f"pickup p99, median of the last 5 minutes / the first 5: {p99_tail:,.1f} / "
        f"{p99_head:,.1f} ms = {p99_tail / p99_head if p99_head else 0:.2f}x (target <= 1.5x)",
        f"jobs table size over the last 5 minutes: {size:+.1%} (target < +10 %)",
        f"dead tuples, peak of the last 5 minutes / peak of the first 5: {dead_tail:,} / "
        f"{dead_head:,} = {growth(max(1, dead_head), dead_tail):+.1%} (target < +10 %)",
    ]


def svg(minutes: Sequence[Minute], title: str) -> str:
    """Four small panels, one line each (two for pickup and for tuples), in plain SVG."""
    panels = [
        (
            "pickup ms (p50, p99)",
            [[m.pickup_p50_ms or 0 for m in minutes], [m.pickup_p99_ms or 0 for m in minutes]],
        ),
        ("drain jobs/s", [[m.drain_per_s for m in minutes]]),
        ("jobs table MB", [[m.jobs_bytes / 1e6 for m in minutes]]),
        (
            "tuples (live, dead)",
            [[float(m.live) for m in minutes], [float(m.dead) for m in minutes]],
        ),
    ]
    colours = ("#1f77b4", "#d62728")
    width, height, pad = 360, 200, 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{2 * height + 30}" '
        'font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="18" font-size="13">{title}</text>',
    ]
    for index, (name, series) in enumerate(panels):
        x0 = (index % 2) * width + pad
        y0 = (index // 2) * height + 30
        w, h = width - pad - 15, height - 50
        top = max((v for line in series for v in line), default=1.0) or 1.0
        parts.append(f'<text x="{x0}" y="{y0 + 12}">{name}</text>')
        parts.append(
            f'<rect x="{x0}" y="{y0 + 20}" width="{w}" height="{h}" fill="none" stroke="#999"/>'
        )
        parts.append(f'<text x="{x0 - 4}" y="{y0 + 24}" text-anchor="end">{top:,.0f}</text>')
        parts.append(f'<text x="{x0 - 4}" y="{y0 + 20 + h}" text-anchor="end">0</text>')
        parts.append(
            f'<text x="{x0 + w}" y="{y0 + h + 34}" text-anchor="end">minute {len(minutes)}</text>'
        )
        for colour, line in zip(colours, series, strict=False):
            steps = max(1, len(line) - 1)
            points = " ".join(
                f"{x0 + w * i / steps:.1f},{y0 + 20 + h - h * v / top:.1f}"
                for i, v in enumerate(line)
            )
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument(
        "--sample-s", type=float, default=60.0, help="one row per this many seconds"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="jobs/s (default: half the measured drain)"
    )
    parser.add_argument("--measure-jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--retention-seconds", type=int, default=120)
    parser.add_argument(
        "--vacuum-every",
        type=float,
        default=10.0,
        help="the scheduler's TASKYARD_VACUUM_SECONDS (0: leave dead rows to autovacuum)",
    )
    parser.add_argument(
        "--table-settings",
        default=None,
        metavar="K=V,...",
        help="storage parameters set on taskyard.jobs and taskyard.attempts before the run "
        "(ALTER TABLE ... SET), to compare autovacuum settings",
    )
    parser.add_argument("--svg", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    assert 0 < args.minutes <= 120 and 0 < args.sample_s <= 600
    print(HEADER, flush=True)
    minutes = soak(args)
    judged = verdicts(minutes)
    print("\n".join(judged))
    table = (
        HEADER
        + "\n"
        + "\n".join(row(m, args.sample_s) for m in minutes)
        + "\n\n"
        + "\n".join(f"- {v}" for v in judged)
        + "\n"
    )
    if args.markdown:
        args.markdown.write_text(table)
    if args.svg:
        title = f"taskyard soak: {len(minutes)} min, retention {args.retention_seconds} s"
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg(minutes, title))
    if args.json:
        args.json.write_text(json.dumps([attrs.asdict(m) for m in minutes], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
