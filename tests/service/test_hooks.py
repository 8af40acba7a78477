"""Lifecycle hooks (`taskyard.Hook`, `App.add_hook`): what each hears around an enqueue
and an attempt, and that a hook's error never changes a job's outcome or loses it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import pytest

import taskyard
from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.domain.context import JobContext
from taskyard.domain.hooks import AttemptEnd, Ending, Hook, Hooks, TraceContext
from taskyard.domain.model import ErrorInfo, Job, JobState
from taskyard.testing import TestRunner
from tests.factories import enqueue
from tests.service.stuck import stuck_worker


class Recorder(Hook):
    def __init__(self) -> None:
        self.heard: list[tuple[str, str, int, str]] = []
        self.ends: list[AttemptEnd] = []
        self.dead: list[tuple[Job, ErrorInfo | None]] = []

    def attempt_started(self, job: Job) -> None:
        self.heard.append(("started", job.task, job.attempt, ""))

    def attempt_ended(self, end: AttemptEnd) -> None:
        self.ends.append(end)
        self.heard.append(("ended", end.job.task, end.job.attempt, end.ending.value))

    def attempt_failed(self, end: AttemptEnd) -> None:
        self.heard.append(("failed", end.job.task, end.job.attempt, end.ending.value))

    def job_dead(self, job: Job, error: ErrorInfo | None) -> None:
        self.dead.append((job, error))
        self.heard.append(("dead", job.task, job.attempt, error.type if error else ""))


class Broken(Hook):
    """Raises from every hook method, entering and leaving an enqueue too."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self) -> None:
        self.calls += 1
        raise RuntimeError("the hook is broken")

    @contextlib.contextmanager
    def enqueue(self, tasks: Sequence[str]) -> Iterator[TraceContext | None]:
        self._fail()
        yield None

    def attempt_started(self, job: Job) -> None:
        self._fail()

    def attempt_ended(self, end: AttemptEnd) -> None:
        self._fail()

    def attempt_failed(self, end: AttemptEnd) -> None:
        self._fail()

    def job_dead(self, job: Job, error: ErrorInfo | None) -> None:
        self._fail()


