"""The phases of `taskyard bench`, each a bounded measurement on the bench's own store.

* `enqueue-one`: N jobs, one `Client.submit` call each, from one thread (jobs/s).
* `enqueue-bulk`: N jobs in calls of `batch_size` (jobs/s).
* `drain`: N queued jobs, then W worker processes of C threads are let go at once; the time
  until the last outcome is committed (jobs/s). Checked afterwards: every job succeeded
  with exactly one attempt.
* `latency`: an idle worker process; one probe job every `gap_ms`; from the moment before
  its enqueue to the moment its handler starts (p50/p95/p99, ms).
* `kill`: two worker processes and a scheduler with default settings; a job that sleeps
  `kill_job_s`; the worker running it is SIGKILLed `kill_at_s` into it; the time until the
  job starts again on the other worker. Checked afterwards: the job succeeded and exactly
  one attempt committed an outcome (the first ends `worker_lost`).
* `api`: `taskyard api` under gunicorn on a free loopback port, driven by `wrk` with
  `POST /v1/jobs` (requests/s). Skipped when `wrk` is not installed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from taskyard.domain.client import Client
from taskyard.domain.model import JobState, Outcome
from taskyard.domain.ports import JobStore
from taskyard.domain.submission import Submission
from taskyard.domain.worker import LEASE_TTL_S_DEFAULT, LEASE_TTL_S_MIN
from taskyard.entrypoints.bench.processes import (
    NOOP_TASK,
    PROBE_TASK,
    SLEEP_TASK,
    ProcessSpec,
    Started,
    scheduler_main,
    worker_main,
)
from taskyard.entrypoints.bench.target import Target
from taskyard.entrypoints.bootstrap import System, bootstrap
from taskyard.entrypoints.config import Settings

PHASES = ("enqueue-one", "enqueue-bulk", "drain", "latency", "kill", "api")
QUEUE = "bench"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
LATENCY_WARMUP_JOBS = 20


class BenchFailed(Exception):
    """A phase did not finish within its bound, or its check failed."""


@attrs.frozen(kw_only=True)
class BenchOptions:
    jobs: int = 10_000
    batch_size: int = 1_000
    workers: int = 2
    concurrency: int = 200
    worker_overrides: tuple[tuple[str, Any], ...] = ()
    """`WorkerConfig` fields for the drain and latency workers (batch sizes, linger)."""
    latency_jobs: int = 1_000
    latency_gap_ms: float = 5.0
    kill_job_s: float = 10.0
    kill_at_s: float = 2.0
    kill_lease_ttl_s: float = LEASE_TTL_S_DEFAULT
    api_workers: int = 2
    api_threads: int = 16
    api_connections: int = 32
    api_duration_s: float = 10.0
    phase_timeout_s: float = 300.0

    def __attrs_post_init__(self) -> None:
        assert 1 <= self.jobs <= 1_000_000, self.jobs
        assert 1 <= self.batch_size <= 10_000, self.batch_size
        assert 1 <= self.workers <= 64, self.workers
        assert 1 <= self.concurrency <= 1_000, self.concurrency
        assert 1 <= self.latency_jobs <= 100_000, self.latency_jobs
        assert 0 <= self.latency_gap_ms <= 10_000, self.latency_gap_ms
        assert 0 < self.kill_at_s < self.kill_job_s <= 600, (self.kill_at_s, self.kill_job_s)
        assert LEASE_TTL_S_MIN <= self.kill_lease_ttl_s <= 600, self.kill_lease_ttl_s
        assert 1 <= self.api_connections <= 1_000, self.api_connections
        assert 0 < self.api_duration_s <= 600, self.api_duration_s
        assert self.phase_timeout_s > 0, self.phase_timeout_s


Figures = dict[str, Any]


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The value at `fraction` of `ordered` (nearest rank).

    >>> percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5)
    3.0
    >>> percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.99)
    5.0
    """
    assert ordered, "no values"
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# --- helpers ------------------------------------------------------------------------------


def _system(target: Target, **given: Any) -> System:
    """The bench's store and coordinator, from the composition root."""
    return bootstrap(target.settings(), **given)


def _queued_total(store: JobStore, queue: str) -> dict[JobState, int]:
    for info in store.queues():
        if info.name == queue:
            return dict(info.counts)
    return {}


def _attempt_outcomes(store: JobStore) -> dict[Outcome, int]:
    return dict(store.attempt_totals(run_s_buckets=()).by_outcome)


