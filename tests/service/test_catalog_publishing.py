"""A worker publishes its tasks into the catalog when it starts (not the built-in ones),
and an app that does not have a task's function enqueues it with the catalog's defaults
and arguments, as the API does."""

from __future__ import annotations

import logging

import pytest

import taskyard
from taskyard.testing import TestRunner

worker_app = taskyard.App("memory://")


@worker_app.task(name="emails.send", queue="emails", max_attempts=5, timeout=1)
def send(user_id: int) -> int:
    return user_id


def test_a_worker_publishes_its_tasks_at_start_and_an_app_without_them_uses_the_catalog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with TestRunner(worker_app) as runner:
        assert runner.store.tasks() == []
        runner.run_until_idle()  # the worker's first ticks
        [published] = runner.store.tasks()
        assert published.name == "emails.send" and published.published_by == "test-worker"
        assert published.params.names == ("user_id",)

        producer = taskyard.App("memory://")  # has no function of that name
        producer.use(store=runner.store, coordinator=runner.coordinator, clock=runner.clock)
        job = producer.enqueue("emails.send", args={"user_id": 3})
        assert (job.queue, job.max_attempts, job.timeout_s) == ("emails", 5, 1)
        with pytest.raises(taskyard.ValidationError, match=r"args\.user: unknown argument"):
            producer.enqueue("emails.send", args={"user": 3})
        runner.run_until_idle()
        assert runner.get(job).result == 3

        with caplog.at_level(logging.WARNING, logger="taskyard.app"):
            producer.enqueue("emails.sned")
            producer.enqueue("emails.sned")
        warned = [r.getMessage() for r in caplog.records if r.name == "taskyard.app"]
        assert len(warned) == 1 and "'emails.sned' is no task of this app" in warned[0]
