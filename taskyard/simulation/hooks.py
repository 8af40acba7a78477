"""The lifecycle hook every simulated worker runs (`domain/hooks.py`).

It checks what the worker tells its hooks, under every fault: an attempt starts once and
ends once, and nothing ends that did not start (invariant `hook_endings`, while running);
once the world is quiet, every attempt a live worker started has ended (`hook_balance`).
It also fails now and then (a `RuntimeError` from any method, drawn from its own stream),
so every run shows that a hook's error changes no outcome: the other invariants judge
the jobs as always.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from random import Random
from uuid import UUID

from taskyard.domain.hooks import AttemptEnd, Hook, Hooks, TraceContext
from taskyard.domain.model import ErrorInfo, Job
from taskyard.domain.submission import trace_context_of_headers
from taskyard.simulation.checker import Violation

HOOK_ENDINGS = "hook_endings"
FAIL_P = 0.05
"""How often a call of the simulated hook raises."""


class SimHook(Hook):
    """One per worker incarnation (a crash forgets what it heard, as the worker does)."""

    def __init__(
        self,
        *,
        label: str,
        rng: Random,
        now: Callable[[], datetime],
        violations: list[Violation],
    ) -> None:
        self.label = label
        self._rng = rng
        self._now = now
        self._violations = violations
        self.started: set[tuple[UUID, int]] = set()
        self.ended: set[tuple[UUID, int]] = set()
        self.failures = 0

    def _broken(self, job_id: UUID, message: str) -> None:
        self._violations.append(
            Violation(
                invariant=HOOK_ENDINGS,
                message=f"{self.label}: {message}",
                job_id=job_id,
                at=self._now(),
            )
        )

    def _maybe_fail(self) -> None:
        if self._rng.random() < FAIL_P:
            self.failures += 1
            raise RuntimeError("a simulated hook fails")

    def attempt_started(self, job: Job) -> None:
        key = (job.id, job.attempt)
        if key in self.started:
            self._broken(job.id, f"attempt {job.attempt} started twice")
        self.started.add(key)
        self._maybe_fail()

    def attempt_ended(self, end: AttemptEnd) -> None:
        key = (end.job.id, end.job.attempt)
        if key not in self.started:
            self._broken(end.job.id, f"attempt {end.job.attempt} ended, never started")
        elif key in self.ended:
            self._broken(end.job.id, f"attempt {end.job.attempt} ended twice")
        self.ended.add(key)
        self._maybe_fail()

    def attempt_failed(self, end: AttemptEnd) -> None:
        if end.ending.value not in ("failed", "timeout"):
            self._broken(end.job.id, f"told of a failure that ended {end.ending.value}")
        self._maybe_fail()

    def job_dead(self, job: Job, error: ErrorInfo | None) -> None:
        self._maybe_fail()

    def unended(self) -> list[tuple[UUID, int]]:
        """Attempts started and not ended, in order."""
        return sorted(self.started - self.ended)


# --- the clients' side: trace contexts in submissions -------------------------------------


def traceparent(rng: Random, *, malformed: bool = False) -> str:
    """A W3C traceparent drawn from `rng` (or one a receiver must ignore)."""
    trace_id = f"{rng.getrandbits(128) | 1:032x}"
    span_id = f"{rng.getrandbits(64) | 1:016x}"
    if malformed:
        return rng.choice([f"00-{trace_id}", f"ff-{trace_id}-{span_id}-01", "00-" + "0" * 49])
    return f"00-{trace_id}-{span_id}-01"


class Tracer(Hook):
    """A client's tracing hook, as `taskyard.otel`'s is to the library: it gives each
    enqueue a trace context, and fails to now and then (the enqueue goes on without)."""

    def __init__(self, rng: Random) -> None:
        self._rng = rng

    @contextlib.contextmanager
    def enqueue(self, tasks: Sequence[str]) -> Iterator[TraceContext | None]:
        if self._rng.random() < FAIL_P:
            raise RuntimeError("a simulated tracing hook fails")
        yield {"traceparent": traceparent(self._rng)}


def tracing(
    rng: Random, tasks: Sequence[str]
) -> contextlib.AbstractContextManager[TraceContext | None]:
    """The trace context a client's submission goes with: none, a tracing hook's (as the
    library's enqueue runs its hooks), or the API's `traceparent` header, malformed one
    time in five (ignored, as a receiver must)."""
    roll = rng.random()
    if roll < 1 / 3:
        return contextlib.nullcontext(None)
    if roll < 2 / 3:
        return Hooks([Tracer(rng)]).enqueue(tasks)
    header = traceparent(rng, malformed=rng.random() < 0.2)
    context, _ignored = trace_context_of_headers(header, "sim=1")
    return contextlib.nullcontext(context)
