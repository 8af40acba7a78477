"""The figures a chaos run reports, computed from the history read back from PostgreSQL
(jobs and attempts), the nemesis's records and the workers' logs.

* **Jobs lost**: acknowledged jobs missing from the store or not terminal once quiet
  (the checker's `no_job_lost`).
* **Outcomes committed twice**: jobs on which more than one attempt committed an ending
  outcome (success, cancellation, or the failure of the last allowed attempt), or on which
  any outcome was committed after the one that ended the job.
* **Wait after a worker died**: for every attempt that a SIGKILLed or SIGSTOPped worker
  was running when the fault struck, the time from the fault (store clock) to the moment
  the job moved on: its next attempt started (or, when it has none, the job ended: the
  reaper found no attempt left, or a cancel was pending).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain.model import COMMITTED_OUTCOMES, Attempt, Job, Outcome
from taskyard.domain.timefmt import seconds_between
from tests.chaos.nemesis import WORKER_FAULTS, FaultRecord


@attrs.frozen(kw_only=True)
class Wait:
    job_id: UUID
    attempt: int
    fault: FaultRecord
    moved_on_at: datetime
    how: str
    """`next attempt` or `job ended`."""

    @property
    def wait_s(self) -> float:
        return seconds_between(self.fault.at, self.moved_on_at)


@attrs.frozen(kw_only=True)
class Waits:
    waits: tuple[Wait, ...]
    unexplained: tuple[Attempt, ...]
    """Attempts lost (`worker_lost` by the reaper, or `stale`) on a worker no fault struck
    while they ran: a worker that fell behind on its heartbeats on a busy machine."""

    @property
    def longest(self) -> Wait | None:
        return max(self.waits, key=lambda w: w.wait_s, default=None)


def _lost(attempt: Attempt) -> bool:
    reaped = (
        attempt.outcome is Outcome.WORKER_LOST
        and attempt.error is not None
        and attempt.error.type == "worker_lost"
    )
    return reaped or attempt.outcome is Outcome.STALE


def waits_after_worker_faults(
    faults: Sequence[FaultRecord],
    jobs: Mapping[UUID, Job],
    attempts: Mapping[UUID, Sequence[Attempt]],
) -> Waits:
    """Each lost attempt is charged to the first worker fault that struck its worker at or
    after the attempt began."""
    by_worker: dict[str, list[FaultRecord]] = {}
    for fault in sorted(faults, key=lambda f: f.at):
        if fault.kind in WORKER_FAULTS:
            by_worker.setdefault(fault.target, []).append(fault)
    waits: list[Wait] = []
    unexplained: list[Attempt] = []
    for job_id in sorted(attempts):
        records = sorted(attempts[job_id], key=lambda a: a.attempt)
        for index, attempt in enumerate(records):
            if not _lost(attempt):
                continue
            struck = [f for f in by_worker.get(attempt.worker, ()) if f.at >= attempt.started_at]
            if not struck:
                unexplained.append(attempt)
                continue
            if index + 1 < len(records):
                moved_on_at, how = records[index + 1].started_at, "next attempt"
            else:
                finished_at = jobs[job_id].finished_at
                if finished_at is None:
                    continue  # still open: `no_job_lost` names it
                moved_on_at, how = finished_at, "job ended"
            waits.append(
                Wait(
                    job_id=job_id,
                    attempt=attempt.attempt,
                    fault=struck[0],
                    moved_on_at=moved_on_at,
                    how=how,
                )
            )
    return Waits(waits=tuple(waits), unexplained=tuple(unexplained))


def _ending(job: Job, attempt: Attempt) -> bool:
    if attempt.outcome in (Outcome.SUCCEEDED, Outcome.CANCELLED):
        return True
    return attempt.outcome in COMMITTED_OUTCOMES and attempt.attempt >= job.attempt_limit


def committed_twice(
    jobs: Mapping[UUID, Job], attempts: Mapping[UUID, Sequence[Attempt]]
) -> list[UUID]:
    """Jobs whose ending outcome was committed more than once, or that committed anything
    after it (no run of this test retries a job by hand, so the budget never renews)."""
    twice = []
    for job_id in sorted(jobs):
        records = sorted(attempts.get(job_id, ()), key=lambda a: a.attempt)
        ended = [i for i, a in enumerate(records) if _ending(jobs[job_id], a)]
        after_end = ended and any(a.outcome in COMMITTED_OUTCOMES for a in records[ended[0] + 1 :])
        if len(ended) > 1 or after_end:
            twice.append(job_id)
    return twice


def handler_runs(log_lines: Iterable[Mapping[str, Any]]) -> Counter[tuple[str, str]]:
    """`handler finished` lines by (job id, outcome): what handlers did, committed or not."""
    runs: Counter[tuple[str, str]] = Counter()
    for line in log_lines:
        if line.get("message") == "handler finished" and line.get("job_id"):
            runs[(str(line["job_id"]), str(line.get("outcome")))] += 1
    return runs


def outcomes(attempts: Mapping[UUID, Sequence[Attempt]]) -> Counter[str]:
    return Counter(a.outcome.value for records in attempts.values() for a in records)
