"""Pickup latency: from the start of an enqueue to the start of its handler, on an idle system.

One job every `--gap-ms` (default 5 ms), `--jobs` of them (default 1,000), one worker
runtime (the production one) and a client in this process, loopback only. Three modes:

* `doorbell`: the Redis coordinator is up; the client rings, the idle worker wakes.
* `polling-1s`: Redis is down (the URL points at a closed port); the worker falls back to
  polling the store at the default interval of 1 s.
* `polling-<s>s`: Redis down, polling at `--fast-poll-s` (default 0.1 s).

    python benchmarks/pickup_latency.py                     # memory store, own redis-server
    python benchmarks/pickup_latency.py --store postgresql://postgres@127.0.0.1/bench \\
        --redis redis://127.0.0.1:6379/0

Without `--redis`, a throwaway `redis-server` is started on a free loopback port and
stopped at the end. With `--redis`, keys go under a fresh `bench-<hex>:` prefix and are
deleted at the end (the server is never flushed). Latencies are in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from taskyard.domain.context import Registry, TaskSpec
from taskyard.domain.submission import Submission
from taskyard.domain.worker import POLL_INTERVAL_S_DEFAULT
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings

DRAIN_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def own_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("no redis-server on PATH: pass --redis URL")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("redis-server did not start")
                time.sleep(0.02)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def percentile(ordered: list[float], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run_mode(
    name: str,
    *,
    store_url: str,
    redis_url: str,
    prefix: str,
    poll_interval_s: float,
    jobs: int,
    gap_s: float,
    concurrency: int,
) -> dict[str, Any]:
    # The worker and the client each have Redis connections of their own, as two processes
    # would; both built by the composition root, on one store.
    quick = "socket_timeout=0.5&socket_connect_timeout=0.5"
    settings = Settings(
        database_url=store_url, redis_url=f"{redis_url}?{quick}", redis_key_prefix=prefix
    )
    worker_side = bootstrap(settings)
    client_side = bootstrap(settings, store=worker_side.store)
    started: dict[int, float] = {}
    all_started = threading.Event()
    lock = threading.Lock()

    def probe(i: int) -> None:
        now = time.perf_counter()
        with lock:
            started[i] = now
            if len(started) == jobs:
                all_started.set()

    registry = Registry()
    registry.add(TaskSpec(name="probe", handler=probe))
    runtime = worker_side.worker_runtime(
        registry,
        worker_id=f"bench-{name}",
        concurrency=concurrency,
        poll_interval_s=poll_interval_s,
    ).start()
    client = client_side.client
    deadline = time.monotonic() + 10
    while runtime.doorbell_ok is None and time.monotonic() < deadline:
        time.sleep(0.01)  # let the worker make its first claim and reach its doorbell
    submitted: dict[int, float] = {}
    began = time.perf_counter()
    for i in range(jobs):
        slot = began + i * gap_s
        pause = slot - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        submitted[i] = time.perf_counter()
        client.submit([Submission(task="probe", args={"i": i})])
    finished = all_started.wait(DRAIN_TIMEOUT_S)
    doorbell_ok = runtime.doorbell_ok
    rings = runtime.rings_received
    runtime.stop(grace_s=5)
    client_side.close()
    worker_side.close()
    if not finished:
        sys.exit(f"{name}: only {len(started)} of {jobs} handlers started within the bound")
    latencies_ms = sorted((started[i] - submitted[i]) * 1000 for i in range(jobs))
    return {
        "mode": name,
        "poll_s": poll_interval_s,
        "doorbell_ok": doorbell_ok,
        "rings": rings,
        "p50": percentile(latencies_ms, 0.50),
        "p95": percentile(latencies_ms, 0.95),
        "p99": percentile(latencies_ms, 0.99),
        "max": latencies_ms[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="memory://", help="a store URL (default memory://)")
    parser.add_argument("--redis", help="a Redis URL (default: start a throwaway redis-server)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--gap-ms", type=float, default=5.0, help="between two enqueues")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--fast-poll-s", type=float, default=0.1)
    parser.add_argument("--modes", default="doorbell,polling-default,polling-fast")
    args = parser.parse_args(argv)
    assert 1 <= args.jobs <= 100_000 and args.gap_ms >= 0
    logging.basicConfig(level=logging.ERROR)
    modes = args.modes.split(",")
    down_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: Redis is down
    prefix = f"bench-{secrets.token_hex(4)}:"
    print(
        f"pickup latency: store={args.store} jobs={args.jobs} gap={args.gap_ms:g} ms "
        f"concurrency={args.concurrency} python={platform.python_version()}"
    )
    with contextlib.ExitStack() as stack:
        redis_url = args.redis or stack.enter_context(own_redis())
        plans = {
            "doorbell": (redis_url, POLL_INTERVAL_S_DEFAULT),
            "polling-default": (down_url, POLL_INTERVAL_S_DEFAULT),
            "polling-fast": (down_url, args.fast_poll_s),
        }
        rows = []
        for mode in modes:
            url, poll_s = plans[mode]
            rows.append(
                run_mode(
                    mode,
                    store_url=args.store,
                    redis_url=url,
                    prefix=prefix,
                    poll_interval_s=poll_s,
                    jobs=args.jobs,
                    gap_s=args.gap_ms / 1000,
                    concurrency=args.concurrency,
                )
            )
        if args.redis:
            import redis

            client = redis.Redis.from_url(args.redis)
            for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
                client.delete(key)
            client.close()
    print(f"{'mode':<16} {'poll_s':>6} {'p50_ms':>8} {'p95_ms':>8} {'p99_ms':>8} {'max_ms':>8}")
    for row in rows:
        print(
            f"{row['mode']:<16} {row['poll_s']:>6g} {row['p50']:>8.2f} {row['p95']:>8.2f} "
            f"{row['p99']:>8.2f} {row['max']:>8.2f}   (doorbell_ok={row['doorbell_ok']}, "
            f"rings={row['rings']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
