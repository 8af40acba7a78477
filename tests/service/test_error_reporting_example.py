"""The error-reporting example (docs/examples/error_reporting.py) runs as written with a
fake in place of `sentry_sdk`: each failed attempt is captured with its exception (a
warning while retries remain, an error for the last), a timeout as a message, and a dead
job once more, grouped by task."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import taskyard
from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.testing import TestRunner
from tests.factories import enqueue
from tests.service.stuck import stuck_worker

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "error_reporting.py"


class FakeSentry:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def capture_exception(self, error: BaseException, **scope: Any) -> str:
        self.events.append({"exception": error, **scope})
        return "event-id"

    def capture_message(self, message: str, **scope: Any) -> str:
        self.events.append({"message": message, **scope})
        return "event-id"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("error_reporting_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_failed_attempts_and_dead_jobs_are_reported(example: ModuleType) -> None:
    sentry = FakeSentry()
    app = taskyard.App("memory://")
    app.add_hook(example.ErrorReporting(sentry))

    @app.task(name="invoices.send", max_attempts=2, backoff={"base_seconds": 1, "jitter": "none"})
    def send(invoice_id: int) -> None:
        raise ConnectionError(f"mail server down for {invoice_id}")

    @app.task(name="invoices.render")
    def render() -> str:
        return "ok"

    with TestRunner(app) as runner:
        job = send.enqueue(invoice_id=7)
        render.enqueue()
        runner.drain()
        assert runner.get(job).state is taskyard.JobState.DEAD
    first, last, dead = sentry.events
    assert isinstance(first["exception"], ConnectionError) and first["level"] == "warning"
    assert first["tags"]["taskyard.attempt"] == "1"
    assert first["tags"]["taskyard.job_id"] == str(job.id)
    assert isinstance(last["exception"], ConnectionError) and last["level"] == "error"
    assert dead["message"] == (
        f"invoices.send job {job.id} is dead after 2 attempt(s): "
        "ConnectionError: mail server down for 7"
    )
    assert dead["fingerprint"] == ["taskyard-dead", "invoices.send"]


def test_a_timeout_is_reported_as_a_message(example: ModuleType) -> None:
    sentry = FakeSentry()
    hooks = taskyard.App("memory://").hooks
    hooks.add(example.ErrorReporting(sentry))
    clock = ManualClock()
    store = InMemoryJobStore(clock=clock)
    worker = stuck_worker(store, clock, hooks)
    enqueue(store, timeout_s=2.0)
    worker.tick()
    clock.advance(3)
    worker.tick()
    [event] = sentry.events
    assert event["message"] == (
        "work attempt 1 failed: timeout: the attempt ran past its timeout of 2 s"
    )
    assert event["level"] == "warning" and event["tags"]["taskyard.ending"] == "timeout"
