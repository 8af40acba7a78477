"""What a handler sees (`JobContext`), what a task is (`TaskSpec`), and how a handler's
return or exception becomes a `HandlerResult`.

A handler is a plain function. It receives the job's args as keyword arguments and, by
name, the context: to the parameter annotated `JobContext` (whatever it is called, and
also as the text `"JobContext"` left by `from __future__ import annotations`), or else to
a first parameter named `ctx`::

    @app.task(queue="billing", max_attempts=5)
    def send_invoice(ctx: JobContext, invoice_id: int) -> dict[str, str]:
        if ctx.cancelled:
            raise Cancelled()
        ctx.checkpoint({"step": "rendered"})
        ...

An `async def` handler is awaited on the worker's event loop (`invoke_async`), in slots
of its own; its timeout and cancellation cancel its coroutine (`asyncio.CancelledError`
inside it), and it should not call the blocking `ctx.wait`.

A handler ends in one of four ways: it returns (the value is the job's `result`, and
must be JSON), it raises `PermanentFailure` (no retry: the job ends dead), it raises
`Cancelled` after seeing `ctx.cancelled`, or it raises anything else (retried while
attempts remain).

Whatever a handler hands back is made storable here, before any store sees it
(`taskyard.domain.storable`): a result that is not JSON fails the attempt as
`result_not_json`, one that is JSON but holds text no store can keep (NUL, a lone
surrogate) as `result_not_storable`, neither retried; an error's type, message and
traceback have such text escaped (`\x00`). Every executor runs handlers through `invoke`,
so the rule holds for threads, inline runs, the simulator and the built-in tasks alike.
"""

from __future__ import annotations

import enum
import inspect
import json
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from taskyard.domain.arguments import Parameters, parameters_of
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.errors import ValidationError
from taskyard.domain.model import ErrorInfo, Job, JsonValue, LeaseRef
from taskyard.domain.retry import RetryPolicy
from taskyard.domain.schedules import ScheduleSpec
from taskyard.domain.storable import escape_text, json_problems
from taskyard.domain.transitions import ReportKind

TRACEBACK_LEN_MAX = 16_384
MESSAGE_LEN_MAX = 2_000


class PermanentFailure(Exception):
    """Raise from a handler to fail the job without a retry."""


class Cancelled(Exception):
    """Raise from a handler when it stops because `ctx.cancelled` became true."""


class HandlerTimeout(Exception):
    """The attempt ran past the job's `timeout_seconds`."""


class Signal(Protocol):
    """A one-way flag a handler can wait on. `threading.Event` fits; so does `Flag`."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Flag:
    """A `Signal` without threads: `wait` never blocks (for inline and simulated runs)."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        return self._set


class CancelReason(enum.StrEnum):
    REQUESTED = "cancel_requested"
    LEASE_LOST = "lease_lost"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"


CheckpointSaver = Callable[[LeaseRef, JsonValue], None]