class _Processes:
    """The child processes of one phase: started with spawn, stopped for sure."""

    def __init__(self, target: Target, lifetime_s: float, settings: Settings | None = None) -> None:
        self._mp = multiprocessing.get_context("spawn")
        self._settings = settings if settings is not None else target.settings()
        self._lifetime_s = lifetime_s
        self.ready = self._mp.Queue()
        self.go = self._mp.Event()
        self.events = self._mp.Queue()
        self.procs: list[Any] = []
        self.progress: list[Any] = []

    def _spec(self, name: str, **fields: Any) -> ProcessSpec:
        return ProcessSpec(
            settings=self._settings,
            name=name,
            lifetime_s=self._lifetime_s,
            **fields,
        )

    def worker(
        self, name: str, *, concurrency: int, overrides: tuple[tuple[str, Any], ...] = ()
    ) -> Any:
        progress = self._mp.Array("d", 2, lock=False)
        spec = self._spec(name, concurrency=concurrency, worker_overrides=overrides)
        proc = self._mp.Process(
            target=worker_main,
            args=(spec, self.ready, self.go, self.events, progress),
            name=name,
            daemon=True,
        )
        proc.start()
        self.procs.append(proc)
        self.progress.append(progress)
        return proc

    def scheduler(self, name: str) -> Any:
        proc = self._mp.Process(
            target=scheduler_main,
            args=(self._spec(name), self.ready, self.go),
            name=name,
            daemon=True,
        )
        proc.start()
        self.procs.append(proc)
        return proc

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for _ in self.procs:
            remaining_s = deadline - time.monotonic()
            try:
                self.ready.get(timeout=max(0.01, remaining_s))
            except Exception:
                dead = [p.name for p in self.procs if not p.is_alive()]
                raise BenchFailed(
                    f"the bench processes did not start within {READY_TIMEOUT_S:g} s"
                    + (f" (ended: {', '.join(dead)})" if dead else "")
                ) from None

    def next_event(self, timeout_s: float) -> Started | None:
        try:
            event: Started = self.events.get(timeout=max(0.001, timeout_s))
        except Exception:
            return None
        return event

    def stop(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for q in (self.ready, self.events):
            q.close()
            q.cancel_join_thread()


@contextlib.contextmanager
def _processes(
    target: Target, lifetime_s: float, settings: Settings | None = None
) -> Iterator[_Processes]:
    procs = _Processes(target, lifetime_s, settings)
    try:
        yield procs
    finally:
        procs.stop()


bench_processes = _processes
"""Worker and scheduler processes over `target` (with other `settings`, say a retention),
for benchmarks outside `taskyard bench` (`benchmarks/soak.py`)."""


# --- the phases ---------------------------------------------------------------------------


def enqueue_one(target: Target, options: BenchOptions) -> Figures:
    target.empty()
    system = _system(target)
    store, client = system.store, system.client
    try:
        submission = Submission(task=NOOP_TASK, queue=QUEUE)
        store.now()
        deadline = time.monotonic() + options.phase_timeout_s
        began = time.perf_counter()
        for done in range(options.jobs):
            client.submit([submission])
            if done % 256 == 0 and time.monotonic() > deadline:
                raise BenchFailed(f"enqueue-one: {done} jobs within the bound")
        elapsed_s = time.perf_counter() - began
        stored = _queued_total(store, QUEUE).get(JobState.QUEUED, 0)
        if stored != options.jobs:
            raise BenchFailed(f"enqueue-one: {stored} jobs stored, {options.jobs} submitted")
    finally:
        system.close()
    return {"jobs": options.jobs, "seconds": elapsed_s, "jobs_per_s": options.jobs / elapsed_s}


def _bulk(client: Client, jobs: int, batch_size: int, deadline: float) -> None:
    batch = [Submission(task=NOOP_TASK, queue=QUEUE)] * batch_size
    left = jobs
    while left > 0:
        client.submit(batch[: min(left, batch_size)])
        left -= batch_size
        if time.monotonic() > deadline:
            raise BenchFailed(f"enqueue-bulk: {jobs - left} jobs within the bound")


def enqueue_bulk(target: Target, options: BenchOptions) -> Figures:
    target.empty()
    system = _system(target)
    store, client = system.store, system.client
    try:
        store.now()
        began = time.perf_counter()
        _bulk(client, options.jobs, options.batch_size, time.monotonic() + options.phase_timeout_s)
        elapsed_s = time.perf_counter() - began
        stored = _queued_total(store, QUEUE).get(JobState.QUEUED, 0)
        if stored != options.jobs:
            raise BenchFailed(f"enqueue-bulk: {stored} jobs stored, {options.jobs} submitted")
    finally:
        system.close()
    return {
        "jobs": options.jobs,
        "batch_size": options.batch_size,
        "seconds": elapsed_s,
        "jobs_per_s": options.jobs / elapsed_s,
    }


def drain(target: Target, options: BenchOptions) -> Figures:
    return drain_jobs(target, options)


def drain_jobs(
    target: Target,
    options: BenchOptions,
    submissions: Sequence[Submission] | None = None,
    *,
    prepare: Callable[[JobStore], None] | None = None,
    enqueued: Callable[[Target], None] | None = None,
) -> Figures:
    """The `drain` phase over `submissions` (queue `QUEUE`; by default `options.jobs` no-op
    jobs), after `prepare(store)` (a benchmark's settings, such as queue limits); with
    `enqueued`, called once the jobs are in, before the workers start."""
    target.empty()
    system = _system(target)
    store, client = system.store, system.client
    if submissions is not None:
        assert submissions and all(s.queue == QUEUE for s in submissions), "the bench's queue"
        options = attrs.evolve(options, jobs=len(submissions))
    try:
        if prepare is not None:
            prepare(store)
        deadline = time.monotonic() + options.phase_timeout_s
        if submissions is None:
            _bulk(client, options.jobs, options.batch_size, deadline)
        else:
            for at in range(0, len(submissions), options.batch_size):
                client.submit(submissions[at : at + options.batch_size])
                if time.monotonic() > deadline:
                    raise BenchFailed(f"drain: {at} jobs enqueued within the bound")
        if enqueued is not None:
            enqueued(target)
        with _processes(target, options.phase_timeout_s + READY_TIMEOUT_S) as procs:
            for n in range(options.workers):
                procs.worker(
                    f"bench-drain-{n}",
                    concurrency=options.concurrency,
                    overrides=options.worker_overrides,
                )
            procs.wait_ready()
            began = time.monotonic()
            procs.go.set()
            deadline = began + options.phase_timeout_s
            while sum(int(p[0]) for p in procs.progress) < options.jobs:
                if time.monotonic() > deadline:
                    done = sum(int(p[0]) for p in procs.progress)
                    raise BenchFailed(
                        f"drain: {done} of {options.jobs} outcomes within "
                        f"{options.phase_timeout_s:g} s"
                    )
                time.sleep(0.001)
            ended = max(float(p[1]) for p in procs.progress)
        counts = _queued_total(store, QUEUE)
        outcomes = _attempt_outcomes(store)
    finally:
        system.close()
    succeeded = counts.get(JobState.SUCCEEDED, 0)
    attempts = sum(outcomes.values())
    if succeeded != options.jobs or attempts != options.jobs:
        raise BenchFailed(
            f"drain: {succeeded} of {options.jobs} jobs succeeded with {attempts} attempts "
            "(every job must succeed with exactly one)"
        )
    elapsed_s = ended - began
    return {
        "jobs": options.jobs,
        "workers": options.workers,
        "concurrency": options.concurrency,
        "seconds": elapsed_s,
        "jobs_per_s": options.jobs / elapsed_s,
    }


def latency(target: Target, options: BenchOptions) -> Figures:
    target.empty()
    system = _system(target)
    client = system.client
    gap_s = options.latency_gap_ms / 1000
    submitted: dict[int, float] = {}
    started: dict[int, float] = {}
    try:
        with _processes(target, options.phase_timeout_s + READY_TIMEOUT_S) as procs:
            procs.worker(
                "bench-latency", concurrency=options.concurrency, overrides=options.worker_overrides
            )
            procs.wait_ready()
            procs.go.set()
            total = LATENCY_WARMUP_JOBS + options.latency_jobs
            deadline = time.monotonic() + options.phase_timeout_s
            began = time.monotonic()
            for i in range(total):
                pause_s = began + i * gap_s - time.monotonic()
                if pause_s > 0:
                    time.sleep(pause_s)
                submitted[i] = time.monotonic()
                client.submit([Submission(task=PROBE_TASK, args={"i": i}, queue=QUEUE)])
                _collect(procs, started, 0.0)
                if time.monotonic() > deadline:
                    raise BenchFailed("latency: the probes were not all sent within the bound")
            while len(started) < total and time.monotonic() < deadline:
                _collect(procs, started, 0.05)
            if len(started) < total:
                raise BenchFailed(f"latency: {len(started)} of {total} probes started in time")
    finally:
        system.close()
    measured = sorted((started[i] - submitted[i]) * 1000 for i in range(LATENCY_WARMUP_JOBS, total))
    return {
        "jobs": options.latency_jobs,
        "gap_ms": options.latency_gap_ms,
        "mode": "doorbell" if target.redis_url else "polling",
        "p50_ms": percentile(measured, 0.50),
        "p95_ms": percentile(measured, 0.95),
        "p99_ms": percentile(measured, 0.99),
        "max_ms": measured[-1],
    }


def _collect(procs: _Processes, started: dict[int, float], timeout_s: float) -> None:
    event = procs.next_event(timeout_s) if timeout_s > 0 else _no_wait(procs)
    while event is not None:
        if event.label is not None and event.attempt == 1:
            started[event.label] = event.at
        event = _no_wait(procs)


def _no_wait(procs: _Processes) -> Started | None:
    try:
        event: Started = procs.events.get_nowait()
    except Exception:
        return None
    return event


def kill(target: Target, options: BenchOptions) -> Figures:
    target.empty()
    system = _system(target)
    store, client = system.store, system.client
    overrides: tuple[tuple[str, Any], ...] = (("lease_ttl_s", options.kill_lease_ttl_s),)
    bound_s = options.kill_lease_ttl_s + options.kill_job_s + 60
    try:
        with _processes(target, bound_s + READY_TIMEOUT_S) as procs:
            workers = [
                procs.worker(f"bench-kill-{n}", concurrency=4, overrides=overrides)
                for n in range(2)
            ]
            procs.scheduler("bench-scheduler")
            procs.wait_ready()
            procs.go.set()
            (enqueued,) = client.submit(
                [Submission(task=SLEEP_TASK, args={"seconds": options.kill_job_s}, queue=QUEUE)]
            )
            job_id = str(enqueued.job.id)
            first = _wait_start(procs, job_id, attempt=1, timeout_s=30.0)
            victim = next((p for p in workers if p.pid == first.pid), None)
            assert victim is not None, "the job runs in one of the bench's workers"
            pause_s = first.at + options.kill_at_s - time.monotonic()
            if pause_s > 0:
                time.sleep(pause_s)  # the scenario: the worker dies this far into the job
            killed_at = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)
            again = _wait_start(procs, job_id, attempt=2, timeout_s=options.kill_lease_ttl_s + 30.0)
            deadline = time.monotonic() + options.kill_job_s + 30.0
            job = store.get(enqueued.job.id)
            while not job.state.is_terminal and time.monotonic() < deadline:
                time.sleep(0.05)
                job = store.get(enqueued.job.id)
        attempts = store.attempts(enqueued.job.id)
    finally:
        system.close()
    committed = [a for a in attempts if a.outcome in (Outcome.SUCCEEDED, Outcome.FAILED)]
    outcomes = [a.outcome.value for a in attempts]
    committed_once = (
        job.state is JobState.SUCCEEDED
        and len(committed) == 1
        and outcomes == [Outcome.WORKER_LOST.value, Outcome.SUCCEEDED.value]
    )
    if not committed_once:
        raise BenchFailed(
            f"kill: the job ended {job.state.value} with attempts {outcomes} "
            "(expected worker_lost, then succeeded once)"
        )
    return {
        "lease_ttl_s": options.kill_lease_ttl_s,
        "job_s": options.kill_job_s,
        "killed_after_s": killed_at - first.at,
        "ran_again_after_s": again.at - killed_at,
        "other_worker": again.pid != first.pid,
        "attempts": outcomes,
        "committed_once": committed_once,
    }


