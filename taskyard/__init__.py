"""taskyard: a fault-tolerant distributed job scheduler.

    import taskyard

    app = taskyard.App("memory://")

    @app.task()
    def add(a: int, b: int) -> int:
        return a + b

Names are loaded on first use, so `import taskyard.domain` stays free of any adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "App": ("taskyard.entrypoints.library", "App"),
    "Task": ("taskyard.entrypoints.library", "Task"),
    "WaitTimeout": ("taskyard.entrypoints.library", "WaitTimeout"),
    "RetryPolicy": ("taskyard.domain.retry", "RetryPolicy"),
    "Jitter": ("taskyard.domain.retry", "Jitter"),
    "RateLimit": ("taskyard.domain.flow", "RateLimit"),
    "JobContext": ("taskyard.domain.context", "JobContext"),
    "Cancelled": ("taskyard.domain.context", "Cancelled"),
    "PermanentFailure": ("taskyard.domain.context", "PermanentFailure"),
    "Job": ("taskyard.domain.model", "Job"),
    "JobState": ("taskyard.domain.model", "JobState"),
    "Attempt": ("taskyard.domain.model", "Attempt"),
    "Outcome": ("taskyard.domain.model", "Outcome"),
    "ErrorInfo": ("taskyard.domain.model", "ErrorInfo"),
    "Hook": ("taskyard.domain.hooks", "Hook"),
    "AttemptEnd": ("taskyard.domain.hooks", "AttemptEnd"),
    "Ending": ("taskyard.domain.hooks", "Ending"),
    "TaskyardError": ("taskyard.domain.errors", "TaskyardError"),
    "ValidationError": ("taskyard.domain.errors", "ValidationError"),
    "JobNotFound": ("taskyard.domain.errors", "JobNotFound"),
    "IllegalTransition": ("taskyard.domain.errors", "IllegalTransition"),
    "IdempotencyConflict": ("taskyard.domain.errors", "IdempotencyConflict"),
    "StoreUnavailable": ("taskyard.domain.errors", "StoreUnavailable"),
}

if TYPE_CHECKING:
    from taskyard.domain.context import Cancelled, JobContext, PermanentFailure
    from taskyard.domain.errors import (
        IdempotencyConflict,
        IllegalTransition,
        JobNotFound,
        StoreUnavailable,
        TaskyardError,
        ValidationError,
    )
    from taskyard.domain.flow import RateLimit
    from taskyard.domain.hooks import AttemptEnd, Ending, Hook
    from taskyard.domain.model import Attempt, ErrorInfo, Job, JobState, Outcome
    from taskyard.domain.retry import Jitter, RetryPolicy
    from taskyard.entrypoints.library import App, Task, WaitTimeout


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'taskyard' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


__all__ = [
    "App",
    "Attempt",
    "AttemptEnd",
    "Cancelled",
    "Ending",
    "ErrorInfo",
    "Hook",
    "IdempotencyConflict",
    "IllegalTransition",
    "Jitter",
    "Job",
    "JobContext",
    "JobNotFound",
    "JobState",
    "Outcome",
    "PermanentFailure",
    "RateLimit",
    "RetryPolicy",
    "StoreUnavailable",
    "Task",
    "TaskyardError",
    "ValidationError",
    "WaitTimeout",
]
