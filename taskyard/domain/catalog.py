"""The task catalog: one set of task defaults, wherever a job is submitted.

A task's defaults (queue, priority, max_attempts, backoff, timeout) and its parameters are
declared once, on its function (`@app.task(...)`). Workers publish them into the store
when they start (`JobStore.publish_tasks`), so that the REST API and the CLI, which do not
have the function, fill in the same defaults and check the same arguments as the Python
library does (`with_defaults`, then `arguments.args_problems`).

Workers of different versions may publish different defaults for one task: the last
publication wins, whole (an entry is never merged from two), and each entry says which
worker published it and when (store time). During a rolling deploy the entry is that of
the worker that started last; `GET /v1/tasks` and `taskyard tasks` show it.

Built-in tasks (`sleep`, `http`, `shell`) are never published: every process knows them,
their args are checked by the operator's policy (`builtins.py`) and their defaults are the
contract's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from taskyard.domain.arguments import Parameters
from taskyard.domain.builtins import BUILTIN_TASKS, BuiltinPolicy
from taskyard.domain.errors import FieldError, StoreUnavailable
from taskyard.domain.retry import RetryPolicy
from taskyard.domain.timefmt import after, format_time

CATALOG_READ_EVERY_S = 1.0
"""How long a process goes on with the catalog it read before it reads it again: a task a
worker publishes is known to the API within about this long."""


class UnknownTask(enum.StrEnum):
    """What a submission for a task the catalog does not know gets (`unknown_task`)."""

    WARN = "warn"
    """Accepted (201), with a warning in the answer (`warnings`), and logged."""
    REFUSE = "refuse"
    """Refused (422, `task: unknown task`): nothing is stored."""


UNKNOWN_TASK_DEFAULT = UnknownTask.WARN
UNKNOWN_TASK_WARNING = (
    "unknown task: no worker has published it, so the job waits until a worker that has it "
    "starts (TASKYARD_UNKNOWN_TASK=refuse refuses such jobs)"
)
UNKNOWN_TASK_REFUSAL = (
    "unknown task: no worker has published it (TASKYARD_UNKNOWN_TASK=warn accepts it with a "
    "warning)"
)


def is_unknown(name: str, task: TaskInfo | None) -> bool:
    """A task neither built in nor in the catalog (nor registered in this process)."""
    return task is None and name not in BUILTIN_TASKS


def unknown_problem(mode: UnknownTask) -> FieldError:
    """What a submission for an unknown task is told, refused or warned (field `task`)."""
    message = UNKNOWN_TASK_REFUSAL if mode is UnknownTask.REFUSE else UNKNOWN_TASK_WARNING
    return FieldError("task", message)


@attrs.frozen(kw_only=True)
class TaskInfo:
    """A task as the catalog holds it: its defaults, its parameters, who published it."""

    name: str
    queue: str
    priority: int
    max_attempts: int
    backoff: RetryPolicy
    timeout_s: float | None
    params: Parameters
    published_by: str | None = None
    """The worker that published this entry (None before it is published)."""
    published_at: datetime | None = None
    """When, by the store's clock."""

    def published(self, *, by: str, at: datetime) -> TaskInfo:
        return attrs.evolve(self, published_by=by, published_at=at)

    def defaults(self) -> dict[str, Any]:
        """The submission fields it gives a job that does not set them (api.md's names)."""
        return {
            "queue": self.queue,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "backoff": self.backoff.to_json(),
            "timeout_seconds": self.timeout_s,
        }

    def to_json(self) -> dict[str, Any]:
        """As `GET /v1/tasks` shows it."""
        return {
            "name": self.name,
            **self.defaults(),
            **self.params.to_json(),
            "published_by": self.published_by,
            "published_at": format_time(self.published_at) if self.published_at else None,
        }


