"""The work clients submit, and what people do to it: plain values drawn from the seed.

A `JobPlan` is one submission and the script its handler follows (how long it runs,
which attempts fail, whether it checkpoints, whether it stops when asked). The script
travels in the job's args, so every worker runs the same job the same way; injected
handler faults (`handler.*` sites) come on top.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from taskyard.domain.schedules import ScheduleSpec


@attrs.frozen(kw_only=True)
class Script:
    n: int
    """The plan's index (keeps every job's args distinct)."""
    duration_s: float
    fail_first: int = 0
    """Attempts 1..fail_first raise a retryable error."""
    permanent: bool = False
    """Every attempt raises `PermanentFailure`: the job ends dead at once."""
    checkpoints: int = 0
    honours_cancel: bool = True

    def to_args(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "ms": round(self.duration_s * 1000),
            "fail": self.fail_first,
            "perm": self.permanent,
            "cp": self.checkpoints,
            "stop": self.honours_cancel,
        }

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> Script:
        return cls(
            n=int(args["n"]),
            duration_s=int(args["ms"]) / 1000,
            fail_first=int(args["fail"]),
            permanent=bool(args["perm"]),
            checkpoints=int(args["cp"]),
            honours_cancel=bool(args["stop"]),
        )


@attrs.frozen(kw_only=True)
class JobPlan:
    index: int
    task: str
    queue: str
    priority: int
    script: Script
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    jitter: str
    delay_s: float | None = None
    run_at_ahead_s: float | None = None
    """run_at given as the client's own clock reading plus this (a skewed client sends a
    skewed run_at; the store judges it by its own clock)."""
    timeout_s: float | None = None
    key: str | None = None
    deps: tuple[int, ...] = ()
    """Indexes of earlier plans this job depends on (those the client saw accepted)."""
    concurrency_key: str | None = None

    def body(self, *, dep_ids: tuple[str, ...], run_at: Any, args_extra: int = 0) -> dict[str, Any]:
        args = self.script.to_args()
        if args_extra:
            args["changed"] = args_extra
        data: dict[str, Any] = {
            "task": self.task,
            "args": args,
            "queue": self.queue,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "backoff": {
                "base_seconds": self.backoff_base_s,
                "max_seconds": self.backoff_max_s,
                "jitter": self.jitter,
            },
        }
        if self.delay_s is not None:
            data["delay_seconds"] = self.delay_s
        if run_at is not None:
            data["run_at"] = run_at
        if self.timeout_s is not None:
            data["timeout_seconds"] = self.timeout_s
        if self.key is not None:
            data["idempotency_key"] = self.key
        if dep_ids:
            data["depends_on"] = list(dep_ids)
        if self.concurrency_key is not None:
            data["concurrency_key"] = self.concurrency_key
        return data


class OpKind(enum.StrEnum):
    SUBMIT = "submit"
    """Submit `plans` in one call (all or nothing)."""
    RESUBMIT = "resubmit"
    """Send an accepted keyed plan again, unchanged: the same job must come back."""
    CONFLICT = "conflict"
    """Send an accepted keyed plan again with other args: it must be refused."""
    CANCEL = "cancel"
    """Cancel the job of `plans[0]`, whatever state it is in."""
    CANCEL_RUNNING = "cancel_running"
    """Cancel one of the jobs running now."""
    RETRY_DEAD = "retry_dead"
    """Run one dead (or cancelled) job again."""
    RESCHEDULE = "reschedule"
    """Move the job of `plans[0]` to another priority and run_at."""
    MALFORMED = "malformed"
    """Send a broken variant of `plans[0]`'s body (`hostile.py`): it must be refused,
    naming a field, and store nothing."""
    INSPECT = "inspect"
    """A person looks around: one job and its attempts, listings by filter page by page,
    the queues, the stats, the live workers with the jobs the store says they run."""
    BULK = "bulk"
    """A person cancels (`amount` < 0) or retries (`amount` >= 0) many jobs by a filter on
    the queue of `plans[0]`, counting them first as a dry run would."""
    PAUSE_QUEUE = "pause_queue"
    """A person pauses the queue of `plans[0]` for `amount` seconds."""
    CANCEL_IN_DEPLOY = "cancel_in_deploy"
    """A person cancels a running job while its worker is being redeployed (it stops
    claiming, and hands back what is still running when its grace of `amount` s ends)."""


@attrs.frozen(kw_only=True)
class ClientOp:
    at_s: float
    client: str
    kind: OpKind
    plans: tuple[int, ...] = ()
    amount: float = 0.0
    """For a reschedule: how far ahead of the client's clock the new run_at is."""


@attrs.frozen(kw_only=True)
class Workload:
    plans: tuple[JobPlan, ...] = ()
    ops: tuple[ClientOp, ...] = ()
    schedules: tuple[ScheduleSpec, ...] = ()
    """Declared in code: synced when the world starts and whenever a scheduler boots."""

    def __attrs_post_init__(self) -> None:
        for plan in self.plans:
            assert all(dep < plan.index for dep in plan.deps), "dependencies come earlier"
