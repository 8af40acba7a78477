"""The trace context survives storage: a job enqueued in a request's trace by one app is
run by a worker of another system over the same SQLite file (handler threads), and its
attempt's span is a child of that enqueue, in the request's trace."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import taskyard
import taskyard.otel
from taskyard.entrypoints import config
from taskyard.entrypoints.bootstrap import bootstrap

DEADLINE_S = 20.0


def test_an_attempt_in_another_system_is_a_child_of_the_enqueue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'traced.db'}"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = taskyard.App(url, coordinator_url="memory://")
    taskyard.otel.instrument(app, tracer_provider=provider)

    @app.task(name="traced.add")
    def add(a: int, b: int) -> int:
        return a + b

    worker_side = bootstrap(config.Settings(database_url=url, redis_url="memory://"))
    runtime = worker_side.worker_runtime(
        worker_side.task_registry(app.tasks), worker_id="traced-worker", hooks=app.hooks
    )
    runtime.start()
    try:
        with provider.get_tracer("web").start_as_current_span("POST /sums") as request:
            job = add.enqueue(a=2, b=3)
        stored = worker_side.store.get(job.id)
        assert stored.trace_context is not None
        assert request.get_span_context().trace_id == int(
            stored.trace_context["traceparent"].split("-")[1], 16
        )
        done = app.wait(job, timeout=DEADLINE_S)
        assert done.result == 5
    finally:
        runtime.stop(grace_s=5.0)
        worker_side.close()
        app.close()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    enqueue, run = spans["enqueue traced.add"], spans["run traced.add"]
    assert run.context.trace_id == request.get_span_context().trace_id
    assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
    assert run.attributes is not None and run.attributes["taskyard.worker"] == "traced-worker"
    provider.shutdown()
