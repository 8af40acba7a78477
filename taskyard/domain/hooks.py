"""Lifecycle hooks: code of the user's that runs around each enqueue and each attempt.

A hook is an object with any of the methods of `Hook` (subclass it and override what you
need); `App.add_hook(hook)` adds it, and every worker that loads the app calls it:

    class ReportErrors(taskyard.Hook):
        def attempt_failed(self, end: taskyard.AttemptEnd) -> None:
            sentry_sdk.capture_exception(end.exception)

        def job_dead(self, job: taskyard.Job, error: taskyard.ErrorInfo | None) -> None:
            sentry_sdk.capture_message(f"{job.task} {job.id} is dead")

    app.add_hook(ReportErrors())

Where each runs. The attempt hooks run on the worker's own path, never inside the handler
call: `attempt_started` just before the worker hands a claimed job to its executor, and
`attempt_ended` (then `attempt_failed`) where the worker turns the handler's outcome
into its report, on the worker's control thread. So they run alike for every executor
(threads, an event loop, a child process), and also for an attempt whose handler never
reported: one timed out, one whose lease was lost, one handed back at shutdown. Every
attempt that got `attempt_started` gets exactly one `attempt_ended`. `job_dead` runs once
the store has answered that this worker's report ended the job `dead`. They run while the
worker holds its lock: a hook must be quick (hand slow work to a queue of its own).

A hook's error never changes a job. Whatever a hook raises (any `Exception`) is logged
with its traceback (logger `taskyard.hooks`) and ignored: the attempt runs, its outcome is
the handler's, and the other hooks still run. Nothing a hook returns is used, but for
`enqueue`'s trace context.

`enqueue` runs on the caller's thread around an enqueue of the Python library (`App`):
it is a context manager whose value is a trace context (W3C `traceparent` and friends,
as text) stored in the jobs enqueued inside it; `taskyard.otel` uses it. An error in
entering or leaving it is ignored as any other, and it can never swallow the enqueue's
own error.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from taskyard.domain.model import ErrorInfo, Job, JsonValue

log = logging.getLogger("taskyard.hooks")

TraceContext = Mapping[str, str]
"""A trace context as it travels in a job: header names (`traceparent`, `tracestate`)
to their values, as W3C Trace Context propagation writes them."""


class Ending(enum.StrEnum):
    """How an attempt ended, as the worker that ran it saw it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    """The store took the lease away (the job runs elsewhere); the handler may run on."""
    HANDED_BACK = "handed_back"
    """The worker stopped and gave the job back to run elsewhere at once."""


FAILURES = frozenset({Ending.FAILED, Ending.TIMEOUT})
"""Endings that `attempt_failed` hears of."""


@attrs.frozen(kw_only=True)
class AttemptEnd:
    """What `attempt_ended` and `attempt_failed` are told."""

    job: Job
    """The job as claimed for this attempt (`job.attempt` is its number)."""
    ending: Ending
    result: JsonValue = None
    error: ErrorInfo | None = None
    exception: BaseException | None = attrs.field(default=None, eq=False)
    """The handler's exception, where the executor had it in this process (threads, an
    event loop, inline runs); None otherwise (a child process, a timeout)."""
    retryable: bool = True
    """False for a failure that is not retried whatever the budget (`PermanentFailure`)."""
    duration_s: float = 0.0
    """From `attempt_started` to here, by the worker's clock."""

    @property
    def retry_expected(self) -> bool:
        """A failure that leaves attempts in the budget and may be retried (the store has
        the last word: a cancel request, say, ends the job instead)."""
        return (
            self.ending in FAILURES and self.retryable and self.job.attempt < self.job.attempt_limit
        )


class Hook:
    """The hook methods, each doing nothing: override those you need."""

    def enqueue(
        self, tasks: Sequence[str]
    ) -> contextlib.AbstractContextManager[TraceContext | None]:
        """Around an enqueue of jobs of `tasks` (one name per job) through the library;
        its value is a trace context to store in them, or None."""
        return contextlib.nullcontext()

    def attempt_started(self, job: Job) -> None:
        """A claimed job's handler is about to start (`job.attempt`, `job.lease` set)."""

    def attempt_ended(self, end: AttemptEnd) -> None:
        """The attempt's outcome is decided (it is the report the worker will send)."""

    def attempt_failed(self, end: AttemptEnd) -> None:
        """The attempt failed or timed out (after `attempt_ended`)."""

    def job_dead(self, job: Job, error: ErrorInfo | None) -> None:
        """This worker's report ended the job `dead` (no attempt left, or not retryable);
        `job` is as claimed for the last attempt, `error` the failure that ended it."""


class Hooks:
    """An app's hooks, called in the order they were added, each error logged and ignored."""

    def __init__(self, hooks: Sequence[Hook] = ()) -> None:
        self._hooks: list[Hook] = list(hooks)

    def add(self, hook: Hook) -> None:
        self._hooks.append(hook)

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def _each(self, method: str, *args: Any) -> None:
        for hook in self._hooks:
            call = getattr(hook, method, None)
            if call is None:
                continue
            try:
                call(*args)
            except Exception:
                log.exception(
                    "a hook failed; ignored", extra={"hook": type(hook).__name__, "call": method}
                )

    def attempt_started(self, job: Job) -> None:
        self._each("attempt_started", job)

    def attempt_ended(self, end: AttemptEnd) -> None:
        self._each("attempt_ended", end)
        if end.ending in FAILURES:
            self._each("attempt_failed", end)

    def job_dead(self, job: Job, error: ErrorInfo | None) -> None:
        self._each("job_dead", job, error)

    @contextlib.contextmanager
    def enqueue(self, tasks: Sequence[str]) -> Iterator[dict[str, str] | None]:
        """Every hook's `enqueue` around the block; the value is their trace contexts
        merged (the first hook's value of a key wins), or None when none gave one. The
        block's own exception always goes through, whatever a hook's exit answers."""
        entered: list[tuple[Hook, contextlib.AbstractContextManager[TraceContext | None]]] = []
        carrier: dict[str, str] = {}
        for hook in self._hooks:
            try:
                manager = hook.enqueue(tasks)
                value = manager.__enter__()
            except Exception:
                log.exception(
                    "a hook failed; ignored", extra={"hook": type(hook).__name__, "call": "enqueue"}
                )
                continue
            entered.append((hook, manager))
            for key, text in (value or {}).items():
                carrier.setdefault(key, text)
        error: BaseException | None = None
        try:
            yield carrier or None
        except BaseException as exc:
            error = exc
            raise
        finally:
            for hook, manager in reversed(entered):
                try:
                    if error is None:
                        manager.__exit__(None, None, None)
                    else:
                        manager.__exit__(type(error), error, error.__traceback__)
                except Exception:
                    log.exception(
                        "a hook failed; ignored",
                        extra={"hook": type(hook).__name__, "call": "enqueue"},
                    )
