"""What every system's driver shares: the side channel a handler reports on, and the
command line the benchmark calls each driver with.

This file runs inside each system's own virtualenv, so it uses the standard library only.

The side channel is one Unix datagram per event, sent to one of the benchmark's sockets
(`$PEERS_SOCKET.<lane>`, each thread keeping to one of `PEERS_LANES` lanes), in ASCII:

    S <index> <enqueued_at> <started_at> <pid>    a handler started
    D <index> <finished_at> <pid>                  a long handler ran to its end

Times are `time.monotonic()` readings: on Linux that is CLOCK_MONOTONIC, one clock for
every process of the machine, so an enqueue in one process and a handler start in another
can be subtracted. `enqueued_at` is taken just before the enqueue call (0 when a job was
enqueued before the workers started, where only the start matters).

A driver module `peers_<system>` defines `Driver` (the operations below, as plain
functions or as coroutines). The benchmark runs `python -m peers_driver <system> <command>
...` in the system's virtualenv and reads one JSON object from the last line of standard
output.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

SOCKET_ENV = "PEERS_SOCKET"
LANES_ENV = "PEERS_LANES"
DATABASE_ENV = "PEERS_DATABASE_URL"
REDIS_ENV = "PEERS_REDIS_URL"

_local = threading.local()
_threads = itertools.count()


def _socket() -> tuple[socket.socket, str]:
    """One datagram socket per thread and process (a forked child makes its own), and the
    lane it sends to: threads take the benchmark's `PEERS_LANES` lanes in turn."""
    sock: socket.socket | None = getattr(_local, "sock", None)
    if sock is None or getattr(_local, "pid", None) != os.getpid():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        lane = (os.getpid() + next(_threads)) % int(os.environ.get(LANES_ENV, "1"))
        _local.sock = sock
        _local.pid = os.getpid()
        _local.path = f"{os.environ[SOCKET_ENV]}.{lane}"
    return sock, _local.path


def _send(text: str) -> None:
    sock, path = _socket()
    sock.sendto(text.encode("ascii"), path)


def started(index: int, enqueued_at: float) -> None:
    """Call first thing in a handler."""
    now = time.monotonic()
    _send(f"S {index} {enqueued_at!r} {now!r} {os.getpid()}")


def finished(index: int) -> None:
    """Call last thing in a long handler (the kill scenario's), once its work is done."""
    _send(f"D {index} {time.monotonic()!r} {os.getpid()}")


def long_job(index: int, seconds: float) -> None:
    """The kill scenario's job, in a handler that may block its thread: report the start,
    work for `seconds`, report the end."""
    started(index, 0.0)
    time.sleep(seconds)
    finished(index)


async def long_job_async(index: int, seconds: float) -> None:
    """The same in an `async def` handler."""
    import asyncio

    started(index, 0.0)
    await asyncio.sleep(seconds)
    finished(index)


def database_url() -> str:
    return os.environ[DATABASE_ENV]


def redis_url() -> str:
    return os.environ[REDIS_ENV]


class Driver(Protocol):
    """One system, seen through its own Python library."""

    def setup(self) -> None:
        """Install the system's schema (when it has one) in the run's fresh database."""

    def enqueue(self, indexes: Sequence[int], enqueued_at: float) -> None:
        """Enqueue one probe job per index: with one index, through the library's call for
        one job; with more, through its call for many (one call). `enqueued_at` goes into
        every job's arguments."""

    def enqueue_long(self, index: int, seconds: float) -> str:
        """Enqueue one job that runs for `seconds`; return its id."""

    def outcome(self, job_id: str) -> dict[str, Any]:
        """What the system recorded about a long job: `{"committed": n, "detail": ...}`,
        `committed` the number of times its success was recorded (None: not knowable)."""

    def close(self) -> None: ...


def _chunks(start: int, count: int, size: int) -> Iterator[list[int]]:
    for first in range(start, start + count, size):
        yield list(range(first, min(first + size, start + count)))


def _timed_enqueue(driver: Driver, start: int, count: int, per_call: int, bound_s: float) -> Any:
    deadline = time.monotonic() + bound_s
    done = 0
    began = time.perf_counter()
    for indexes in _chunks(start, count, per_call):
        driver.enqueue(indexes, 0.0)
        done += len(indexes)
        if done % 100 == 0 and time.monotonic() > deadline:
            break
    return {"jobs": done, "seconds": time.perf_counter() - began, "complete": done == count}


