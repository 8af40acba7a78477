"""`taskyard.otel`: a span per enqueue and per attempt, the attempt's a child of the
enqueue's, itself a child of whatever span was current (the request), recorded by the
OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import taskyard
import taskyard.otel
from taskyard.testing import TestRunner


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def _named(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def test_each_attempt_is_a_child_of_the_enqueue_in_the_requests_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = taskyard.App("memory://")
    taskyard.otel.instrument(app, tracer_provider=provider)

    @app.task(name="bill", max_attempts=2, backoff={"base_seconds": 1, "jitter": "none"})
    def bill(ctx: taskyard.JobContext, amount: int) -> int:
        with taskyard.otel.attempt_span(ctx):
            provider.get_tracer("shop").start_span("gateway call").end()
        if ctx.attempt == 1:
            raise ConnectionError("the gateway hung up")
        return amount

    tracer = provider.get_tracer("shop")
    with TestRunner(app) as runner:
        with tracer.start_as_current_span("POST /orders") as request:
            job = bill.enqueue(amount=5)
        untraced_job = bill.enqueue(amount=6)
        runner.drain()
        assert runner.get(job).state is taskyard.JobState.SUCCEEDED
        assert runner.get(untraced_job).trace_context is not None
    spans = _named(exporter.get_finished_spans())
    request_id = request.get_span_context()
    [enqueue, untraced_enqueue] = spans["enqueue bill"]
    assert enqueue.parent is not None and enqueue.parent.span_id == request_id.span_id
    assert enqueue.kind is SpanKind.PRODUCER
    assert untraced_enqueue.parent is None, "no request: the enqueue starts a trace"
    runs = [s for s in spans["run bill"] if s.context.trace_id == request_id.trace_id]
    assert [s.attributes["taskyard.attempt"] for s in runs] == [1, 2]  # type: ignore[index]
    for run in runs:
        assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
        assert run.kind is SpanKind.CONSUMER
        assert run.attributes["messaging.message.id"] == str(job.id)  # type: ignore[index]
    failed, succeeded = runs
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert failed.events[0].attributes["exception.type"] == "ConnectionError"  # type: ignore[index]
    assert failed.attributes["taskyard.ending"] == "failed"  # type: ignore[index]
    assert succeeded.status.status_code is StatusCode.UNSET
    assert succeeded.attributes["taskyard.ending"] == "succeeded"  # type: ignore[index]
    gateway_parents = {s.parent.span_id for s in spans["gateway call"] if s.parent is not None}
    assert {r.context.span_id for r in runs} <= gateway_parents, "the handler's spans nest"
    untraced_runs = [
        s for s in spans["run bill"] if s.context.trace_id == untraced_enqueue.context.trace_id
    ]
    assert len(untraced_runs) == 2
