"""Whoever ends a job rings the finished bell for it: a worker's report, the scheduler
(a job reaped into `dead`, a dependent cancelled) and a person's cancel. A job that will
run again (retrying, queued again) is not announced."""

from __future__ import annotations

from uuid import UUID

import taskyard
from taskyard.domain.ports import ClaimRequest, Coordinator
from taskyard.testing import TestRunner

app = taskyard.App("memory://")


@app.task(name="ok")
def ok() -> str:
    return "done"


@app.task(name="broken", max_attempts=2, backoff={"base_seconds": 5, "jitter": "none"})
def broken() -> None:
    raise RuntimeError("always")


def _heard(coordinator: Coordinator, mark: str, *jobs: taskyard.Job) -> tuple[set[UUID], str]:
    heard = coordinator.wait_finished([j.id for j in jobs], after=mark, timeout_s=0)
    return set(heard.finished), heard.mark


def test_a_worker_announces_the_jobs_it_ends_and_not_those_it_retries() -> None:
    with TestRunner(app) as runner:
        bell = runner.coordinator
        assert bell is not None
        mark = bell.finished_mark()
        done, failing = ok.enqueue(), broken.enqueue()
        runner.run_until_idle()
        assert runner.get(failing).state == "retrying"
        heard, mark = _heard(bell, mark, done, failing)
        assert heard == {done.id}
        runner.drain()
        assert runner.get(failing).state == "dead"
        assert _heard(bell, mark, done, failing)[0] == {failing.id}


def test_the_scheduler_announces_a_job_it_reaps_into_dead_and_a_dependent_it_cancels() -> None:
    with TestRunner(app) as runner:
        bell = runner.coordinator
        assert bell is not None
        mark = bell.finished_mark()
        lost = app.enqueue("ok", max_attempts=1, queue="elsewhere")
        [claimed] = runner.store.claim(ClaimRequest(worker="gone", limit=1, lease_ttl_s=1))
        assert claimed.id == lost.id
        blocker = app.enqueue("ok", queue="elsewhere")
        dependent = app.enqueue("ok", depends_on=[blocker], queue="elsewhere")
        cancelled = app.cancel(blocker)  # a person's cancel of a job not running
        assert cancelled.state == "cancelled"
        heard, mark = _heard(bell, mark, lost, blocker, dependent)
        assert heard == {blocker.id}
        runner.advance(2)  # the lease lapses: reaped, its one attempt spent
        assert runner.get(lost).state == "dead"
        assert runner.get(dependent).state == "cancelled"
        assert _heard(bell, mark, lost, blocker, dependent)[0] == {lost.id, dependent.id}


def test_a_cancel_of_a_running_job_is_announced_when_its_worker_reports_it() -> None:
    with TestRunner(app) as runner:
        bell = runner.coordinator
        assert bell is not None
        job = app.enqueue("ok", queue="elsewhere")
        runner.store.claim(ClaimRequest(worker="w", limit=1, lease_ttl_s=30))
        mark = bell.finished_mark()
        assert app.cancel(job).state == "running"  # only asked to stop
        assert _heard(bell, mark, job)[0] == set()
