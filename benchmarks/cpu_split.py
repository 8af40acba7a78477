"""Where the machine's CPU goes during a drain: PostgreSQL, the workers, the rest.

    python benchmarks/cpu_split.py                          # 60,000 jobs, workers at their defaults
    python benchmarks/cpu_split.py --concurrency 200        # the peers benchmark's tuned setting

Creates a database of its own (`timers.throwaway_database`: made, migrated, dropped at the
end) and a Redis key prefix of its own (its keys deleted at the end; the server is never flushed),
queues `--jobs` no-op jobs (1,000 per `App.enqueue_many` call), then starts one
`taskyard scheduler` and `--workers` `taskyard worker` processes. Once a fifth of the jobs
have succeeded it reads every process's CPU time (`/proc/<pid>/stat`, all threads) and the
machine's (`/proc/stat`), waits `--window` seconds, reads them again and prints the drain
rate over the window and each group's share of the busy CPU: PostgreSQL's backends, the
workers, the scheduler, Redis, the rest. Linux only. Every wait is bounded.

It counts every PostgreSQL process and every `taskyard worker` on the machine, not only its
own, and leaves out processes that started inside the window: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from timers import forget_prefix, throwaway_database

APP_MODULE = """
import taskyard

app = taskyard.App()


@app.task("noop")
def noop(i: int) -> None:
    return None
"""

WAIT_S = 180.0


def _cpu_ticks() -> dict[str, tuple[int, str]]:
    """Each process's user + system ticks (all its threads) and its command line."""
    out: dict[str, tuple[int, str]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[pid] = (int(fields[11]) + int(fields[12]), cmd)
    return out


def _machine() -> tuple[int, int]:
    """All ticks and idle ticks (idle + iowait) of every core since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


def _reading(
    succeeded: Callable[[], int],
) -> tuple[int, dict[str, tuple[int, str]], tuple[int, int], float]:
    """Jobs succeeded so far, every process's ticks, the machine's, and the time."""
    return succeeded(), _cpu_ticks(), _machine(), time.monotonic()


def _group(cmd: str) -> str:
    if cmd.startswith("postgres"):
        return "PostgreSQL"
    if " worker " in cmd and "taskyard" in cmd:
        return "taskyard workers"
    if " scheduler" in cmd and "taskyard" in cmd:
        return "taskyard scheduler"
    if "redis" in cmd:
        return "Redis"
    return "the rest"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=None, help="the workers' default")
    parser.add_argument("--window", type=float, default=5.0)
    args = parser.parse_args(argv)
    if not (1_000 <= args.jobs <= 1_000_000 and 1 <= args.workers <= 16):
        parser.error("--jobs must be 1,000 to 1,000,000 and --workers 1 to 16")
    if not 1.0 <= args.window <= 60.0:
        parser.error("--window must be 1 to 60 seconds")

    prefix = f"taskyard-bench-{secrets.token_hex(4)}:"
    with throwaway_database(args.admin_url) as url:
        return _measure(args, url, prefix)


def _measure(args: argparse.Namespace, url: str, prefix: str) -> int:
    procs: list[subprocess.Popen[bytes]] = []
    folder = tempfile.TemporaryDirectory(prefix="taskyard-cpu-")
    try:
        Path(folder.name, "cpu_split_app.py").write_text(APP_MODULE)
        env = {
            **os.environ,
            "TASKYARD_DATABASE_URL": url,
            "TASKYARD_REDIS_URL": args.redis,
            "TASKYARD_REDIS_KEY_PREFIX": prefix,
            "PYTHONPATH": folder.name,
        }
        taskyard = str(Path(sys.executable).with_name("taskyard"))
        sys.path.insert(0, folder.name)
        os.environ.update(env)
        app = importlib.import_module("cpu_split_app").app
        for start in range(0, args.jobs, 1_000):
            stop = min(args.jobs, start + 1_000)
            app.enqueue_many([app.submission("noop", args={"i": i}) for i in range(start, stop)])
        app.close()

        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
        procs.append(subprocess.Popen([taskyard, "scheduler"], **quiet))  # type: ignore[call-overload]
        extra = [] if args.concurrency is None else ["--concurrency", str(args.concurrency)]
        for _ in range(args.workers):
            command = [taskyard, "worker", "--app", "cpu_split_app:app", *extra]
            procs.append(subprocess.Popen(command, **quiet))  # type: ignore[call-overload]

        with psycopg.connect(url, autocommit=True) as conn:

            def succeeded() -> int:
                row = conn.execute(
                    "SELECT count(*) FROM taskyard.jobs WHERE state = 'succeeded'"
                ).fetchone()
                return int(row[0]) if row else 0

            deadline = time.monotonic() + WAIT_S
            while succeeded() < args.jobs // 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            done0, ticks0, (all0, idle0), t0 = (
                succeeded(),
                _cpu_ticks(),
                _machine(),
                time.monotonic(),
            )
            time.sleep(args.window)
            done1, ticks1, (all1, idle1), t1 = (
                succeeded(),
                _cpu_ticks(),
                _machine(),
                time.monotonic(),
            )
        if done1 >= args.jobs:
            print("the drain ended inside the window: raise --jobs", file=sys.stderr)
            return 1
        groups: collections.Counter[str] = collections.Counter()
        for pid, (ticks, cmd) in ticks1.items():
            if pid in ticks0:  # PostgreSQL retitles its backends: match by pid alone
                groups[_group(cmd)] += max(0, ticks - ticks0[pid][0])
        busy = (all1 - all0) - (idle1 - idle0)
        cores = os.cpu_count() or 1
        setting = "default" if args.concurrency is None else str(args.concurrency)
        print(
            f"{args.workers} workers (concurrency: {setting}), a window of {t1 - t0:.1f} s "
            f"after {done0:,} of {args.jobs:,} jobs had succeeded"
        )
        print(f"drain: {(done1 - done0) / (t1 - t0):,.0f} jobs/s")
        print(f"machine: {100 * busy / max(all1 - all0, 1):.0f} % busy over {cores} cores")
        for group, ticks in groups.most_common():
            print(f"  {group}: {100 * ticks / max(busy, 1):.0f} % of the busy CPU")
        return 0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        folder.cleanup()
        forget_prefix(args.redis, prefix)


if __name__ == "__main__":
    sys.exit(main())
