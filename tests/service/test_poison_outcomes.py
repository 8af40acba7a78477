"""What a handler hands back is made storable before any store sees it, on every executor
path: a result no store can hold fails the attempt (`result_not_storable`, or
`result_not_json` for NaN), an error's text has NUL escaped, and the built-in tasks
escape the output they read."""

from __future__ import annotations

import http.server
import math
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.executors import ThreadExecutor, make_http_task, make_shell_task
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.context import HandlerResult, JobContext, TaskSpec, invoke
from taskyard.domain.errors import ValidationError
from taskyard.domain.model import JobState
from taskyard.domain.storable import text_problem
from taskyard.domain.transitions import ReportKind
from taskyard.entrypoints.library import App
from taskyard.testing import TestRunner
from tests import factories as f

DEADLINE_S = 10.0


def _context(store: InMemoryJobStore, task: str, args: dict[str, Any]) -> JobContext:
    f.enqueue(store, task=task, args=args)
    job = f.claim_one(store)
    return JobContext(job, save=store.checkpoint)


def _run(handler: Any, args: dict[str, Any] | None = None) -> HandlerResult:
    store = InMemoryJobStore(ManualClock())
    context = _context(store, "t", args or {})
    return invoke(TaskSpec(name="t", handler=handler), context.job, context)


def _no_unstorable_text(result: HandlerResult) -> None:
    assert result.error is not None
    for text in (result.error.type, result.error.message, result.error.traceback or ""):
        assert text_problem(text) is None, text


class Weird(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.mark.parametrize(
    ("returned", "error_type"),
    [
        ("a\x00b", "result_not_storable"),
        ({"body": ["\ud800"]}, "result_not_storable"),
        ({1: "int key"}, "result_not_storable"),
        ({"x": math.nan}, "result_not_json"),
        ({"x": {1, 2}}, "result_not_json"),
    ],
)
def test_a_result_no_store_can_hold_fails_the_attempt_for_good(
    returned: Any, error_type: str
) -> None:
    result = _run(lambda: returned)
    assert result.kind is ReportKind.FAILED and result.retryable is False
    assert result.error is not None and result.error.type == error_type
    assert result.result is None
    _no_unstorable_text(result)


def test_an_error_with_a_nul_is_escaped_and_still_retried() -> None:
    def handler() -> None:
        raise ValueError("bad\x00value \udc80")

    result = _run(handler)
    assert result.kind is ReportKind.FAILED and result.retryable is True
    assert result.error is not None
    assert result.error.message == "bad\\x00value \\udc80"
    _no_unstorable_text(result)

    def raise_weird() -> None:
        raise Weird

    weird = _run(raise_weird)
    assert weird.error is not None and "str() failed" in weird.error.message


def test_a_checkpoint_no_store_can_hold_is_refused_before_the_store() -> None:
    store = InMemoryJobStore(ManualClock())
    context = _context(store, "t", {})
    with pytest.raises(ValidationError) as refused:
        context.checkpoint({"step": "a\x00"})
    assert [e.field for e in refused.value.errors] == ["checkpoint.step"]
    assert store.get(context.job.id).checkpoint is None


def test_the_inline_runner_ends_a_poisoned_job_dead_and_runs_the_rest() -> None:
    app = App(include_builtins=False)

    @app.task("poison")
    def poison() -> str:
        return "body with a \x00"

    @app.task("fine")
    def fine() -> str:
        return "ok"

    with TestRunner(app) as runner:
        bad = app.enqueue("poison")
        good = app.enqueue("fine")
        runner.drain()
        assert runner.get(bad).state is JobState.DEAD
        assert runner.get(bad).last_error.type == "result_not_storable"  # type: ignore[union-attr]
        assert runner.get(good).state is JobState.SUCCEEDED


def test_the_thread_executor_applies_the_same_rule() -> None:
    store = InMemoryJobStore(ManualClock())
    context = _context(store, "t", {})
    done: list[HandlerResult] = []
    finished = threading.Event()

    class One:
        def names(self) -> frozenset[str]:
            return frozenset({"t"})

        def get(self, name: str) -> TaskSpec | None:
            return TaskSpec(name="t", handler=lambda: "\x00")

    def on_finished(result: HandlerResult) -> None:
        done.append(result)
        finished.set()

    executor = ThreadExecutor(One(), on_finished, threads=1)
    try:
        executor.start(context.job, context)
        assert finished.wait(DEADLINE_S), "the handler never finished"
    finally:
        executor.shutdown(wait=True)
    [result] = done
    assert result.error is not None and result.error.type == "result_not_storable"


@pytest.fixture
def nul_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"a\x00b\xff" if self.path == "/ok" else b"oops\x00"
            self.send_response(200 if self.path == "/ok" else 500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(DEADLINE_S)


def test_the_http_task_escapes_a_nul_in_what_it_read(nul_server: str) -> None:
    task = make_http_task(BuiltinPolicy(http_allowed_hosts=frozenset({nul_server})))
    spec = TaskSpec(name="http", handler=task)
    store = InMemoryJobStore(ManualClock())
    for path, kind in (("/ok", ReportKind.SUCCEEDED), ("/fail", ReportKind.FAILED)):
        context = _context(store, "http", {"url": f"http://{nul_server}{path}"})
        result = invoke(spec, context.job, context)
        assert result.kind is kind
        if kind is ReportKind.SUCCEEDED:
            assert result.result == {"status": 200, "body": "a\\x00b\ufffd"}
        else:
            _no_unstorable_text(result)


@pytest.mark.skipif(shutil.which("printf") is None, reason="needs printf")
def test_the_shell_task_escapes_a_nul_in_its_output() -> None:
    spec = TaskSpec(name="shell", handler=make_shell_task(BuiltinPolicy(shell_enabled=True)))
    store = InMemoryJobStore(ManualClock())
    context = _context(store, "shell", {"argv": ["printf", "out\\000"]})
    result = invoke(spec, context.job, context)
    assert result.kind is ReportKind.SUCCEEDED
    assert result.result["stdout"] == "out\\x00"
