"""One system run: the same phases, in the same order, for every system and config.

    run_measured:  fresh database / Redis database, schema
                   enqueue --jobs, 1,000 per call (timed)       -> enqueue_bulk_per_s
                   start the workers: they drain that backlog   -> drain_per_s
                   one job every --pickup-gap-ms to idle workers -> pickup_p50_ms, p99
                   RSS of each idle worker (its process tree)   -> rss_mib (the larger)
                   stop the workers
                   enqueue --jobs, one per call (timed)         -> enqueue_one_per_s
    run_kill:      fresh database / Redis database, workers up, one long job; SIGKILL
                   (the process group of) the worker running it --kill-at-s into it; how
                   long until it starts again, and what the system recorded

Every wait is bounded; a phase that fails or runs out of time records an error and the
rest of the run goes on where it can. Workers are started with `start_new_session`, so a
worker and the children it forks are stopped (or killed) together, and always are.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from sidechannel import Receiver, Start
from systems import Config, System

DRIVERS = Path(__file__).resolve().parent / "drivers"
STOP_GRACE_S = 20.0
START_BOUND_S = 60.0
PROFILE_RATE_HZ = 250
"""How long a fresh worker may take to run its first job."""


class PhaseError(Exception):
    pass


@attrs.frozen(kw_only=True)
class Options:
    jobs: int = 10_000
    workers: int = 2
    pickup_jobs: int = 500
    pickup_gap_ms: float = 20.0
    settle_s: float = 1.0
    """After the drain, before pickup: the workers commit their last outcomes and go idle."""
    kill_at_s: float = 2.0
    kill_job_s: float = 10.0
    recovery_wait_s: float = 60.0
    phases: frozenset[str] = frozenset({"enqueue", "drain", "pickup", "kill"})
    profile: frozenset[str] = frozenset()
    """Systems whose first worker py-spy samples during the drain (`--profile`)."""

    @property
    def drain_bound_s(self) -> float:
        return 30.0 + self.jobs / 100


@attrs.define(kw_only=True)
class Context:
    """Where one system run happens."""

    system: System
    config: Config
    bin: Path
    env: Mapping[str, str]
    logs: Path
    receiver: Receiver
    options: Options


def percentiles_ms(starts: Sequence[Start]) -> tuple[float, float]:
    """p50 and p99 of the pickup latencies: from just before each enqueue call to its
    handler's start (`statistics.quantiles`, inclusive: interpolated between ranks).

    >>> starts = [Start(index=i, enqueued_at=1.0, at=1.0 + i / 1000, pid=1) for i in range(101)]
    >>> [round(ms, 6) for ms in percentiles_ms(starts)]
    [50.0, 99.0]
    """
    latencies = [(s.at - s.enqueued_at) * 1000 for s in starts]
    if len(latencies) == 1:
        return latencies[0], latencies[0]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[98]


def drain_rate(starts: Sequence[Start]) -> float | None:
    """Jobs per second between the first and the last handler start.

    >>> drain_rate([Start(index=i, enqueued_at=0, at=10 + i / 4, pid=1) for i in range(5)])
    4.0
    """
    if len(starts) < 2:
        return None
    span = max(s.at for s in starts) - min(s.at for s in starts)
    return (len(starts) - 1) / span if span > 0 else None


# --- driver calls --------------------------------------------------------------------


def driver(ctx: Context, *args: str, timeout_s: float) -> dict[str, Any]:
    """Run one driver command in the system's virtualenv; its JSON answer."""
    command = [str(ctx.bin / "python"), "-m", "peers_driver", ctx.system.key, *args]
    with (ctx.logs / "driver.log").open("a") as err:
        err.write(f"$ {' '.join(command)}\n")
        err.flush()
        try:
            done = subprocess.run(
                command,
                env=dict(ctx.env),
                cwd=DRIVERS,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PhaseError(f"driver {args[0]} did not finish within {timeout_s:g} s") from None
    if done.returncode != 0:
        raise PhaseError(f"driver {args[0]} exited {done.returncode} (see {ctx.logs}/driver.log)")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise PhaseError(f"driver {args[0]} answered nothing")
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def timed_enqueue(ctx: Context, *, start: int, count: int, per_call: int) -> float:
    bound_s = 30.0 + count / 50
    answer = driver(
        ctx,
        "enqueue",
        f"--start={start}",
        f"--count={count}",
        f"--per-call={per_call}",
        f"--timeout-s={bound_s}",
        timeout_s=bound_s + 60,
    )
    if not answer.get("complete"):
        raise PhaseError(f"enqueued only {answer.get('jobs')} of {count} within {bound_s:g} s")
    return float(count / answer["seconds"])


# --- processes -----------------------------------------------------------------------


@attrs.define(eq=False)
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        return ""


def _command(template: Sequence[str], bin_dir: Path, n: int) -> list[str]:
    return [part.format(bin=bin_dir, n=n) for part in template]


def _start(ctx: Context, name: str, command: list[str]) -> Proc:
    log = ctx.logs / f"{name}.log"
    with log.open("ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            command,
            env=dict(ctx.env),
            cwd=DRIVERS,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(name=name, process=process, log=log)


def _signal_group(proc: Proc, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def stop(procs: Sequence[Proc]) -> None:
    """SIGTERM to each process group, then SIGKILL to what is left after the grace."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)  # also any child left behind in the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.process.wait(timeout=10)


@contextlib.contextmanager
def deployment(ctx: Context) -> Iterator[list[Proc]]:
    """The system's workers (yielded) and companions, all stopped at the end."""
    companions = [
        _start(ctx, f"companion{k}", _command(c, ctx.bin, k))
        for k, c in enumerate(ctx.system.companions, start=1)
    ]
    workers = [
        _start(
            ctx,
            f"worker{n}",
            _command(ctx.system.worker, ctx.bin, n) + list(ctx.config.worker_args),
        )
        for n in range(1, ctx.options.workers + 1)
    ]
    try:
        yield workers
    finally:
        stop(workers + companions)


def _check_alive(workers: Sequence[Proc]) -> None:
    dead = [w for w in workers if not w.alive()]
    if dead and len(dead) == len(workers):
        raise PhaseError(f"every worker exited; {dead[0].name}: {dead[0].tail()}")


def wait_starts(
    ctx: Context, workers: Sequence[Proc], count: int, *, since: int, bound_s: float
) -> list[Start]:
    """`count` starts after mark `since`; PhaseError when the bound passes first or every
    worker died."""
    deadline = time.monotonic() + bound_s
    while True:
        got = ctx.receiver.wait_starts(
            count, since=since, timeout_s=min(1.0, max(0.0, deadline - time.monotonic()))
        )
        if len(got) >= count:
            return got
        _check_alive(workers)
        if time.monotonic() >= deadline:
            raise PhaseError(f"timeout: {len(got)} of {count} handlers started in {bound_s:g} s")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    tree = _children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants (a prefork pool's children count)."""
    total_kb = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


# --- the runs ------------------------------------------------------------------------


def run_measured(ctx: Context) -> tuple[dict[str, Any], dict[str, str]]:
    """Figures and errors of one measured run (see the module's docstring)."""
    o = ctx.options
    figures: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def attempt(name: str, action: Any) -> Any:
        try:
            return action()
        except PhaseError as exc:
            errors[name] = str(exc)
        return None

    driver(ctx, "setup", timeout_s=120)
    if "drain" in o.phases or "enqueue" in o.phases:
        rate = attempt(
            "enqueue_bulk",
            lambda: timed_enqueue(ctx, start=0, count=o.jobs, per_call=min(1000, o.jobs)),
        )
        figures["enqueue_bulk_per_s"] = rate
    backlog = o.jobs if figures.get("enqueue_bulk_per_s") else 0
    if {"drain", "pickup"} & o.phases:
        with deployment(ctx) as workers:
            if "drain" in o.phases and backlog:
                # the profile starts with the first handler: a worker's start-up is not in it
                up = attempt(
                    "drain", lambda: wait_starts(ctx, workers, 1, since=0, bound_s=START_BOUND_S)
                )
                with _profiled(ctx, workers[0], errors):
                    got = up and attempt(
                        "drain",
                        lambda: wait_starts(
                            ctx, workers, backlog, since=0, bound_s=o.drain_bound_s
                        ),
                    )
                if got is not None:
                    figures["drain_per_s"] = drain_rate(got)
                    figures["drain_jobs"] = len({s.index for s in got})
            if "pickup" in o.phases and "drain" not in errors:
                time.sleep(o.settle_s)
                attempt("pickup", lambda: _pickup(ctx, workers, figures, first=o.jobs))
                figures["rss_mib"] = max(
                    (rss_mib(w.pid) for w in workers if w.alive()), default=None
                )
    if "enqueue" in o.phases and ctx.config.is_default:
        first = o.jobs + o.pickup_jobs
        figures["enqueue_one_per_s"] = attempt(
            "enqueue_one", lambda: timed_enqueue(ctx, start=first, count=o.jobs, per_call=1)
        )
    return figures, errors


@contextlib.contextmanager
def _profiled(ctx: Context, worker: Proc, errors: dict[str, str]) -> Iterator[None]:
    """With `--profile` naming this system: two `py-spy record`s on `worker` meanwhile,
    written as collapsed stacks: `worker1.pyspy.txt` samples every thread that is not idle
    (where the wall time goes, waits on the database included), `worker1.pyspy-gil.txt`
    only the thread holding the GIL (where the CPU goes)."""
    if ctx.system.key not in ctx.options.profile:
        yield
        return
    outputs = {
        ctx.logs / f"{worker.name}.pyspy.txt": [],
        ctx.logs / f"{worker.name}.pyspy-gil.txt": ["--gil"],
    }
    spies = []
    with (ctx.logs / "py-spy.log").open("ab") as log:
        for output, extra in outputs.items():
            command = [
                "py-spy", "record", "--pid", str(worker.pid), "--rate", str(PROFILE_RATE_HZ),
                "--format", "raw", "--output", str(output), "--nonblocking", *extra,
            ]  # fmt: skip
            try:
                spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log))
            except OSError as exc:
                errors["profile"] = f"py-spy did not start: {exc} (pip install py-spy)"
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=10)
        if spies and not all(output.exists() for output in outputs):
            errors["profile"] = f"py-spy wrote nothing (see {ctx.logs}/py-spy.log)"


def _pickup(ctx: Context, workers: Sequence[Proc], figures: dict[str, Any], *, first: int) -> None:
    o = ctx.options
    mark = ctx.receiver.mark()
    bound_s = o.pickup_jobs * o.pickup_gap_ms / 1000 + 60
    driver(
        ctx,
        "paced",
        f"--start={first}",
        f"--count={o.pickup_jobs}",
        f"--gap-ms={o.pickup_gap_ms}",
        timeout_s=bound_s,
    )
    got = wait_starts(ctx, workers, o.pickup_jobs, since=mark, bound_s=30.0)
    figures["pickup_p50_ms"], figures["pickup_p99_ms"] = percentiles_ms(got)


def run_kill(ctx: Context) -> tuple[dict[str, Any], dict[str, str]]:
    """The kill scenario, once (see the module's docstring)."""
    o = ctx.options
    index = 0
    driver(ctx, "setup", timeout_s=120)
    with deployment(ctx) as workers:
        job = driver(ctx, "long", f"--index={index}", f"--seconds={o.kill_job_s}", timeout_s=60)[
            "job"
        ]
        first = ctx.receiver.wait_for(index, nth=1, timeout_s=START_BOUND_S)
        if first is None:
            _check_alive(workers)
            return {}, {"kill": f"the long job did not start within {START_BOUND_S:g} s"}
        victim = next((w for w in workers if first.pid in process_tree(w.pid)), None)
        if victim is None:
            return {}, {"kill": f"the long job ran in pid {first.pid}, not in a worker"}
        pause = first.at + o.kill_at_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # the scenario: the worker dies this far into the job
        killed_at = time.monotonic()
        _signal_group(victim, signal.SIGKILL)
        again = ctx.receiver.wait_for(index, nth=2, timeout_s=o.recovery_wait_s)
        figures: dict[str, Any] = {"killed_after_s": killed_at - first.at}
        if again is None:
            figures["recovery_s"] = None
            figures["recovery"] = f"not run again within {o.recovery_wait_s:g} s"
        else:
            figures["recovery_s"] = again.at - killed_at
            done = ctx.receiver.wait_done(index, timeout_s=o.kill_job_s + 30)
            figures["finished"] = done is not None
            if done is not None:
                time.sleep(o.settle_s)  # its outcome is committed just after it returns
    answer = driver(ctx, "outcome", f"--job={job}", timeout_s=60)
    figures["committed"] = answer.get("committed")
    figures["outcome"] = answer.get("detail")
    return figures, {}
