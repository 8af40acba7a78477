"""The store's history as the world saw it: every commit traced as it happens (jobs get
short labels, `j1, j2, ...`, in enqueue order), each stamped with the true time, and the
domain's own log lines routed into the trace.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime
from uuid import UUID

import attrs

from taskyard.adapters.memory import MemoryState, Recorded
from taskyard.domain.model import Job, JobState, Outcome
from taskyard.domain.transitions import Event
from taskyard.simulation.clocks import at_s
from taskyard.simulation.loop import EventLoop

COUNTED_EVENTS = frozenset(
    {
        Event.EXPIRE,
        Event.RELEASE,
        Event.DEPENDENCY_FAILED,
        Event.RETRY,
        Event.RESCHEDULE,
        Event.CANCEL,
    }
)


class Ledger:
    def __init__(self, loop: EventLoop, state: MemoryState, exercised: Counter[str]) -> None:
        self._loop = loop
        self._state = state
        self._exercised = exercised
        self._noted = 0
        self._true_at: list[datetime] = []
        self._labels: dict[UUID, str] = {}

    def job_label(self, job_id: UUID) -> str:
        return self._labels.get(job_id, str(job_id)[-8:])

    def observe(self, who: str, what: str, job_id: UUID, attempt: int) -> None:
        self._exercised[what] += 1
        if what == "report_stale" and any(
            a.attempt == attempt and a.outcome is Outcome.STALE
            for a in self._state.attempts.get(job_id, ())
        ):
            # Refused by the store itself, the lease expired but not yet reaped.
            self._exercised["report_stale_unreaped"] += 1
        self._loop.note(who, f"{what.replace('_', ' ')}: {self.job_label(job_id)} #{attempt}")

    def dead_by_group(self) -> dict[tuple[str, str | None], list[Job]]:
        """The dead jobs the world holds, by task and error type, newest first by
        `(created_at, id)`: the order the store promises (`Rows.error_ids`)."""
        groups: dict[tuple[str, str | None], list[Job]] = defaultdict(list)
        for job_id in self._state.by_state[JobState.DEAD]:
            job = self._state.jobs[job_id]
            error_type = job.last_error.type if job.last_error is not None else None
            groups[job.task, error_type].append(job)
        for jobs in groups.values():
            jobs.sort(key=lambda job: (job.created_at, job.id), reverse=True)
        return dict(groups)

    def commits(self) -> int:
        """How many changes the store has committed so far."""
        history = self._state.history
        assert history is not None
        return len(history)

    def note_commits(self, who: str) -> None:
        history = self._state.history
        assert history is not None
        clock = self._loop.clock
        for index in range(self._noted, len(history)):
            record = history[index]
            self._true_at.append(clock.now())
            if record.event is Event.ENQUEUE:
                self._labels[record.after.id] = f"j{len(self._labels) + 1}"
            elif record.event in COUNTED_EVENTS:
                self._exercised[record.event.value] += 1
                if record.event is Event.RELEASE and record.after.state is JobState.CANCELLED:
                    self._exercised["release_cancelled"] += 1
            self._loop.trace.add(clock.t, who, self._describe(record))
        self._noted = len(history)

    def _describe(self, rec: Recorded) -> str:
        job = rec.after
        label = self.job_label(job.id)
        if rec.before is None:
            deps = " ".join(self.job_label(d) for d in job.depends_on)
            return (
                f"store enqueue {label} -> {job.state.value} (queue {job.queue}, "
                f"prio {job.priority}, run_at {at_s(job.run_at):.3f}, max {job.max_attempts}"
                f"{', timeout ' + format(job.timeout_s, 'g') if job.timeout_s else ''}"
                f"{', key ' + job.idempotency_key if job.idempotency_key else ''}"
                f"{', deps ' + deps if deps else ''})"
            )
        before = rec.before
        text = f"store {rec.event.value} {label} "
        if before.state is not job.state:
            text += f"{before.state.value}->{job.state.value} "
        text += f"#{job.attempt}"
        if rec.worker is not None:
            text += f" by {rec.worker}"
        if job.lease is not None:
            text += f" lease->{at_s(job.lease.expires_at):.3f}"
        if rec.event is Event.EXPIRE and before.lease is not None:
            text += f" (lease {at_s(before.lease.expires_at):.3f} expired)"
        if job.state is JobState.RETRYING and before.state is not JobState.RETRYING:
            text += f" run_at {at_s(job.run_at):.3f}"
        if job.cancel_requested and not before.cancel_requested:
            text += " cancel requested"
        if rec.event is Event.RETRY or job.attempt_limit != before.attempt_limit:
            text += f" limit {job.attempt_limit}"
        return text

    def log(self) -> list[Recorded]:
        """Every commit, stamped with the true time at which a node's view traced it."""
        history = self._state.history
        assert history is not None
        assert len(self._true_at) == len(history), "every commit went through a node's view"
        return [
            rec if rec.at == true_at else attrs.evolve(rec, at=true_at)
            for rec, true_at in zip(history, self._true_at, strict=True)
        ]


_LOGGED_PATHS: tuple[tuple[str, str], ...] = (
    ("the store refused a batch", "report_batch_apart"),
    ("the store refused a report;", "report_replaced"),
    ("the store refused this attempt's report twice", "report_abandoned"),
    ("the store refused to take back a lease", "release_refused"),
)
"""The worker's log lines that mark a path the refusal fault must reach."""


class TraceLog(logging.Handler):
    """Puts the domain's log lines into the trace, attributed to the node that ran."""

    def __init__(self, loop: EventLoop, ledger: Ledger, exercised: Counter[str]) -> None:
        super().__init__(logging.DEBUG)
        self._loop = loop
        self._ledger = ledger
        self._exercised = exercised

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.msg == "attempt timed out":
            self._exercised["timed_out"] += 1
        for start, path in _LOGGED_PATHS:
            if text.startswith(start):
                self._exercised[path] += 1
        job_id = getattr(record, "job_id", None)
        if job_id is not None:
            text += f" ({self._ledger.job_label(UUID(str(job_id)))}"
            attempt = getattr(record, "attempt", None)
            text += f" #{attempt})" if attempt is not None else ")"
        self._loop.note(self._loop.current, f"log {record.levelname.lower()}: {text}")
