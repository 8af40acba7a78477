"""Typed errors of the domain.

Two families, kept apart on purpose:

* **Refusals** (`Refusal` and its subclasses) are answers: the store looked at
  the job and said no. Nothing was written. Retrying the same call gives the
  same answer. The API maps them to 404/409/422.
* **Unavailability** (`StoreUnavailable`, `CoordinatorUnavailable`) means the
  call may not have reached its target, or its answer was lost. The caller does
  not know whether a write landed; it resolves that by re-reading or by
  retrying an idempotent call, never by guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import attrs


class TaskyardError(Exception):
    """Base of every error taskyard raises on purpose."""


@attrs.define(auto_exc=True, kw_only=True)
class StoreUnavailable(TaskyardError):
    """The store could not be reached, or its answer was lost (an ambiguous commit)."""

    message: str = "store unavailable"

    def __str__(self) -> str:
        return self.message


@attrs.define(auto_exc=True, kw_only=True)
class CoordinatorUnavailable(TaskyardError):
    """The coordinator (Redis, or its stand-in) could not be reached."""

    message: str = "coordinator unavailable"

    def __str__(self) -> str:
        return self.message


class Refusal(TaskyardError):
    """The store refused a write: nothing changed."""


@attrs.define(auto_exc=True)
class JobNotFound(Refusal):
    job_id: UUID | str

    def __str__(self) -> str:
        return f"no job {self.job_id}"


@attrs.define(auto_exc=True)
class ScheduleNotFound(Refusal):
    name: str

    def __str__(self) -> str:
        return f"no schedule {self.name!r}"


@attrs.define(auto_exc=True)
class ScheduleExists(Refusal):
    name: str

    def __str__(self) -> str:
        return f"a schedule named {self.name!r} exists already"


@attrs.define(auto_exc=True)
class IllegalTransition(Refusal):
    job_id: UUID
    from_state: str
    event: str

    def __str__(self) -> str:
        return f"job {self.job_id} is {self.from_state}: {self.event} is not allowed"


@attrs.define(auto_exc=True)
class StaleFence(Refusal):
    """A write from an attempt that no longer holds the job."""

    job_id: UUID
    attempt_seen: int
    attempt_now: int

    def __str__(self) -> str:
        return (
            f"job {self.job_id}: attempt {self.attempt_seen} is stale "
            f"(the job is at attempt {self.attempt_now})"
        )


@attrs.define(auto_exc=True)
class LeaseExpired(StaleFence):
    """The attempt is still the latest, but its lease ran out by the store's clock."""

    def __str__(self) -> str:
        return f"job {self.job_id}: the lease of attempt {self.attempt_seen} has expired"


@attrs.define(auto_exc=True)
class NotDue(Refusal):
    job_id: UUID

    def __str__(self) -> str:
        return f"job {self.job_id} is not due yet"


@attrs.define(auto_exc=True)
class IdempotencyConflict(Refusal):
    key: str
    existing_job_id: UUID | None
    """None when the other use of the key is earlier in the same call (not stored)."""

    def __str__(self) -> str:
        if self.existing_job_id is None:
            return (
                f"idempotency key {self.key!r} is given twice in this batch with different bodies"
            )
        return (
            f"idempotency key {self.key!r} was used for job {self.existing_job_id} "
            "with a different body"
        )


@attrs.frozen
class FieldError:
    """One problem with one field.

    `field` is a dotted path: `backoff.jitter`, `jobs[1].priority`.
    """

    field: str
    message: str


@attrs.define(auto_exc=True)
class ValidationError(Refusal):
    errors: Sequence[FieldError]

    def __str__(self) -> str:
        return "; ".join(f"{e.field}: {e.message}" for e in self.errors)

    def prefixed(self, prefix: str) -> ValidationError:
        """The same errors with every field under `prefix` (`jobs[3]`)."""
        return ValidationError(
            [
                FieldError(f"{prefix}.{e.field}" if e.field else prefix, e.message)
                for e in self.errors
            ]
        )


@attrs.define(auto_exc=True)
class UnknownDependency(Refusal):
    job_id: UUID
    field: str = "depends_on"

    def __str__(self) -> str:
        return f"{self.field}: no job {self.job_id}"
