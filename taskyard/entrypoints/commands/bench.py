"""`taskyard bench`: measure a store (and Redis) with no-op jobs, like `river bench`.

Runs on a database (or SQLite file) and a Redis key prefix of its own, removed at the end;
loopback only unless `--allow-remote`. Every phase is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

HELP = "measure enqueue, drain, pickup latency and recovery from a killed worker"
DESCRIPTION = """\
A burn-down benchmark with no-op jobs, on a database of its own (created on the server of
--store, dropped at the end) and Redis keys of its own (deleted at the end):

  enqueue-one   N jobs, one submit call each, from one thread               jobs/s
  enqueue-bulk  N jobs in calls of --batch-size                             jobs/s
  drain         N queued jobs run by --workers processes of --concurrency   jobs/s
  latency       one probe job every --latency-gap-ms to an idle worker;
                enqueue to handler start                                    p50/p95/p99 ms
  kill          a worker SIGKILLed --kill-at seconds into a --kill-job
                seconds job (default settings); until it runs again         seconds
  api           POST /v1/jobs under gunicorn, driven by wrk (if installed)  requests/s

With --repeat 3 every figure is the median of three runs. Progress goes to stderr; the
table (or, with --json, the whole report) to stdout.
"""


def register(sub: Any) -> None:
    from taskyard.entrypoints.bench import PHASES

    parser: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--store",
        metavar="URL",
        help="postgresql://... or sqlite:///path "
        "(default: $TASKYARD_DATABASE_URL); the bench makes a database of its own beside it",
    )
    add(
        "--redis",
        metavar="URL",
        help="redis://... for the doorbell (default: "
        "$TASKYARD_REDIS_URL; none: workers poll the store)",
    )
    add("--jobs", type=int, default=10_000, help="jobs per enqueue and drain run (10000)")
    add("--batch-size", type=int, default=1_000, help="jobs per bulk enqueue call (1000)")
    add("--workers", type=int, default=2, help="worker processes for the drain (2)")
    add("--concurrency", type=int, default=200, help="threads per worker process (200)")
    add("--claim-batch-max", type=int, help="the workers' claim_batch_max (default: the worker's)")
    add("--report-batch-max", type=int, help="the workers' report_batch_max")
    add("--report-linger-ms", type=float, help="the workers' report_linger_s, in ms")
    add("--latency-jobs", type=int, default=1_000, help="probe jobs in the latency run (1000)")
    add("--latency-gap-ms", type=float, default=5.0, help="between two probes (5)")
    add("--kill-job", type=float, default=10.0, metavar="SECONDS", help="the killed job's length")
    add("--kill-at", type=float, default=2.0, metavar="SECONDS", help="when its worker dies (2)")
    add(
        "--lease-ttl",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the lease TTL of the kill run's workers (10, the default)",
    )
    add("--api-workers", type=int, default=2, help="gunicorn worker processes (2)")
    add("--api-threads", type=int, default=16, help="threads per gunicorn worker (16)")
    add("--api-connections", type=int, default=32, help="wrk connections (32)")
    add("--api-duration", type=float, default=10.0, metavar="SECONDS", help="wrk run length (10)")
    add("--phases", default=",".join(PHASES), help=f"comma separated, from {', '.join(PHASES)}")
    add("--repeat", type=int, default=1, help="runs of each phase; figures are medians (1)")
    add("--timeout", type=float, default=300.0, metavar="SECONDS", help="bound of each run (300)")
    add("--allow-remote", action="store_true", help="allow a store or Redis off this machine")
    add("--json", action="store_true", help="print the whole report as JSON")
    parser.set_defaults(run=run)


def _check(ok: bool, flag: str, problem: str) -> None:
    from taskyard.entrypoints.config import ConfigError

    if not ok:
        raise ConfigError(flag, problem)


def run(args: argparse.Namespace) -> int:
    from taskyard.domain.worker import LEASE_TTL_S_MIN
    from taskyard.entrypoints.bench import PHASES, BenchFailed, BenchOptions, run_bench
    from taskyard.entrypoints.config import ConfigError

    store_url = args.store or os.environ.get("TASKYARD_DATABASE_URL")
    if not store_url:
        raise ConfigError("--store", "not set (pass --store or set TASKYARD_DATABASE_URL)")
    redis_url = args.redis or os.environ.get("TASKYARD_REDIS_URL") or None
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    _check(not unknown and bool(phases), "--phases", f"unknown {unknown} (use {', '.join(PHASES)})")
    _check(1 <= args.jobs <= 1_000_000, "--jobs", "1 to 1,000,000")
    _check(1 <= args.batch_size <= 10_000, "--batch-size", "1 to 10,000")
    _check(1 <= args.workers <= 64, "--workers", "1 to 64")
    _check(1 <= args.concurrency <= 1_000, "--concurrency", "1 to 1,000")
    _check(1 <= args.latency_jobs <= 100_000, "--latency-jobs", "1 to 100,000")
    _check(0 <= args.latency_gap_ms <= 10_000, "--latency-gap-ms", "0 to 10,000")
    _check(
        0 < args.kill_at < args.kill_job <= 600, "--kill-at", "0 < --kill-at < --kill-job <= 600"
    )
    _check(
        LEASE_TTL_S_MIN <= args.lease_ttl <= 600,
        "--lease-ttl",
        f"at least {LEASE_TTL_S_MIN:g}, at most 600",
    )
    _check(1 <= args.repeat <= 20, "--repeat", "1 to 20")
    _check(0 < args.timeout <= 3_600, "--timeout", "more than 0, at most 3600")
    _check(1 <= args.api_connections <= 1_000, "--api-connections", "1 to 1,000")
    _check(0 < args.api_duration <= 600, "--api-duration", "more than 0, at most 600")
    overrides: list[tuple[str, Any]] = []
    if args.claim_batch_max is not None:
        _check(args.claim_batch_max >= 1, "--claim-batch-max", "at least 1")
        overrides.append(("claim_batch_max", args.claim_batch_max))
    if args.report_batch_max is not None:
        _check(args.report_batch_max >= 1, "--report-batch-max", "at least 1")
        overrides.append(("report_batch_max", args.report_batch_max))
    if args.report_linger_ms is not None:
        _check(args.report_linger_ms >= 0, "--report-linger-ms", "at least 0")
        overrides.append(("report_linger_s", args.report_linger_ms / 1000))
    options = BenchOptions(
        jobs=args.jobs,
        batch_size=args.batch_size,
        workers=args.workers,
        concurrency=args.concurrency,
        worker_overrides=tuple(overrides),
        latency_jobs=args.latency_jobs,
        latency_gap_ms=args.latency_gap_ms,
        kill_job_s=args.kill_job,
        kill_at_s=args.kill_at,
        kill_lease_ttl_s=args.lease_ttl,
        api_workers=args.api_workers,
        api_threads=args.api_threads,
        api_connections=args.api_connections,
        api_duration_s=args.api_duration,
        phase_timeout_s=args.timeout,
    )

    def progress(phase: str, n: int, figures: dict[str, Any]) -> None:
        print(f"bench: {phase} run {n}: {summary(phase, figures)}", file=sys.stderr, flush=True)

    try:
        report = run_bench(
            store_url,
            redis_url=redis_url,
            options=options,
            phases=phases,
            repeat=args.repeat,
            allow_remote=args.allow_remote,
            on_run=progress,
        )
    except BenchFailed as exc:
        print(f"taskyard bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
    return 0


def _n(value: float) -> str:
    return f"{value:,.0f}"


def summary(phase: str, f: dict[str, Any]) -> str:
    """One run's (or the medians') figures in a few words."""
    if "skipped" in f:
        return f"skipped: {f['skipped']}"
    if phase in ("enqueue-one", "enqueue-bulk", "drain"):
        return f"{_n(f['jobs_per_s'])} jobs/s ({_n(f['jobs'])} jobs in {f['seconds']:.2f} s)"
    if phase == "latency":
        return (
            f"p50 {f['p50_ms']:.2f} / p95 {f['p95_ms']:.2f} / p99 {f['p99_ms']:.2f} ms "
            f"({f['mode']})"
        )
    if phase == "kill":
        once = "committed once" if f["committed_once"] else "NOT committed once"
        return f"ran again {f['ran_again_after_s']:.2f} s after the kill ({once})"
    if phase == "api":
        return (
            f"{_n(f['requests_per_s'])} requests/s (p50 {f.get('p50_ms', 0):.2f} / "
            f"p99 {f.get('p99_ms', 0):.2f} ms, {f['connections']} connections)"
        )
    return json.dumps(f)


LABELS = {
    "enqueue-one": "enqueue, one at a time",
    "enqueue-bulk": "enqueue, in bulk",
    "drain": "drain",
    "latency": "pickup latency at idle",
    "kill": "worker SIGKILLed mid-job",
    "api": "POST /v1/jobs (wrk)",
}


def table(report: dict[str, Any]) -> str:
    machine = report["machine"]
    opts = report["options"]
    lines = [
        f"taskyard {report['taskyard']} bench on {report['store']}",
        f"  {report['server']}; {report['redis'] or 'no Redis (workers poll)'}",
        f"  {machine['system']}, {machine['cpus']} CPUs, Python {machine['python']}; "
        f"load {machine['load_before']} before, {machine['load_after']} after",
        f"  {opts['jobs']:,} jobs, bulk calls of {opts['batch_size']:,}, drain by "
        f"{opts['workers']} x {opts['concurrency']} threads"
        + (f" {opts['worker_overrides']}" if opts["worker_overrides"] else "")
        + f"; median of {opts['repeat']} run(s); {report['seconds']} s in all",
        "",
    ]
    width = max(len(label) for label in LABELS.values())
    for phase, result in report["phases"].items():
        lines.append(f"{LABELS[phase]:<{width}}  {summary(phase, result['median'])}")
    return "\n".join(lines)