async def _timed_enqueue_async(
    driver: Any, start: int, count: int, per_call: int, bound_s: float
) -> Any:
    deadline = time.monotonic() + bound_s
    done = 0
    began = time.perf_counter()
    for indexes in _chunks(start, count, per_call):
        await driver.enqueue(indexes, 0.0)
        done += len(indexes)
        if done % 100 == 0 and time.monotonic() > deadline:
            break
    return {"jobs": done, "seconds": time.perf_counter() - began, "complete": done == count}


def _paced(driver: Driver, start: int, count: int, gap_s: float) -> Any:
    began = time.monotonic()
    for n in range(count):
        pause = began + n * gap_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        driver.enqueue([start + n], time.monotonic())
    return {"jobs": count, "seconds": time.monotonic() - began}


async def _paced_async(driver: Any, start: int, count: int, gap_s: float) -> Any:
    import asyncio

    began = time.monotonic()
    for n in range(count):
        pause = began + n * gap_s - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        await driver.enqueue([start + n], time.monotonic())
    return {"jobs": count, "seconds": time.monotonic() - began}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup")
    enqueue = sub.add_parser("enqueue", help="enqueue jobs, timed")
    enqueue.add_argument("--start", type=int, default=0)
    enqueue.add_argument("--count", type=int, required=True)
    enqueue.add_argument("--per-call", type=int, default=1)
    enqueue.add_argument("--timeout-s", type=float, default=300.0)
    paced = sub.add_parser("paced", help="one job every --gap-ms, each with its enqueue time")
    paced.add_argument("--start", type=int, default=0)
    paced.add_argument("--count", type=int, required=True)
    paced.add_argument("--gap-ms", type=float, default=20.0)
    long = sub.add_parser("long", help="enqueue one long job")
    long.add_argument("--index", type=int, default=0)
    long.add_argument("--seconds", type=float, default=10.0)
    outcome = sub.add_parser("outcome", help="what the system recorded about a job")
    outcome.add_argument("--job", required=True)
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.command == "enqueue":
        assert 1 <= args.count <= 10_000_000 and 1 <= args.per_call <= 100_000
        assert 0 < args.timeout_s <= 86_400
    if args.command == "paced":
        assert 1 <= args.count <= 100_000 and 0 <= args.gap_ms <= 60_000
    if args.command == "long":
        assert 0 < args.seconds <= 3_600


def _emit(result: Any) -> int:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def run_cli(driver: Driver, argv: Sequence[str] | None = None) -> int:
    """The driver's command line, for a driver whose operations are plain functions."""
    args = _parser().parse_args(argv)
    _check(args)
    result: Any = {}
    try:
        if args.command == "setup":
            driver.setup()
        elif args.command == "enqueue":
            result = _timed_enqueue(driver, args.start, args.count, args.per_call, args.timeout_s)
        elif args.command == "paced":
            result = _paced(driver, args.start, args.count, args.gap_ms / 1000)
        elif args.command == "long":
            result = {"job": driver.enqueue_long(args.index, args.seconds)}
        elif args.command == "outcome":
            result = driver.outcome(args.job)
    finally:
        driver.close()
    return _emit(result)


def run_cli_async(driver: Any, argv: Sequence[str] | None = None) -> int:
    """The same for a driver whose operations (but `version`) are coroutines: everything
    runs in one event loop, so no loop is started per call."""
    import asyncio

    args = _parser().parse_args(argv)
    _check(args)

    async def main() -> Any:
        await driver.open()
        try:
            if args.command == "setup":
                await driver.setup()
                return {}
            if args.command == "enqueue":
                return await _timed_enqueue_async(
                    driver, args.start, args.count, args.per_call, args.timeout_s
                )
            if args.command == "paced":
                return await _paced_async(driver, args.start, args.count, args.gap_ms / 1000)
            if args.command == "long":
                return {"job": await driver.enqueue_long(args.index, args.seconds)}
            return await driver.outcome(args.job)
        finally:
            await driver.close()

    return _emit(asyncio.run(main()))