class JobContext:
    """Handed to a handler: who it is, where it left off, and whether to stop."""

    def __init__(self, job: Job, *, save: CheckpointSaver, signal: Signal | None = None) -> None:
        assert job.lease is not None, "a context is made for a claimed job"
        self.job = job
        self.ref = job.ref()
        self._save = save
        self._signal: Signal = signal if signal is not None else Flag()
        self._last_checkpoint: JsonValue = job.checkpoint
        self.cancel_reason: CancelReason | None = None
        self._on_abort: list[Callable[[], None]] = []

    @property
    def job_id(self) -> str:
        return str(self.job.id)

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def last_checkpoint(self) -> JsonValue:
        """The state saved by the last `checkpoint()` of this or an earlier attempt."""
        return self._last_checkpoint

    def checkpoint(self, state: JsonValue) -> None:
        """Save progress durably. Raises `StaleFence` if this attempt lost its lease, and
        `ValidationError` (saving nothing) for a state no store can hold."""
        problems = json_problems(state, "checkpoint")
        if problems:
            raise ValidationError(problems)
        self._save(self.ref, state)
        self._last_checkpoint = state

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled, its lease was lost, it timed out, or the worker
        is stopping: the handler should stop soon."""
        return self._signal.is_set()

    def raise_if_cancelled(self) -> None:
        if self._signal.is_set():
            raise Cancelled(self.cancel_reason.value if self.cancel_reason else "cancelled")

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on cancellation. True if cancelled."""
        return self._signal.wait(seconds)

    def abort(self, reason: CancelReason) -> None:
        """Called by the worker, never by the handler."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self._signal.set()
        for stop in list(self._on_abort):
            stop()

    def on_abort(self, stop: Callable[[], None]) -> None:
        """Have `stop` called when the worker aborts this attempt (at once if it already
        did): how an executor that can stop a handler by force (cancel its coroutine, kill
        its process) learns that it should. `stop` must not block; it may run twice."""
        self._on_abort.append(stop)
        if self._signal.is_set():
            stop()


Handler = Callable[..., Any]


CONTEXT_TYPE_NAME = "JobContext"


def _names_context(annotation: object) -> bool:
    """Whether a parameter's annotation is `JobContext`: the class itself, or its name as
    text (`"JobContext"`, `"taskyard.JobContext"`, as `from __future__ import annotations`
    leaves every annotation), read without evaluating anything."""
    if annotation is JobContext:
        return True
    if isinstance(annotation, str):
        return annotation.strip().strip("'\"").rsplit(".", 1)[-1] == CONTEXT_TYPE_NAME
    return False


def context_parameter(handler: Handler) -> str | None:
    """The name of the parameter a handler gets the context by: the first one annotated
    `JobContext` (whatever its name), else a first parameter named `ctx` (as before
    annotations counted). None when it takes no context. A positional-only parameter is
    never the context (the context is handed in by name)."""
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return None
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for param in named:
        if _names_context(param.annotation):
            return param.name
    first = params[0] if params else None
    if first is not None and first.name == "ctx" and first.kind is first.POSITIONAL_OR_KEYWORD:
        return "ctx"
    return None


def is_coroutine_handler(handler: Handler) -> bool:
    """An `async def` function (a `functools.partial` of one included)."""
    return inspect.iscoroutinefunction(handler)


@attrs.frozen(kw_only=True)
class TaskSpec:
    """A registered task and its per-task defaults (a submission may override each)."""

    name: str
    handler: Handler
    queue: str = "default"
    max_attempts: int = 3
    backoff: RetryPolicy = attrs.field(factory=RetryPolicy)
    timeout_s: float | None = None
    priority: int = 0
    context: str | None = attrs.field(
        default=attrs.Factory(lambda self: context_parameter(self.handler), takes_self=True)
    )
    """The name of the handler's `JobContext` parameter (None: it takes none)."""
    is_async: bool = attrs.field(
        default=attrs.Factory(lambda self: is_coroutine_handler(self.handler), takes_self=True)
    )
    """An `async def` handler: it runs on the worker's event loop, in slots of its own."""
    params: Parameters = attrs.field(
        default=attrs.Factory(
            lambda self: parameters_of(self.handler, context=self.context),
            takes_self=True,
        )
    )
    """What its handler takes: a job's args are checked against it at enqueue."""

    def info(self) -> TaskInfo:
        """Its defaults and parameters, as the task catalog holds them."""
        return TaskInfo(
            name=self.name,
            queue=self.queue,
            priority=self.priority,
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            timeout_s=self.timeout_s,
            params=self.params,
        )


class Registry:
    """Task name to `TaskSpec`: the `TaskRegistry` a worker claims for, and an app's tasks."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}
        self._schedules: dict[str, ScheduleSpec] = {}

    def add(self, spec: TaskSpec) -> None:
        self._tasks[spec.name] = spec

    def add_schedule(self, spec: ScheduleSpec) -> None:
        """A schedule declared in code (`App.periodic`): a worker syncs it into the store
        when it starts."""
        self._schedules[spec.name] = spec

    def schedules(self) -> list[ScheduleSpec]:
        return [self._schedules[name] for name in sorted(self._schedules)]

    def names(self) -> frozenset[str]:
        return frozenset(self._tasks)

    def get(self, name: str) -> TaskSpec | None:
        return self._tasks.get(name)


@attrs.frozen(kw_only=True)
class HandlerResult:
    """How one run of a handler ended, as the worker reports it."""

    ref: LeaseRef
    kind: ReportKind
    result: JsonValue = None
    error: ErrorInfo | None = None
    retryable: bool = True
    exception: BaseException | None = attrs.field(default=None, eq=False, repr=False)
    """The handler's exception, for the hooks (`domain/hooks.py`); never stored."""


