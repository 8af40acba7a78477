"""`taskyard standalone --app` runs the app's hooks: a job submitted over HTTP with a W3C
`traceparent` runs in an attempt whose span (`taskyard.otel`) is a child of the caller's
span, in the caller's trace."""

from __future__ import annotations

import json
import urllib.request

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import taskyard
import taskyard.otel
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.standalone import Standalone
from tests.eventually import eventually

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


def test_a_job_submitted_with_a_traceparent_runs_in_the_callers_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = taskyard.App("memory://")
    taskyard.otel.instrument(app, tracer_provider=provider)

    @app.task(name="traced.echo")
    def echo(word: str) -> str:
        return word

    settings = Settings(database_url="memory://", port=0, concurrency=1, poll_interval_s=0.1)
    system = Standalone(settings, app=app).start()
    try:
        request = urllib.request.Request(
            f"{system.url}/v1/jobs",
            data=json.dumps({"task": "traced.echo", "args": {"word": "hi"}}).encode(),
            headers={
                "Content-Type": "application/json",
                "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 201
        eventually(
            lambda: any(s.name == "run traced.echo" for s in exporter.get_finished_spans()),
            timeout_s=20,
            what="the attempt's span ended",
        )
    finally:
        system.stop()
        provider.shutdown()
    [run] = [s for s in exporter.get_finished_spans() if s.name == "run traced.echo"]
    assert f"{run.context.trace_id:032x}" == TRACE_ID
    assert run.parent is not None and f"{run.parent.span_id:016x}" == CALLER_SPAN_ID
    assert run.attributes is not None and run.attributes["taskyard.ending"] == "succeeded"
