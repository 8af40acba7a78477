"""The client's logic: validate submissions, give them ids, store them, ring the doorbells.

Used by the Python library (`taskyard.App`) and the REST API alike, so both accept and
refuse exactly the same things.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from uuid import UUID

from taskyard.domain.builtins import BUILTIN_TASKS, BuiltinPolicy
from taskyard.domain.catalog import (
    UNKNOWN_TASK_DEFAULT,
    TaskCatalog,
    TaskInfo,
    UnknownTask,
    args_problems,
    is_unknown,
    unknown_problem,
    with_defaults,
)
from taskyard.domain.errors import FieldError
from taskyard.domain.health import Health, call_optional
from taskyard.domain.model import WAITING_STATES, Enqueued, Job, JobState, JsonObject, NewJob
from taskyard.domain.ports import SCHEDULER_BELL, Clock, Coordinator, JobStore, Random
from taskyard.domain.submission import (
    ArgsChecker,
    Submission,
    new_jobs,
    parse_batch,
    parse_submission,
    with_args,
)

log = logging.getLogger("taskyard.client")


def due_queues(enqueued: Sequence[Enqueued]) -> list[str]:
    """The queues whose doorbells an enqueue rings: those that got a job due at once."""
    return sorted({e.job.queue for e in enqueued if e.created and e.job.state is JobState.QUEUED})


def bells(enqueued: Sequence[Enqueued]) -> list[str]:
    """Every doorbell an enqueue rings: the queues that got due work, and the scheduler's
    when a job waits on the clock (so its due time is heard at once)."""
    waiting = any(e.created and e.job.state in WAITING_STATES for e in enqueued)
    return [*due_queues(enqueued), *([SCHEDULER_BELL] if waiting else [])]


Lookup = Callable[[str], TaskInfo | None]
"""A task's defaults and parameters by name, where a caller has its own (the library's
registered functions), before the catalog."""


def _nothing(name: str) -> TaskInfo | None:
    return None


class Client:
    def __init__(
        self,
        *,
        store: JobStore,
        coordinator: Coordinator | None,
        clock: Clock,
        rng: Random,
        builtins: BuiltinPolicy | None = None,
        unknown_task: UnknownTask = UNKNOWN_TASK_DEFAULT,
    ) -> None:
        self.store = store
        self.coordinator = coordinator
        self.clock = clock
        self.rng = rng
        self.builtins = builtins or BuiltinPolicy()
        self.unknown_task = unknown_task
        self.catalog = TaskCatalog(store.tasks, clock.now)
        self.coordinator_health = Health("coordinator")

    def task(self, name: str, local: Lookup = _nothing) -> TaskInfo | None:
        """What is known of a task: `local`'s entry, else the catalog's (None when built in,
        or unknown)."""
        if name in BUILTIN_TASKS:
            return None
        return local(name) or self.catalog.get(name)

    def parse(
        self,
        data: object,
        *,
        idempotency_key_header: str | None = None,
        local: Lookup = _nothing,
    ) -> Submission:
        """Validate a submission with its task's defaults filled in and its args checked
        against the task's parameters (`catalog`, `arguments`); one for a task nobody
        published is refused when `unknown_task` is `refuse`."""
        return parse_submission(
            self._filled(data, local),
            check_args=self._checker(local),
            idempotency_key_header=idempotency_key_header,
        )

    def plain(self, task: str, *, local: Lookup = _nothing) -> Submission:
        """A submission of `task` that sets nothing: its defaults, and no args, which are
        left unchecked (`with_args` gives it its args, checked). Raises `ValidationError`."""
        return parse_submission(self._filled({"task": task}, local))

    def with_args(self, base: Submission, args: object, *, local: Lookup = _nothing) -> Submission:
        """`base` (a `plain` submission) with `args`, checked as `parse` checks them: what
        `parse` gives for a submission of `base`'s task that sets only these args."""
        return with_args(base, args, check_args=self._checker(local))

    def parse_batch(self, data: object, *, local: Lookup = _nothing) -> list[Submission]:
        return parse_batch(
            data, check_args=self._checker(local), fill=lambda item: self._filled(item, local)
        )

    def unknown(self, submissions: Sequence[Submission], local: Lookup = _nothing) -> list[int]:
        """The positions of accepted submissions whose task nobody published (to warn of)."""
        return [
            index
            for index, submission in enumerate(submissions)
            if is_unknown(submission.task, self.task(submission.task, local))
        ]

    def _filled(self, data: object, local: Lookup) -> object:
        if not isinstance(data, Mapping) or not isinstance(data.get("task"), str):
            return data  # validation says what is wrong with it
        return with_defaults(data, self.task(data["task"], local))

    def _checker(self, local: Lookup) -> ArgsChecker:
        def check(task: str, args: JsonObject) -> Sequence[FieldError]:
            info = self.task(task, local)
            problems = args_problems(
                task, args, info.params if info else None, builtins=self.builtins
            )
            if self.unknown_task is UnknownTask.REFUSE and is_unknown(task, info):
                return [unknown_problem(self.unknown_task), *problems]
            return problems

        return check

    def submit(
        self,
        submissions: Sequence[Submission],
        *,
        correlation_id: str | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> list[Enqueued]:
        """Store the jobs (all or nothing) and ring the doorbells of the queues that got due
        work. Once this returns, the jobs are durable."""
        return self.enqueue(
            self.prepare(submissions, correlation_id=correlation_id, trace_context=trace_context)
        )

    def prepare(
        self,
        submissions: Sequence[Submission],
        *,
        correlation_id: str | None = None,
        trace_context: Mapping[str, str] | None = None,
    ) -> list[NewJob]:
        """The jobs `submit` would store: each submission with its id chosen."""
        return new_jobs(
            submissions,
            now=self.clock.now(),
            rng=self.rng,
            correlation_id=correlation_id,
            trace_context=trace_context,
        )

    def enqueue(self, new_jobs: Sequence[NewJob]) -> list[Enqueued]:
        """The second half of `submit`: store prepared jobs (all or nothing) and ring.
        Several callers' jobs may share one call (the API groups concurrent requests)."""
        enqueued = self.store.enqueue(new_jobs)
        self.ring(bells(enqueued))
        return enqueued

    def ring(self, queues: Sequence[str]) -> None:
        """Best effort: workers poll the store anyway. After a failed ring, rings rest a
        while (`Health.rest`), so that submissions do not each wait on a coordinator that
        is gone."""
        coordinator = self.coordinator
        if queues and coordinator is not None:
            call_optional(
                self.coordinator_health, self.clock.now(), lambda: coordinator.ring(queues)
            )

    def cancel(self, job_id: UUID) -> Job:
        """Cancel one job (a person's: the API, the dashboard, the library). One that ends
        at once, not running, is announced on the finished bell for whoever waits on it."""
        job = self.store.cancel(job_id)
        coordinator = self.coordinator
        if job.state.is_terminal and coordinator is not None:
            call_optional(
                self.coordinator_health,
                self.clock.now(),
                lambda: coordinator.announce_finished([job.id]),
            )
        return job