def error_info(exc: BaseException, *, type_name: str | None = None) -> ErrorInfo:
    """How an exception is recorded: text a store cannot hold escaped, lengths bounded."""
    text = "".join(traceback.format_exception(exc))
    try:
        message = str(exc) or type(exc).__name__
    except Exception:  # a handler's exception whose __str__ itself fails
        message = f"<{type(exc).__name__} whose str() failed>"
    return ErrorInfo(
        type=escape_text(type_name or type(exc).__name__)[:MESSAGE_LEN_MAX],
        message=escape_text(message[:MESSAGE_LEN_MAX])[:MESSAGE_LEN_MAX],
        traceback=escape_text(text[-TRACEBACK_LEN_MAX:])[-TRACEBACK_LEN_MAX:],
    )


def invoke(spec: TaskSpec, job: Job, context: JobContext) -> HandlerResult:
    """Run the handler to its end and classify how it ended. Never raises (but for
    `KeyboardInterrupt`/`SystemExit`, which belong to the process)."""
    ref = context.ref
    try:
        kwargs = dict(job.args)
        if spec.context is not None:
            kwargs[spec.context] = context
        value = spec.handler(**kwargs)
    except Cancelled as exc:
        return HandlerResult(
            ref=ref,
            kind=ReportKind.CANCELLED,
            error=error_info(exc, type_name="cancelled"),
            exception=exc,
        )
    except HandlerTimeout as exc:
        return HandlerResult(
            ref=ref,
            kind=ReportKind.TIMEOUT,
            error=error_info(exc, type_name="timeout"),
            exception=exc,
        )
    except PermanentFailure as exc:
        return HandlerResult(
            ref=ref, kind=ReportKind.FAILED, error=error_info(exc), retryable=False, exception=exc
        )
    except Exception as exc:
        return HandlerResult(ref=ref, kind=ReportKind.FAILED, error=error_info(exc), exception=exc)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return HandlerResult(
            ref=ref,
            kind=ReportKind.FAILED,
            error=error_info(exc, type_name="result_not_json"),
            retryable=False,
        )
    problems = json_problems(value, "result")
    if problems:
        shown = "; ".join(f"{p.field}: {p.message}" for p in problems)
        return HandlerResult(
            ref=ref,
            kind=ReportKind.FAILED,
            error=ErrorInfo(
                type="result_not_storable",
                message=f"no store can hold this result: {shown}"[:MESSAGE_LEN_MAX],
            ),
            retryable=False,
        )
    return HandlerResult(ref=ref, kind=ReportKind.SUCCEEDED, result=value)


class _Settled:
    """A handler standing for one whose outcome is already known: it returns `value` or
    raises `error`, whatever it is called with (how an awaited outcome goes through the
    one classification, `invoke`)."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value = value
        self.error = error

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


async def invoke_async(spec: TaskSpec, job: Job, context: JobContext) -> HandlerResult:
    """`invoke` for an `async def` handler: awaits it on the caller's event loop, then
    classifies its return or exception exactly as `invoke` does. The loop's cancellation
    (how an executor stops a coroutine at its timeout) is not caught here: it propagates
    to the executor, which reports it with `stopped_result`."""
    try:
        kwargs = dict(job.args)
        if spec.context is not None:
            kwargs[spec.context] = context
        settled = _Settled(value=await spec.handler(**kwargs))
    except Exception as exc:
        settled = _Settled(error=exc)
    return invoke(attrs.evolve(spec, handler=settled), job, context)


def stopped_result(context: JobContext) -> HandlerResult:
    """The outcome of a handler its executor stopped by force after the worker aborted
    the attempt: a timeout when it ran past its limit, cancelled otherwise. The worker has
    usually decided the attempt already (a timeout, a lost lease): then this only hands
    the slot back."""
    reason = context.cancel_reason or CancelReason.REQUESTED
    kind = ReportKind.TIMEOUT if reason is CancelReason.TIMEOUT else ReportKind.CANCELLED
    error = ErrorInfo(type=kind.value, message=f"the handler was stopped: {reason.value}")
    return HandlerResult(ref=context.ref, kind=kind, error=error)
