"""Flow control on PostgreSQL: no cliff from a limit, and fairness between keys.

    python benchmarks/flow.py cliff --jobs 10000 --repeat 3
    python benchmarks/flow.py fairness --jobs 20000 --keys 1000 --repeat 3

Both reuse `taskyard bench`'s drain (`taskyard.entrypoints.bench`): a database of the
bench's own (`taskyard_bench_<hex>`, dropped at the end), the jobs queued at once in the
bench's queue, then `--workers` worker processes of `--concurrency` threads let go at
once; the time until the last outcome is committed. Every job must succeed with one
attempt. Numbers are printed, never judged: this is a benchmark, not a test.

* `cliff`: the drain of `--jobs` no-op jobs with no limit, and with `concurrency_limit`
  set to `--limit` (by default 100 times the workers' slots, far above the load), in
  turns (unlimited, limited, unlimited, ...) `--repeat` times each; the median jobs/s of
  each and their ratio (limited / unlimited; the target is at least 0.90).
* `fairness`: `--keys` concurrency keys under `key_concurrency_limit` `--key-limit`; key
  `k0000` holds half the jobs, the other keys share the other half evenly (a key's jobs
  submitted together, the heavy key's first: the worst order for a first-come claim).
  Printed per run: the drain's jobs/s, and Jain's fairness index over the keys' start
  rates in the contended window, defined exactly:

  - the starts are the attempts' `started_at` (the store's clock, as committed);
  - the window is [T0, T1]: T0 the first start of any job, T1 the earliest moment some
    key had started all of its jobs (the minimum over keys of each key's last start);
    within it every key still had jobs waiting, so a fair claim owes each the same rate;
  - x_i = the starts of key i within the window / (T1 - T0), for every one of the keys
    (a key with no start in the window counts, as 0);
  - J = (sum x_i)^2 / (n * sum x_i^2): 1.0 when every key started at the same rate,
    1/n when one key took every start.

  Also printed: the heavy key's share of the window's starts (a fair share is 1/n), and
  when the last light key's last job started, against the whole drain.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs
import psycopg

from taskyard.adapters.postgres.store import split_url
from taskyard.domain.flow import QueueLimits
from taskyard.domain.ports import JobStore
from taskyard.domain.submission import Submission
from taskyard.entrypoints.bench.phases import QUEUE, BenchOptions, drain_jobs
from taskyard.entrypoints.bench.processes import NOOP_TASK
from taskyard.entrypoints.bench.target import Target, bench_target

HEAVY_KEY = "k0000"
FAIRNESS_POLL_S = 0.05
"""A worker picks up capacity freed under a binding limit at its next poll (nothing rings
when a job ends): at the default 1 s the heavy key's tail would drain at about
`key_limit` jobs a second."""

STARTS = """
SELECT j.concurrency_key, a.started_at
FROM taskyard.attempts AS a JOIN taskyard.jobs AS j ON j.id = a.job_id
WHERE j.queue = %s
"""


def analyze(target: Target) -> None:
    """What autovacuum does on its own within about a minute of a large insert: the
    planner's statistics of the jobs table (the claim's plans depend on them)."""
    with psycopg.connect(split_url(target.store_url)[0], autocommit=True) as conn:
        conn.execute("ANALYZE taskyard.jobs")


def set_limits(limits: QueueLimits) -> Any:
    def prepare(store: JobStore) -> None:
        store.set_queue_limits(QUEUE, limits)

    return prepare


def cliff(target: Target, options: BenchOptions, limit: int, repeat: int, enqueued: Any) -> None:
    limited = QueueLimits(concurrency_limit=limit)
    rates: dict[str, list[float]] = {"unlimited": [], "limited": []}
    for n in range(repeat):
        for name, limits in (("unlimited", QueueLimits()), ("limited", limited)):
            figures = drain_jobs(target, options, prepare=set_limits(limits), enqueued=enqueued)
            rates[name].append(figures["jobs_per_s"])
            print(
                f"run {n + 1} {name:9}: {figures['jobs']} jobs in {figures['seconds']:.2f} s, "
                f"{figures['jobs_per_s']:,.0f} jobs/s",
                flush=True,
            )
    free = statistics.median(rates["unlimited"])
    held = statistics.median(rates["limited"])
    print(f"median unlimited            {free:,.0f} jobs/s")
    print(f"median concurrency_limit {limit:,}: {held:,.0f} jobs/s")
    print(f"ratio (limited / unlimited) {held / free:.3f} (target >= 0.90)")


def skewed(jobs: int, keys: int) -> list[Submission]:
    """Half the jobs on the heavy key, the rest spread evenly over the other keys; each
    key's jobs together, the heavy key's first."""
    heavy = jobs // 2
    light = jobs - heavy
    out = [Submission(task=NOOP_TASK, queue=QUEUE, concurrency_key=HEAVY_KEY) for _ in range(heavy)]
    for index in range(1, keys):
        share = light // (keys - 1) + (1 if index - 1 < light % (keys - 1) else 0)
        out += [
            Submission(task=NOOP_TASK, queue=QUEUE, concurrency_key=f"k{index:04d}")
            for _ in range(share)
        ]
    return out


@attrs.frozen(kw_only=True)
class Fairness:
    jain: float
    window_s: float
    window_starts: int
    heavy_share: float
    light_done_s: float
    """From the first start to the last start of any light key's job."""
    drain_s: float
    """From the first start to the last start of any job."""


