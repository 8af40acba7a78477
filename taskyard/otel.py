"""OpenTelemetry tracing for taskyard, as a lifecycle hook (`pip install 'taskyard[otel]'`).

    import taskyard
    import taskyard.otel

    app = taskyard.App()
    taskyard.otel.instrument(app)   # the global tracer provider and propagator

Each enqueue through the app is a span (`enqueue <task>`, kind PRODUCER) in whatever trace
is current, say the web request that enqueued; its trace context (W3C `traceparent`,
`tracestate`) is stored in the jobs (`Job.trace_context`). Each attempt in a worker that
loads the app is a span (`run <task>`, kind CONSUMER) whose parent is that enqueue span,
whichever process, machine or day it runs in: so a request's trace shows the jobs it
started and how each attempt ended. A job submitted through the REST API with a
`traceparent` header has its attempts in that trace the same way.

An attempt's span starts when the worker hands the job to its executor and ends when
the worker decides its outcome (`taskyard/domain/hooks.py`): a failure or timeout sets
the status to ERROR and records the exception (or the error's type and message where the
exception stayed in another process); its attributes name the job, the attempt, the
queue and the ending. A handler that makes spans of its own puts them under the
attempt's with `taskyard.otel.attempt_span(ctx)`.

Only `opentelemetry-api` is needed; the SDK and the exporter are the application's own.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

import taskyard
from taskyard.domain.context import JobContext
from taskyard.domain.hooks import FAILURES, AttemptEnd, Hook, TraceContext
from taskyard.domain.model import Job

if TYPE_CHECKING:
    from taskyard.entrypoints.library import App

SYSTEM = "taskyard"
"""The value of `messaging.system` on every span."""


class TracingHook(Hook):
    """The hook `instrument` adds: a span per enqueue and per attempt."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(
            "taskyard", taskyard.__version__, tracer_provider=tracer_provider
        )
        self._propagator = propagator
        self._lock = threading.Lock()
        self._spans: dict[tuple[UUID, int], Span] = {}
        """The open span of each running attempt, by job id and attempt number."""

    def _textmap(self) -> TextMapPropagator:
        return self._propagator if self._propagator is not None else propagate.get_global_textmap()

    @contextlib.contextmanager
    def enqueue(self, tasks: Sequence[str]) -> Iterator[TraceContext | None]:
        names = sorted(set(tasks))
        with self._tracer.start_as_current_span(
            f"enqueue {names[0]}" if len(names) == 1 else "enqueue",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "publish",
                "messaging.batch.message_count": len(tasks),
                "taskyard.tasks": names,
            },
        ):
            carrier: dict[str, str] = {}
            self._textmap().inject(carrier)
            yield carrier

    def attempt_started(self, job: Job) -> None:
        parent = self._textmap().extract(dict(job.trace_context or {}))
        span = self._tracer.start_span(
            f"run {job.task}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.destination.name": job.queue,
                "messaging.message.id": str(job.id),
                "taskyard.task": job.task,
                "taskyard.attempt": job.attempt,
                "taskyard.worker": job.lease.worker if job.lease else "",
            },
        )
        with self._lock:
            self._spans[(job.id, job.attempt)] = span

    def attempt_ended(self, end: AttemptEnd) -> None:
        with self._lock:
            span = self._spans.pop((end.job.id, end.job.attempt), None)
        if span is None:
            return
        span.set_attribute("taskyard.ending", end.ending.value)
        if end.ending in FAILURES:
            span.set_attribute("taskyard.retry_expected", end.retry_expected)
            if end.exception is not None:
                span.record_exception(end.exception)
            elif end.error is not None:
                span.add_event(
                    "exception",
                    {"exception.type": end.error.type, "exception.message": end.error.message},
                )
            message = f"{end.error.type}: {end.error.message}" if end.error else end.ending.value
            span.set_status(Status(StatusCode.ERROR, message))
        span.end()

    def span_of(self, job: Job) -> Span | None:
        """The open span of the job's current attempt, if this hook started it."""
        with self._lock:
            return self._spans.get((job.id, job.attempt))


_hooks: weakref.WeakSet[TracingHook] = weakref.WeakSet()


def instrument(
    app: App,
    *,
    tracer_provider: TracerProvider | None = None,
    propagator: TextMapPropagator | None = None,
) -> TracingHook:
    """Trace the app's enqueues and the attempts of every worker that loads it, with
    `tracer_provider` (else the global one) and `propagator` (else the global one: W3C
    Trace Context and Baggage by default)."""
    hook = TracingHook(tracer_provider=tracer_provider, propagator=propagator)
    app.add_hook(hook)
    _hooks.add(hook)
    return hook


@contextlib.contextmanager
def attempt_span(ctx: JobContext) -> Iterator[Span | None]:
    """Inside a handler: make its attempt's span current, so the spans the handler makes
    are its children (in the worker's own process; a child process has none)."""
    span = next((s for h in list(_hooks) if (s := h.span_of(ctx.job)) is not None), None)
    if span is None:
        yield None
        return
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)


__all__ = ["TracingHook", "attempt_span", "instrument"]
