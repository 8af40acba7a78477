"""The pure core of taskyard: jobs, the state machine, retry and lease rules, the ports,
and the worker, scheduler and client logic written against them.

Nothing here does I/O, reads a clock, draws global randomness or starts a thread
(ruff's banned-api and import-linter keep it so).
"""

from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.client import Client
from taskyard.domain.context import (
    Cancelled,
    HandlerResult,
    JobContext,
    PermanentFailure,
    TaskSpec,
)
from taskyard.domain.errors import (
    CoordinatorUnavailable,
    FieldError,
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    LeaseExpired,
    NotDue,
    Refusal,
    StaleFence,
    StoreUnavailable,
    TaskyardError,
    UnknownDependency,
    ValidationError,
)
from taskyard.domain.model import (
    Attempt,
    Enqueued,
    ErrorInfo,
    Job,
    JobState,
    Lease,
    LeaseRef,
    NewJob,
    Outcome,
)
from taskyard.domain.ports import Clock, Coordinator, Executor, JobStore, Random, TaskRegistry
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.scheduler import Scheduler, SchedulerConfig
from taskyard.domain.submission import Submission, parse_submission
from taskyard.domain.transitions import TRANSITIONS, Event, Report, ReportKind, Step
from taskyard.domain.worker import Worker, WorkerConfig

__all__ = [
    "TRANSITIONS",
    "Attempt",
    "BuiltinPolicy",
    "Cancelled",
    "Client",
    "Clock",
    "Coordinator",
    "CoordinatorUnavailable",
    "Enqueued",
    "ErrorInfo",
    "Event",
    "Executor",
    "FieldError",
    "HandlerResult",
    "IdempotencyConflict",
    "IllegalTransition",
    "Jitter",
    "Job",
    "JobContext",
    "JobNotFound",
    "JobState",
    "JobStore",
    "Lease",
    "LeaseExpired",
    "LeaseRef",
    "NewJob",
    "NotDue",
    "Outcome",
    "PermanentFailure",
    "Random",
    "Refusal",
    "Report",
    "ReportKind",
    "RetryPolicy",
    "Scheduler",
    "SchedulerConfig",
    "StaleFence",
    "Step",
    "StoreUnavailable",
    "Submission",
    "TaskRegistry",
    "TaskSpec",
    "TaskyardError",
    "UnknownDependency",
    "ValidationError",
    "Worker",
    "WorkerConfig",
    "parse_submission",
]