def _wait_start(procs: _Processes, job_id: str, *, attempt: int, timeout_s: float) -> Started:
    deadline = time.monotonic() + timeout_s
    while True:
        event = procs.next_event(deadline - time.monotonic())
        if event is not None and event.job_id == job_id and event.attempt == attempt:
            return event
        if time.monotonic() > deadline:
            raise BenchFailed(f"kill: attempt {attempt} did not start within {timeout_s:g} s")


# --- the API under wrk --------------------------------------------------------------------

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '{"task": "bench.noop", "queue": "bench"}'
wrk.headers["Content-Type"] = "application/json"
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, deadline: float, server: subprocess.Popen[bytes]) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None:
            raise BenchFailed(f"api: the server ended with status {server.returncode}")
        if time.monotonic() > deadline:
            raise BenchFailed("api: the server did not answer within the bound")
        time.sleep(0.05)


def parse_wrk(text: str) -> Figures:
    """The figures of `wrk --latency` output.

    >>> out = parse_wrk('''  50%    1.00ms\\n  99%    3.50ms\\n  1000 requests in 2.00s, 1MB read
    ... Non-2xx or 3xx responses: 2\\nRequests/sec:    500.25\\n''')
    >>> out["requests_per_s"], out["requests"], out["non_2xx"], out["p99_ms"]
    (500.25, 1000, 2, 3.5)
    """
    figures: Figures = {"non_2xx": 0, "errors": 0}
    for line in text.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            figures["requests_per_s"] = float(words[1])
        elif "requests in" in line:
            figures["requests"] = int(words[0])
        elif line.startswith("Non-2xx or 3xx responses:"):
            figures["non_2xx"] = int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            figures["errors"] = sum(int(w.strip(",")) for w in words if w.strip(",").isdigit())
        elif len(words) == 2 and words[0] in ("50%", "90%", "99%"):
            figures[f"p{words[0][:-1]}_ms"] = _ms(words[1])
    return figures


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def api(target: Target, options: BenchOptions) -> Figures:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    target.empty()
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "TASKYARD_DATABASE_URL": target.store_url,
            "TASKYARD_LOG_LEVEL": "warning",
        }
    )
    env.pop("TASKYARD_API_TOKENS", None)
    env.pop("TASKYARD_CONFIG", None)
    if target.redis_url:
        env["TASKYARD_REDIS_URL"] = target.redis_url
        assert target.redis_prefix is not None
        env["TASKYARD_REDIS_KEY_PREFIX"] = target.redis_prefix
    else:
        env.pop("TASKYARD_REDIS_URL", None)
    command = [
        sys.executable,
        "-m",
        "taskyard.entrypoints.cli",
        "api",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(options.api_workers),
        "--threads",
        str(options.api_threads),
    ]
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-") as folder:
        script = os.path.join(folder, "post.lua")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(WRK_SCRIPT)
        server = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_http(
                f"http://127.0.0.1:{port}/readyz", time.monotonic() + READY_TIMEOUT_S, server
            )
            done = subprocess.run(
                [
                    wrk,
                    "-t1",
                    f"-c{options.api_connections}",
                    f"-d{options.api_duration_s:g}s",
                    "--latency",
                    "-s",
                    script,
                    f"http://127.0.0.1:{port}/v1/jobs",
                ],
                capture_output=True,
                text=True,
                timeout=options.api_duration_s + 60,
                check=False,
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=STOP_TIMEOUT_S + 30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
    if done.returncode != 0:
        raise BenchFailed(f"api: wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    figures = parse_wrk(done.stdout)
    system = _system(target, coordinator=None)
    try:
        stored = sum(_queued_total(system.store, QUEUE).values())
    finally:
        system.close()
    figures.update(
        {
            "api_workers": options.api_workers,
            "api_threads": options.api_threads,
            "connections": options.api_connections,
            "stored": stored,
        }
    )
    if figures.get("non_2xx") or stored < figures.get("requests", 0):
        raise BenchFailed(
            f"api: {figures.get('non_2xx')} refused, {stored} jobs stored for "
            f"{figures.get('requests')} answered requests"
        )
    return figures


RUNNERS: dict[str, Callable[[Target, BenchOptions], Figures]] = {
    "enqueue-one": enqueue_one,
    "enqueue-bulk": enqueue_bulk,
    "drain": drain,
    "latency": latency,
    "kill": kill,
    "api": api,
}


def median_of(runs: Sequence[Figures]) -> Figures:
    """Every numeric figure's median over the runs; other values (and numbers that are
    the same in every run, such as settings) from the first run.

    >>> median_of([{"x": 1.0, "n": 8, "ok": True}, {"x": 3.0, "n": 8, "ok": True},
    ...            {"x": 2.0, "n": 8, "ok": False}])
    {'x': 2.0, 'n': 8, 'ok': False}
    """
    out: Figures = dict(runs[0])
    for key, value in runs[0].items():
        values = [run[key] for run in runs]
        if isinstance(value, bool):
            out[key] = all(bool(v) for v in values)
        elif isinstance(value, int | float) and any(v != value for v in values):
            out[key] = statistics.median(float(v) for v in values)
    return out
