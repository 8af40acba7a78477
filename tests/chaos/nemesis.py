"""The nemesis: a seeded schedule of faults, and the thread that inflicts them on a cluster.

The schedule is a pure function of the seed (`plan_faults`): which fault comes next, on
which worker slot, how long a pause or a Redis outage lasts, and the gap before it. Faults
come in rounds; each round is every kind once, in a shuffled order, so that even a short
run meets every kind. The same seed gives the same schedule; the real timing, and so what
each fault happens to hit, varies from run to run.

Faults are inflicted one at a time; each ends (a killed process restarted and up, a paused
worker resumed, Redis back, a new leader elected) before the gap to the next begins. One
rule keeps the wait after a worker's death measurable against its bound (lease TTL +
reaper interval): the leading scheduler (the reaper) is not killed until the lease of the
last worker that died or paused has had time to expire and be reaped.
"""

from __future__ import annotations

import enum
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

import attrs


class FaultKind(enum.StrEnum):
    KILL_WORKER = "kill_worker"
    """SIGKILL a worker, then start a new one in its place."""
    PAUSE_WORKER = "pause_worker"
    """SIGSTOP a worker for longer than its lease, then SIGCONT it."""
    KILL_LEADER = "kill_leader"
    """SIGKILL the leading scheduler, start a new one, wait until a scheduler leads."""
    RESTART_REDIS = "restart_redis"
    """Stop Redis (it keeps nothing), wait, start it again on the same port."""
    FLUSH_REDIS = "flush_redis"
    """FLUSHALL the (throwaway) Redis."""
    TERMINATE_BACKENDS = "terminate_backends"
    """`pg_terminate_backend` every client backend of the test's database but the nemesis's."""


WORKER_FAULTS = frozenset({FaultKind.KILL_WORKER, FaultKind.PAUSE_WORKER})

GAP_MIN_S = 1.5
GAP_MAX_S = 3.5
"""The pause between the end of one fault and the start of the next ("every few seconds")."""
PAUSE_PAST_LEASE_S = (0.5, 2.0)
"""A paused worker stays stopped for its lease TTL plus this much (drawn uniformly)."""
REDIS_DOWN_S = (0.2, 2.0)


@attrs.frozen(kw_only=True)
class PlannedFault:
    number: int
    """1, 2, 3, ... in the order they are inflicted."""
    kind: FaultKind
    gap_s: float
    """How long the nemesis waits after the previous fault ended."""
    worker: int
    """The worker slot a worker fault strikes (drawn for every fault, used by some)."""
    hold_s: float
    """How long a paused worker stays stopped, or Redis stays down (drawn for every fault)."""

    def describe(self) -> str:
        target = f" worker slot {self.worker}" if self.kind in WORKER_FAULTS else ""
        hold = ""
        if self.kind in (FaultKind.PAUSE_WORKER, FaultKind.RESTART_REDIS):
            hold = f" for {self.hold_s:.2f} s"
        return f"#{self.number} after {self.gap_s:.2f} s: {self.kind.value}{target}{hold}"


def plan_faults(seed: int, *, workers: int, lease_ttl_s: float) -> Iterator[PlannedFault]:
    """The endless schedule of faults for `seed` (take as many as the run needs)."""
    assert workers >= 1 and lease_ttl_s > 0
    rng = random.Random(f"taskyard-chaos:{seed}:faults")
    number = 0
    while True:
        kinds = sorted(FaultKind)
        rng.shuffle(kinds)
        for kind in kinds:
            number += 1
            gap_s = rng.uniform(GAP_MIN_S, GAP_MAX_S)
            worker = rng.randrange(workers)
            if kind is FaultKind.PAUSE_WORKER:
                hold_s = lease_ttl_s + rng.uniform(*PAUSE_PAST_LEASE_S)
            else:
                hold_s = rng.uniform(*REDIS_DOWN_S)
            yield PlannedFault(number=number, kind=kind, gap_s=gap_s, worker=worker, hold_s=hold_s)


@attrs.frozen(kw_only=True)
class FaultRecord:
    """A fault as it was inflicted."""

    planned: PlannedFault
    at: datetime
    """Store time (PostgreSQL's clock) just before it struck."""
    target: str
    """The process id of the worker or scheduler it struck; `redis`; `postgres`."""
    detail: str = ""
    count: int = 0
    """Backends terminated (`terminate_backends`)."""
    took_s: float = 0.0
    """From the strike until the fault had ended (restarted, resumed, re-elected)."""

    @property
    def kind(self) -> FaultKind:
        return self.planned.kind


