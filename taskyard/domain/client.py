"""The client's logic: validate submissions, give them ids, store them, ring the doorbells.

Used by the Python library (`taskyard.App`) and the REST API alike, so both accept and
refuse exactly the same things.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.health import Health, call_optional
from taskyard.domain.model import Enqueued, Job, JobState, NewJob
from taskyard.domain.ports import Clock, Coordinator, JobStore, Random
from taskyard.domain.submission import Submission, new_jobs, parse_batch, parse_submission

log = logging.getLogger("taskyard.client")


def due_queues(enqueued: Sequence[Enqueued]) -> list[str]:
    """The queues whose doorbells an enqueue rings: those that got a job due at once."""
    return sorted({e.job.queue for e in enqueued if e.created and e.job.state is JobState.QUEUED})


class Client:
    def __init__(
        self,
        *,
        store: JobStore,
        coordinator: Coordinator | None,
        clock: Clock,
        rng: Random,
        builtins: BuiltinPolicy | None = None,
    ) -> None:
        self.store = store
        self.coordinator = coordinator
        self.clock = clock
        self.rng = rng
        self.builtins = builtins or BuiltinPolicy()
        self.coordinator_health = Health("coordinator")

    def parse(self, data: object, *, idempotency_key_header: str | None = None) -> Submission:
        return parse_submission(
            data, check_args=self.builtins.check, idempotency_key_header=idempotency_key_header
        )

    def parse_batch(self, data: object) -> list[Submission]:
        return parse_batch(data, check_args=self.builtins.check)

    def submit(
        self, submissions: Sequence[Submission], *, correlation_id: str | None = None
    ) -> list[Enqueued]:
        """Store the jobs (all or nothing) and ring the doorbells of the queues that got due
        work. Once this returns, the jobs are durable."""
        return self.enqueue(self.prepare(submissions, correlation_id=correlation_id))

    def prepare(
        self, submissions: Sequence[Submission], *, correlation_id: str | None = None
    ) -> list[NewJob]:
        """The jobs `submit` would store: each submission with its id chosen."""
        return new_jobs(
            submissions, now=self.clock.now(), rng=self.rng, correlation_id=correlation_id
        )

    def enqueue(self, new_jobs: Sequence[NewJob]) -> list[Enqueued]:
        """The second half of `submit`: store prepared jobs (all or nothing) and ring.
        Several callers' jobs may share one call (the API groups concurrent requests)."""
        enqueued = self.store.enqueue(new_jobs)
        self.ring(due_queues(enqueued))
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