def _app(*hooks: Hook) -> tuple[taskyard.App, dict[str, taskyard.Task]]:  # type: ignore[type-arg]
    app = taskyard.App("memory://")
    for hook in hooks:
        app.add_hook(hook)

    @app.task(name="ok")
    def ok(n: int) -> int:
        return n * 2

    @app.task(name="flaky", max_attempts=2, backoff={"base_seconds": 1, "jitter": "none"})
    def flaky(ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise ValueError("first time unlucky")
        return "fine"

    @app.task(name="doomed", max_attempts=2, backoff={"base_seconds": 1, "jitter": "none"})
    def doomed() -> None:
        raise KeyError("always")

    @app.task(name="refused")
    def refused() -> None:
        raise taskyard.PermanentFailure("no retry for this")

    return app, {"ok": ok, "flaky": flaky, "doomed": doomed, "refused": refused}


def _run_all(app: taskyard.App, tasks: dict[str, taskyard.Task]) -> dict[str, Job]:  # type: ignore[type-arg]
    with TestRunner(app) as runner:
        jobs = {
            "ok": tasks["ok"].enqueue(n=21),
            "flaky": tasks["flaky"].enqueue(),
            "doomed": tasks["doomed"].enqueue(),
            "refused": tasks["refused"].enqueue(),
        }
        runner.drain()
        return {name: runner.get(job) for name, job in jobs.items()}


def test_hooks_hear_each_attempt_start_and_end_each_failure_and_each_death() -> None:
    recorder = Recorder()
    app, tasks = _app(recorder)
    done = _run_all(app, tasks)
    assert {name: job.state for name, job in done.items()} == {
        "ok": JobState.SUCCEEDED,
        "flaky": JobState.SUCCEEDED,
        "doomed": JobState.DEAD,
        "refused": JobState.DEAD,
    }
    by_task: dict[str, list[tuple[str, int, str]]] = {}
    for what, task, attempt, detail in recorder.heard:
        by_task.setdefault(task, []).append((what, attempt, detail))
    assert by_task["ok"] == [("started", 1, ""), ("ended", 1, "succeeded")]
    assert by_task["flaky"] == [
        ("started", 1, ""),
        ("ended", 1, "failed"),
        ("failed", 1, "failed"),
        ("started", 2, ""),
        ("ended", 2, "succeeded"),
    ]
    assert by_task["doomed"] == [
        ("started", 1, ""),
        ("ended", 1, "failed"),
        ("failed", 1, "failed"),
        ("started", 2, ""),
        ("ended", 2, "failed"),
        ("failed", 2, "failed"),
        ("dead", 2, "KeyError"),
    ]
    assert by_task["refused"][-1] == ("dead", 1, "PermanentFailure")
    ends = {(e.job.task, e.job.attempt): e for e in recorder.ends}
    assert ends[("ok", 1)].result == 42 and ends[("ok", 1)].error is None
    first_flaky = ends[("flaky", 1)]
    assert isinstance(first_flaky.exception, ValueError), "the handler's own exception"
    assert first_flaky.retry_expected
    assert not ends[("doomed", 2)].retry_expected, "the last attempt of the budget"
    assert not ends[("refused", 1)].retryable and not ends[("refused", 1)].retry_expected


def test_a_hook_that_raises_everywhere_changes_no_outcome_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = _run_all(*_app())
    broken, recorder = Broken(), Recorder()
    app, tasks = _app(broken, recorder)
    with caplog.at_level(logging.ERROR, logger="taskyard.hooks"):
        hooked = _run_all(app, tasks)
    for name, job in plain.items():
        got = hooked[name]
        assert (got.state, got.attempt, got.result, got.last_error) == (
            job.state,
            job.attempt,
            job.result,
            job.last_error,
        ), name
    assert broken.calls > 0
    assert len(recorder.dead) == 2, "the hooks after a broken one still run"
    failures = [r for r in caplog.records if r.message == "a hook failed; ignored"]
    assert len(failures) == broken.calls
    assert all(r.exc_info is not None for r in failures), "logged with the traceback"


class Tracing(Hook):
    def __init__(self) -> None:
        self.exits: list[type[BaseException] | None] = []

    @contextlib.contextmanager
    def enqueue(self, tasks: Sequence[str]) -> Iterator[TraceContext | None]:
        try:
            yield {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
        except BaseException as exc:
            self.exits.append(type(exc))
            return  # a hook that swallows the enqueue's error: it must get through anyway
        self.exits.append(None)


def test_an_enqueue_hooks_trace_context_is_stored_in_the_job() -> None:
    tracing = Tracing()
    app, tasks = _app(Broken(), tracing)
    with TestRunner(app) as runner:
        job = tasks["ok"].enqueue(n=1)
        assert runner.get(job).trace_context == {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        }
    assert tracing.exits == [None]


def test_a_hook_cannot_swallow_an_enqueues_error() -> None:
    tracing = Tracing()
    hooks = Hooks([tracing])
    with pytest.raises(ZeroDivisionError), hooks.enqueue(["ok"]):
        raise ZeroDivisionError
    assert tracing.exits == [ZeroDivisionError]


def test_a_bad_trace_context_from_a_hook_is_refused_naming_it() -> None:
    class Bad(Hook):
        @contextlib.contextmanager
        def enqueue(self, tasks: Sequence[str]) -> Iterator[TraceContext | None]:
            yield {"traceparent": "00-zz-\x00"}

    app, tasks = _app(Bad())
    with TestRunner(app) as runner:
        with pytest.raises(taskyard.ValidationError, match=r"trace_context\.traceparent"):
            tasks["ok"].enqueue(n=1)
        assert runner.jobs() == []


def test_an_attempt_that_times_out_or_is_handed_back_ends_once_for_the_hooks() -> None:
    clock = ManualClock()
    store = InMemoryJobStore(clock=clock)
    recorder = Recorder()
    worker = stuck_worker(store, clock, Hooks([recorder]))
    timed = enqueue(store, timeout_s=1.0)
    kept = enqueue(store)
    worker.tick()
    clock.advance(1.5)
    worker.tick()
    worker.tick()
    assert worker.release_unfinished() == 1
    worker.release_unfinished()
    endings = {(e.job.id, e.job.attempt): e.ending for e in recorder.ends}
    assert endings == {(timed.id, 1): Ending.TIMEOUT, (kept.id, 1): Ending.HANDED_BACK}
    assert [h[0] for h in recorder.heard].count("failed") == 1, "a timeout is a failure"
    assert store.get(kept.id).state is JobState.QUEUED