def with_defaults(data: Mapping[str, Any], task: TaskInfo | None) -> dict[str, Any]:
    """A submission as sent (a JSON object, or the same built in Python) with the task's
    defaults for the fields it does not set. A partial `backoff` keeps the task's values
    for the keys it leaves out. A field set to anything, even a value to be refused, is
    the submission's own: validation judges it.

    >>> info = TaskInfo(name="t", queue="mail", priority=0, max_attempts=5,
    ...                 backoff=RetryPolicy(base_s=2), timeout_s=None, params=Parameters())
    >>> filled = with_defaults({"task": "t", "priority": 3, "backoff": {"factor": 3}}, info)
    >>> [filled[k] for k in ("queue", "priority", "max_attempts")], filled["backoff"]["factor"]
    (['mail', 3, 5], 3)
    >>> filled["backoff"]["base_seconds"]
    2
    """
    filled = dict(data)
    if task is None:
        return filled
    for field, value in task.defaults().items():
        if field not in filled:
            filled[field] = value
        elif field == "backoff" and isinstance(filled[field], Mapping):
            filled[field] = _backoff_with_defaults(filled[field], value)
    return filled


def _backoff_with_defaults(sent: Mapping[str, Any], task: Mapping[str, Any]) -> dict[str, Any]:
    """A partial backoff with the task's values for the keys it leaves out, but for a task's
    `max_seconds` below the `base_seconds` sent: that cap would contradict what the
    submission asked, so the submission gets the usual cap instead (validation judges it).

    >>> _backoff_with_defaults({"base_seconds": 3}, {"base_seconds": 1, "max_seconds": 1})
    {'base_seconds': 3}
    >>> _backoff_with_defaults({"base_seconds": 3}, {"base_seconds": 1, "max_seconds": 9})
    {'base_seconds': 3, 'max_seconds': 9}
    """
    merged = {**task, **sent}
    base, cap = sent.get("base_seconds"), task.get("max_seconds")
    numbers = not isinstance(base, bool) and not isinstance(cap, bool)
    if (
        "max_seconds" not in sent
        and numbers
        and isinstance(base, int | float)
        and isinstance(cap, int | float)
        and cap < base
    ):
        del merged["max_seconds"]
    return merged


def publishable(task: TaskInfo) -> bool:
    """Whether a worker publishes this task (built-in tasks are known everywhere)."""
    return task.name not in BUILTIN_TASKS


class TaskCatalog:
    """The catalog as one process sees it: read from the store (`read`), and read again
    when it is older than `CATALOG_READ_EVERY_S` by the process's clock (`now`), so that a
    submission costs no store read of its own. A failed read keeps what was read before."""

    def __init__(
        self,
        read: Callable[[], Sequence[TaskInfo]],
        now: Callable[[], datetime],
        *,
        read_every_s: float = CATALOG_READ_EVERY_S,
    ) -> None:
        self._read = read
        self._now = now
        self._read_every_s = read_every_s
        self._tasks: dict[str, TaskInfo] | None = None
        self._fresh_until: datetime | None = None

    def get(self, name: str) -> TaskInfo | None:
        """The task's entry; None when no worker published it (or it is built in)."""
        return self.all().get(name)

    def all(self) -> Mapping[str, TaskInfo]:
        now = self._now()
        if self._tasks is None or self._fresh_until is None or now >= self._fresh_until:
            try:
                tasks = self._read()
            except StoreUnavailable:
                if self._tasks is None:
                    raise
                return self._tasks  # the store will be asked again next time
            self._tasks = {task.name: task for task in tasks}
            self._fresh_until = after(now, self._read_every_s)
        return self._tasks


def args_problems(
    task: str,
    args: Mapping[str, Any],
    params: Parameters | None,
    *,
    builtins: BuiltinPolicy,
) -> Sequence[FieldError]:
    """The check of a job's args wherever it is submitted: a built-in task's by the
    operator's policy, another by its handler's parameters when they are known (the
    function in this process, else the task catalog); none for a task not known here."""
    if task in BUILTIN_TASKS:
        return builtins.check(task, args)
    if params is None:
        return ()
    return params.problems(args)
