"""The simulation's lifecycle hook (`taskyard.domain.hooks`): every worker and client runs
the production `Hooks` with one `SimHook`, which checks what the hooks are promised, gives
each library enqueue a trace context, and misbehaves: it raises when the `hook.fail` site
fires, and a worker's also 5 % of the time from a stream of its own, so that every run
shows a hook's error changes no outcome (the domain logs it and goes on, the job unchanged;
the other invariants judge the jobs as always).

Invariant `hooks_balanced`, while running: each attempt a worker's hooks heard start ends
for them once, none ends that did not start, and only a failure or a timeout is told as a
failure; at rest (`open_attempts`), every start has ended, but in a worker that crashed
(its memory is gone with it: each incarnation has a hook of its own).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from random import Random
from uuid import UUID

from taskyard.domain.hooks import AttemptEnd, Ending, Hook, TraceContext
from taskyard.domain.model import ErrorInfo, Job

HOOKS_BALANCED = "hooks_balanced"
FAIL_P = 0.05
"""How often a call of a worker's hook raises of its own accord (besides `hook.fail`)."""
FAILURE_ENDINGS = frozenset({Ending.FAILED, Ending.TIMEOUT})
"""The endings `attempt_failed` may be told of: the checker's own statement of the promise
(`domain.hooks.FAILURES` is what it checks, so it cannot be the judge)."""

Broken = Callable[[str, str, UUID | None], None]
"""Records a broken promise: who heard it, what, about which job."""


class HookFailure(RuntimeError):
    """What a hook raises when the `hook.fail` site fires (or its own draw says so)."""


class SimHook(Hook):
    def __init__(
        self,
        *,
        who: str,
        fire: Callable[[str, str], bool],
        broken: Broken,
        seen: Counter[str],
        rng: Random | None = None,
    ) -> None:
        self._who = who
        self._fire = fire
        self._broken = broken
        self._seen = seen
        self._rng = rng
        """A worker's hook also fails `FAIL_P` of the time, drawn from this stream."""
        self.started: Counter[tuple[UUID, int]] = Counter()
        self.ended: Counter[tuple[UUID, int]] = Counter()
        self._traces = 0

    def _maybe_fail(self, method: str) -> None:
        drawn = self._rng is not None and self._rng.random() < FAIL_P
        if self._fire("hook.fail", self._who) or drawn:
            raise HookFailure(f"the {method} hook failed")

    def attempt_started(self, job: Job) -> None:
        key = (job.id, job.attempt)
        self.started[key] += 1
        if self.started[key] > 1:
            self._broken(self._who, f"attempt #{job.attempt} of {job.id} started twice", job.id)
        self._maybe_fail("attempt_started")

    def attempt_ended(self, end: AttemptEnd) -> None:
        key = (end.job.id, end.job.attempt)
        self.ended[key] += 1
        if key not in self.started or self.ended[key] > 1:
            self._broken(
                self._who,
                f"attempt #{end.job.attempt} of {end.job.id} ended ({end.ending.value}) "
                f"{'again' if self.ended[key] > 1 else 'unstarted'}",
                end.job.id,
            )
        self._seen[f"hook_{end.ending.value}"] += 1
        self._maybe_fail("attempt_ended")

    def attempt_failed(self, end: AttemptEnd) -> None:
        if end.ending not in FAILURE_ENDINGS:
            self._broken(
                self._who,
                f"attempt #{end.job.attempt} of {end.job.id} told as a failure, "
                f"ended {end.ending.value}",
                end.job.id,
            )
        self._maybe_fail("attempt_failed")

    def job_dead(self, job: Job, error: ErrorInfo | None) -> None:
        self._seen["hook_job_dead"] += 1
        self._maybe_fail("job_dead")

    def enqueue(self, tasks: Sequence[str]) -> contextlib.AbstractContextManager[TraceContext]:
        return self._tracing(tasks)

    @contextlib.contextmanager
    def _tracing(self, tasks: Sequence[str]) -> Iterator[TraceContext]:
        self._maybe_fail("enqueue")
        self._traces += 1
        trace_id = f"{len(tasks):08x}{self._traces:024x}"
        yield {"traceparent": f"00-{trace_id}-{self._traces:016x}-01", "tracestate": "sim=1"}
        self._maybe_fail("enqueue's exit")

    def open_attempts(self) -> list[tuple[UUID, int]]:
        """The attempts started and not (yet) ended."""
        return sorted(key for key in self.started if key not in self.ended)