class Target(Protocol):
    """What the nemesis needs of the cluster under test (`tests/chaos/cluster.py`)."""

    def store_now(self) -> datetime: ...

    def worker_id(self, slot: int) -> str: ...

    def kill_worker(self, slot: int) -> None:
        """SIGKILL the worker in `slot` and start a new one there (up when this returns)."""
        ...

    def signal_worker(self, slot: int, signum: int) -> None: ...

    def wait_leader(self) -> str:
        """The id of the leading scheduler (waits, with a deadline, for one to lead)."""
        ...

    def kill_scheduler(self, scheduler_id: str) -> None:
        """SIGKILL that scheduler and start a new one in its place."""
        ...

    def wait_leader_other_than(self, scheduler_id: str) -> str: ...

    def stop_redis(self) -> None: ...

    def start_redis(self) -> None: ...

    def flush_redis(self) -> None: ...

    def terminate_backends(self) -> int:
        """Terminate the database's client backends but the nemesis's own; how many."""
        ...


class Nemesis:
    """Inflicts `schedule` on `target` from a thread of its own until `stop()`."""

    def __init__(
        self,
        target: Target,
        schedule: Iterator[PlannedFault],
        *,
        worker_recovery_s: float,
        say: Callable[[str], None] = print,
    ) -> None:
        self.target = target
        self.schedule = schedule
        self.worker_recovery_s = worker_recovery_s
        """How long after a worker fault the reaper must stay alive (lease TTL + reaper
        interval + margin): no leader is killed sooner."""
        self.say = say
        self.records: list[FaultRecord] = []
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-nemesis", daemon=True)
        self._last_worker_fault = -float("inf")

    def start(self) -> Nemesis:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> list[FaultRecord]:
        """Stop after the fault in progress has ended; raise what the thread raised."""
        self._stopping.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the nemesis did not stop within {timeout_s:g} s"
        if self._error is not None:
            raise self._error
        return list(self.records)

    def kinds_struck(self) -> set[FaultKind]:
        """The kinds inflicted so far (raises what the nemesis's thread raised, if it did)."""
        if self._error is not None:
            raise self._error
        return {record.kind for record in list(self.records)}

    def _run(self) -> None:
        try:
            for planned in self.schedule:
                if self._stopping.wait(planned.gap_s):
                    return
                if planned.kind is FaultKind.KILL_LEADER:
                    quiet_s = self._last_worker_fault + self.worker_recovery_s - time.monotonic()
                    if quiet_s > 0 and self._stopping.wait(quiet_s):
                        return
                record = self._inflict(planned)
                self.records.append(record)
                self.say(
                    f"chaos fault {planned.describe()} -> {record.target}"
                    f"{' (' + record.detail + ')' if record.detail else ''}, "
                    f"over in {record.took_s:.2f} s"
                )
        except BaseException as exc:  # surfaced by stop(), in the test's thread
            self._error = exc

    def _inflict(self, planned: PlannedFault) -> FaultRecord:
        target = self.target
        kind = planned.kind
        if kind in WORKER_FAULTS:
            self._last_worker_fault = time.monotonic()
        began = time.monotonic()
        if kind is FaultKind.KILL_WORKER:
            victim = target.worker_id(planned.worker)
            at = target.store_now()
            target.kill_worker(planned.worker)
            return self._record(planned, at, victim, began)
        if kind is FaultKind.PAUSE_WORKER:
            victim = target.worker_id(planned.worker)
            at = target.store_now()
            target.signal_worker(planned.worker, signal.SIGSTOP)
            try:
                # The pause itself is the fault: it lasts its planned time, stop or not.
                time.sleep(planned.hold_s)
            finally:
                target.signal_worker(planned.worker, signal.SIGCONT)
            return self._record(planned, at, victim, began)
        if kind is FaultKind.KILL_LEADER:
            leader = target.wait_leader()
            at = target.store_now()
            target.kill_scheduler(leader)
            successor = target.wait_leader_other_than(leader)
            return self._record(
                planned, at, leader, began, detail=f"{successor} leads after {_since(began):.2f} s"
            )
        if kind is FaultKind.RESTART_REDIS:
            at = target.store_now()
            target.stop_redis()
            try:
                time.sleep(planned.hold_s)
            finally:
                target.start_redis()
            return self._record(planned, at, "redis", began)
        if kind is FaultKind.FLUSH_REDIS:
            at = target.store_now()
            target.flush_redis()
            return self._record(planned, at, "redis", began)
        assert kind is FaultKind.TERMINATE_BACKENDS, kind
        at = target.store_now()
        count = target.terminate_backends()
        return self._record(planned, at, "postgres", began, detail=f"{count} backends", count=count)

    @staticmethod
    def _record(
        planned: PlannedFault,
        at: datetime,
        target: str,
        began: float,
        detail: str = "",
        count: int = 0,
    ) -> FaultRecord:
        return FaultRecord(
            planned=planned, at=at, target=target, detail=detail, count=count, took_s=_since(began)
        )


def _since(began: float) -> float:
    return time.monotonic() - began
