"""The simulation's lifecycle hook (`taskyard.domain.hooks`): every worker and client runs
the production `Hooks` with one `SimHook`, which checks what the hooks are promised while
the world runs (every attempt a worker started ends for its hooks exactly once, and none
ends unstarted), gives each library enqueue a trace context, and misbehaves when the
`hook.fail` site fires (it raises): the domain must log that and go on, the job unchanged.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from uuid import UUID

from taskyard.domain.hooks import AttemptEnd, Hook, TraceContext
from taskyard.domain.model import ErrorInfo, Job

HOOKS_BALANCED = "hooks_balanced"
"""The invariant (checked while running): each attempt a worker's hooks heard start ends
for them once, and none ends that did not start; at rest, every start has ended (but in a
worker that crashed: its memory is gone)."""


class HookFailure(RuntimeError):
    """What a hook raises when the `hook.fail` site fires."""


class SimHook(Hook):
    def __init__(
        self,
        *,
        who: str,
        fire: Callable[[str, str], bool],
        broken: Callable[[str, str], None],
        seen: Counter[str],
    ) -> None:
        self._who = who
        self._fire = fire
        self._broken = broken
        self._seen = seen
        self.started: Counter[tuple[UUID, int]] = Counter()
        self.ended: Counter[tuple[UUID, int]] = Counter()
        self._traces = 0

    def _maybe_fail(self, method: str) -> None:
        if self._fire("hook.fail", self._who):
            raise HookFailure(f"the {method} hook failed")

    def attempt_started(self, job: Job) -> None:
        key = (job.id, job.attempt)
        self.started[key] += 1
        if self.started[key] > 1:
            self._broken(self._who, f"attempt #{job.attempt} of {job.id} started twice")
        self._maybe_fail("attempt_started")

    def attempt_ended(self, end: AttemptEnd) -> None:
        key = (end.job.id, end.job.attempt)
        self.ended[key] += 1
        if key not in self.started or self.ended[key] > 1:
            self._broken(
                self._who,
                f"attempt #{end.job.attempt} of {end.job.id} ended ({end.ending.value}) "
                f"{'again' if self.ended[key] > 1 else 'unstarted'}",
            )
        self._seen[f"hook_{end.ending.value}"] += 1
        self._maybe_fail("attempt_ended")

    def attempt_failed(self, end: AttemptEnd) -> None:
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
