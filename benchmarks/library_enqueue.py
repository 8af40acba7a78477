"""The Python library's enqueue path as a user (and the peers benchmark) drives it: an
`App` with one task of two arguments, `app.enqueue` one job a call, and
`app.enqueue_many([app.submission(...) for ...])` in calls of `--batch` jobs. Prints
jobs/s; run it under py-spy to see where the time goes:

    python benchmarks/library_enqueue.py --mode bulk --jobs 20000
    py-spy record -r 500 -f raw -o bulk.txt -- python benchmarks/library_enqueue.py --mode bulk

Everything runs in this process against a throwaway database on `--admin`'s server
(created, migrated and dropped) and Redis keys under a fresh `bench-<hex>:` prefix (deleted
at the end; the server is never flushed). The timed loop is `timed()`, so a profile's
stacks under it are the enqueues alone, without the start-up.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time

from timers import ADMIN_URL, forget_prefix, throwaway_database

import taskyard

TIMEOUT_S = 300.0


def timed(app: taskyard.App, mode: str, jobs: int, batch: int) -> tuple[int, float]:
    """Enqueue `jobs` jobs (bounded by `TIMEOUT_S`): how many, and the seconds it took."""
    deadline = time.monotonic() + TIMEOUT_S
    began = time.perf_counter()
    done = 0
    while done < jobs and time.monotonic() < deadline:
        if mode == "one":
            app.enqueue("probe", args={"i": done, "t": 0.0})
            done += 1
        else:
            size = min(batch, jobs - done)
            app.enqueue_many(
                [app.submission("probe", args={"i": done + n, "t": 0.0}) for n in range(size)]
            )
            done += size
    return done, time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mode", choices=("one", "bulk"), default="bulk")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--admin", default=ADMIN_URL)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    if not (1 <= args.jobs <= 1_000_000 and 1 <= args.batch <= 100_000):
        parser.error("--jobs or --batch out of range")
    prefix = f"bench-{secrets.token_hex(4)}:"
    with throwaway_database(args.admin) as url:
        app = taskyard.App(url, coordinator_url=args.redis, redis_key_prefix=prefix)

        @app.task("probe")
        def probe(i: int, t: float) -> None: ...

        try:
            app.enqueue("probe", args={"i": -1, "t": 0.0})  # connections, imports
            done, seconds = timed(app, args.mode, args.jobs, args.batch)
        finally:
            app.close()
            forget_prefix(args.redis, prefix)
    print(f"{args.mode}: {done:,} jobs in {seconds:.2f} s, {done / seconds:,.0f} jobs/s")
    return 0 if done == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
