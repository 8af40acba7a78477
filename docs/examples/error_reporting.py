"""Report failed attempts and dead jobs to an error tracker (Sentry here), as a taskyard
lifecycle hook.

    import sentry_sdk
    import taskyard
    from error_reporting import ErrorReporting

    sentry_sdk.init(dsn="https://...")
    app = taskyard.App()
    app.add_hook(ErrorReporting(sentry_sdk))

Every failed or timed-out attempt is reported: as the handler's exception where the
worker has it (threads, an event loop), else as a message with the recorded error type
and message (a child process, a timeout). An attempt that will be retried is a
`warning`; the last one an `error`; a job that ended dead one more `error` event, with
its own fingerprint so that the tracker groups dead jobs by task. The tags name the
task, the queue, the job and the attempt.

The hook runs on the worker's control thread and must be quick: Sentry's SDK queues
events and sends them from a thread of its own, so its capture calls are. Whatever it
raises is logged by taskyard and ignored; it never changes a job.

This file is a test of the repository (tests/service/test_error_reporting_example.py),
with a fake in place of `sentry_sdk`.
"""

from __future__ import annotations

from typing import Any, Protocol

import taskyard


class Tracker(Protocol):
    """What this hook uses of `sentry_sdk` (or of another tracker with the same calls)."""

    def capture_exception(self, error: BaseException, **scope: Any) -> Any: ...

    def capture_message(self, message: str, **scope: Any) -> Any: ...


def _tags(job: taskyard.Job) -> dict[str, str]:
    return {
        "taskyard.task": job.task,
        "taskyard.queue": job.queue,
        "taskyard.job_id": str(job.id),
        "taskyard.attempt": str(job.attempt),
    }


class ErrorReporting(taskyard.Hook):
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def attempt_failed(self, end: taskyard.AttemptEnd) -> None:
        level = "warning" if end.retry_expected else "error"
        tags = {**_tags(end.job), "taskyard.ending": end.ending.value}
        if end.exception is not None:
            self.tracker.capture_exception(end.exception, level=level, tags=tags)
            return
        error = end.error
        what = f"{error.type}: {error.message}" if error else end.ending.value
        self.tracker.capture_message(
            f"{end.job.task} attempt {end.job.attempt} failed: {what}", level=level, tags=tags
        )

    def job_dead(self, job: taskyard.Job, error: taskyard.ErrorInfo | None) -> None:
        what = f"{error.type}: {error.message}" if error else "no error recorded"
        self.tracker.capture_message(
            f"{job.task} job {job.id} is dead after {job.attempt} attempt(s): {what}",
            level="error",
            tags=_tags(job),
            fingerprint=["taskyard-dead", job.task],
        )
