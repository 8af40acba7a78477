"""Hard timeouts: from the kill of a timed-out handler to its slot running the next job.

One worker runtime (the production one) in this process with `--pool process` and one
slot, on the in-memory store and coordinator (or `--db`). Each round enqueues a handler
that sleeps past its timeout (`--timeout-s`, default 0.3 s) and, right behind it, a probe
job; with one slot, the probe can only start once the hung child was killed and the slot
came back. Two times per round, measured from the moment the worker kills the child
(`time.monotonic()`, one clock for every process on Linux):

* **slot free**: the killed attempt's outcome reaches the worker, which counts the slot free;
* **next job running**: the probe's handler starts, in the standby child that took the
  killed one's place (a new standby is started behind it; the rounds are paced so that it
  is ready before the next kill, `--pause-s`).

    python benchmarks/hard_timeouts.py                  # 20 rounds, memory store
    python benchmarks/hard_timeouts.py --rounds 50 --db postgresql://postgres@127.0.0.1/bench

Times are in milliseconds; every round is bounded (`ROUND_TIMEOUT_S`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from typing import Any

import taskyard
from taskyard.adapters import processes
from taskyard.domain.submission import Submission
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings

ROUND_TIMEOUT_S = 30.0

app = taskyard.App()


@app.task(name="bench.hang")
def hang() -> None:
    time.sleep(600)


@app.task(name="bench.probe")
def probe() -> float:
    return time.monotonic()


class Marks:
    """Moments seen by the worker's process, stamped as they happen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.killed: list[float] = []
        self.freed: list[float] = []

    def add(self, into: list[float]) -> None:
        with self.lock:
            into.append(time.monotonic())


def _instrument(marks: Marks) -> None:
    """Stamp each kill (benchmark instrumentation only)."""
    kill = processes._Child.kill_if_serving

    def kill_if_serving(self: Any, key: Any) -> None:
        if self.serving == key and self.process.is_alive():
            marks.add(marks.killed)
        kill(self, key)

    processes._Child.kill_if_serving = kill_if_serving  # type: ignore[method-assign]


def _quantiles(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return f"p50 {statistics.median(ms):7.1f}   p90 {p90:7.1f}   max {ms[-1]:7.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--timeout-s", type=float, default=0.3)
    parser.add_argument("--db", default="memory://")
    parser.add_argument("--pause-s", type=float, default=2.0, help="between rounds")
    args = parser.parse_args()
    assert 1 <= args.rounds <= 1_000 and 0.05 <= args.timeout_s <= 60 and args.pause_s <= 60

    marks = Marks()
    _instrument(marks)
    settings = Settings(
        database_url=args.db, redis_url="memory://", pool="process", app="hard_timeouts:app"
    )
    system = bootstrap(settings)
    if args.db.startswith("postgresql"):
        from taskyard.adapters.postgres import migrate

        migrate(args.db)
    runtime = system.worker_runtime(
        system.task_registry(app.tasks), worker_id="bench", concurrency=1
    )
    finished = runtime._handler_finished

    def stamped_finished(result: Any) -> None:
        if result.kind.value == "timeout":
            marks.add(marks.freed)
        finished(result)

    runtime._handler_finished = stamped_finished  # type: ignore[method-assign]
    runtime.executor.plain._on_finished = stamped_finished  # type: ignore[union-attr]
    runtime.start()
    client = system.client
    freed: list[float] = []
    running: list[float] = []
    try:
        for _ in range(args.rounds):
            before = len(marks.killed)
            deadline = time.monotonic() + ROUND_TIMEOUT_S
            [hung] = client.submit(
                [Submission(task="bench.hang", timeout_s=args.timeout_s, max_attempts=1)]
            )
            while system.store.get(hung.job.id).state.value != "running":
                assert time.monotonic() < deadline, "a round ran out of time"
                time.sleep(0.005)
            [probed] = client.submit([Submission(task="bench.probe")])
            while system.store.get(probed.job.id).result is None:
                assert time.monotonic() < deadline, "a round ran out of time"
                time.sleep(0.01)
            with marks.lock:
                killed = marks.killed[before]
                freed.append(marks.freed[-1] - killed)
            started = system.store.get(probed.job.id).result
            assert isinstance(started, float)
            running.append(started - killed)
            time.sleep(args.pause_s)
    finally:
        runtime.stop(grace_s=0)
        system.close()
    print(f"hard timeouts, --pool process, 1 slot, {args.rounds} rounds, store {args.db}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}, python {platform.python_version()}"
    )
    print("from the kill of the timed-out child, ms:")
    print(f"  slot free (outcome at the worker): {_quantiles(freed)}")
    print(f"  next job running in it:           {_quantiles(running)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