def jain(rates: Sequence[float]) -> float:
    """Jain's fairness index.

    >>> jain([2.0, 2.0, 2.0]), jain([3.0, 0.0, 0.0])
    (1.0, 0.3333333333333333)
    """
    total = sum(rates)
    squares = sum(x * x for x in rates)
    return total * total / (len(rates) * squares) if squares else 1.0


def fairness_of(starts: Sequence[tuple[str, datetime]], keys: Sequence[str]) -> Fairness:
    by_key: dict[str, list[datetime]] = defaultdict(list)
    for key, at in starts:
        by_key[key].append(at)
    assert set(by_key) == set(keys), "every key's jobs started"
    first = min(at for _, at in starts)
    last = max(at for _, at in starts)
    window_end = min(max(times) for times in by_key.values())
    window_s = (window_end - first).total_seconds()
    counts = [sum(1 for at in by_key[key] if at <= window_end) for key in keys]
    rates = [count / window_s if window_s > 0 else float(count) for count in counts]
    light_last = max(max(times) for key, times in by_key.items() if key != HEAVY_KEY)
    return Fairness(
        jain=jain(rates),
        window_s=window_s,
        window_starts=sum(counts),
        heavy_share=counts[keys.index(HEAVY_KEY)] / sum(counts),
        light_done_s=(light_last - first).total_seconds(),
        drain_s=(last - first).total_seconds(),
    )


def fairness(
    target: Target, options: BenchOptions, keys: int, key_limit: int, repeat: int, enqueued: Any
) -> None:
    submissions = skewed(options.jobs, keys)
    names = [f"k{index:04d}" for index in range(keys)]
    limits = QueueLimits(key_concurrency_limit=key_limit)
    conninfo, _ = split_url(target.store_url)
    results: list[tuple[float, Fairness]] = []
    for n in range(repeat):
        figures = drain_jobs(
            target, options, submissions, prepare=set_limits(limits), enqueued=enqueued
        )
        with psycopg.connect(conninfo, autocommit=True) as conn:
            rows = conn.execute(STARTS, (QUEUE,)).fetchall()
        measured = fairness_of([(str(key), at) for key, at in rows], names)
        results.append((figures["jobs_per_s"], measured))
        print(
            f"run {n + 1}: {figures['jobs']} jobs in {figures['seconds']:.2f} s, "
            f"{figures['jobs_per_s']:,.0f} jobs/s; window {measured.window_s:.3f} s with "
            f"{measured.window_starts} starts, Jain {measured.jain:.4f}, heavy key's share "
            f"{measured.heavy_share:.4f} (fair: {1 / keys:.4f}); light keys done "
            f"{measured.light_done_s:.2f} s into a {measured.drain_s:.2f} s drain",
            flush=True,
        )
    print(
        f"median {statistics.median(r for r, _ in results):,.0f} jobs/s, Jain "
        f"{statistics.median(f.jain for _, f in results):.4f}, heavy key's share "
        f"{statistics.median(f.heavy_share for _, f in results):.4f}, light keys done "
        f"{statistics.median(f.light_done_s for _, f in results):.2f} s of "
        f"{statistics.median(f.drain_s for _, f in results):.2f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", choices=("cliff", "fairness"))
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-redis", action="store_true", help="poll instead of doorbells")
    parser.add_argument("--jobs", type=int, default=None, help="cliff 10,000; fairness 20,000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--limit", type=int, default=None, help="cliff: 100 x the slots")
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="start the workers on the statistics the table has (none since the enqueue)",
    )
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--key-limit", type=int, default=50)
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help="the workers' poll_interval_s (fairness: 0.05; cliff: the default)",
    )
    args = parser.parse_args(argv)
    jobs = args.jobs or (10_000 if args.benchmark == "cliff" else 20_000)
    if not 1 <= args.repeat <= 20 or not 1 <= jobs <= 1_000_000:
        parser.error("--repeat is 1 to 20, --jobs 1 to 1,000,000")
    if args.benchmark == "fairness" and not 2 <= args.keys <= jobs // 2:
        parser.error("--keys is 2 to half of --jobs")
    poll_s = args.poll_interval
    if poll_s is None and args.benchmark == "fairness":
        poll_s = FAIRNESS_POLL_S
    options = BenchOptions(
        jobs=jobs,
        workers=args.workers,
        concurrency=args.concurrency,
        worker_overrides=() if poll_s is None else (("poll_interval_s", poll_s),),
    )
    enqueued = None if args.no_analyze else analyze
    began = time.monotonic()
    with bench_target(args.admin_url, None if args.no_redis else args.redis) as target:
        print(
            f"{args.benchmark}: {jobs:,} jobs, {args.workers} workers x {args.concurrency} "
            f"threads, {'polling' if args.no_redis else 'doorbells'}"
            f"{'' if poll_s is None else f', poll every {poll_s:g} s'}"
            f"{', no ANALYZE' if args.no_analyze else ', ANALYZE after the enqueue'}"
            f", on {target.label}",
            flush=True,
        )
        if args.benchmark == "cliff":
            limit = args.limit or 100 * args.workers * args.concurrency
            cliff(target, options, limit, args.repeat, enqueued)
        else:
            fairness(target, options, args.keys, args.key_limit, args.repeat, enqueued)
    print(f"took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
