"""What the SQL stores (PostgreSQL and SQLite) share.

* The stored shapes of values that live in JSON columns (errors, retry policies).
* `Batch`: jobs and attempt records loaded (and locked) for one transaction, with the
  pure transitions of `taskyard.domain.transitions` applied to them one after another,
  exactly as the in-memory store applies them. What it collected is then written with
  one conditional write per job on the `(id, state, attempt)` it was loaded with.
* `plan_reports` / `plan_releases`: a worker's batch of reports or hand-backs, judged
  each on its own fence by the domain's functions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain import transitions as t
from taskyard.domain.model import (
    REPORTED_OUTCOMES,
    Attempt,
    AttemptTotals,
    ErrorInfo,
    Job,
    JobState,
    JsonValue,
    LeaseRef,
    Outcome,
)
from taskyard.domain.ports import ReportResult, ReportStatus
from taskyard.domain.retry import Jitter, RetryPolicy

RETRY_BUDGET_DEFAULT = 3
"""How many times a transaction refused for a deadlock or serialization failure (nothing
was written) is run again before the caller hears `StoreUnavailable`."""


# --- JSON columns -------------------------------------------------------------------------


def json_text(value: JsonValue) -> str | None:
    """JSON text for a JSON column; None (no value) is SQL NULL."""
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def normalized(value: JsonValue) -> JsonValue:
    """`value` as it reads back from a JSON column (tuples become lists, and so on), so the
    job a store returns equals the job it later reads."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return json.loads(json.dumps(value, allow_nan=False))


def error_to_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"type": error.type, "message": error.message, "traceback": error.traceback}


def error_from_json(data: Any) -> ErrorInfo | None:
    if data is None:
        return None
    if isinstance(data, str):
        data = json.loads(data)
    return ErrorInfo(type=data["type"], message=data["message"], traceback=data.get("traceback"))


def policy_from_json(data: Any) -> RetryPolicy:
    if isinstance(data, str):
        data = json.loads(data)
    return RetryPolicy(
        base_s=float(data["base_seconds"]),
        factor=float(data["factor"]),
        max_s=float(data["max_seconds"]),
        jitter=Jitter(data["jitter"]),
    )


def percentile_index(count: int, fraction: float) -> int:
    """The index into `count` sorted values that the in-memory store reports for `fraction`.

    >>> [percentile_index(n, 0.5) for n in (1, 2, 3, 4, 10)]
    [0, 0, 1, 2, 4]
    >>> percentile_index(10, 0.95)
    9
    """
    assert count >= 1, count
    return min(count - 1, max(0, round(fraction * (count - 1))))


# --- batches of transitions ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JobWrite:
    """Write `after` where the row still has `before`'s (id, state, attempt)."""

    before: Job
    after: Job


class Batch:
    """Jobs loaded for one transaction and the changes the domain made to them."""

    def __init__(self, jobs: Iterable[Job], attempts: Iterable[Attempt]) -> None:
        self._loaded: dict[UUID, Job] = {job.id: job for job in jobs}
        self._current: dict[UUID, Job] = dict(self._loaded)
        self._attempts: dict[tuple[UUID, int], Attempt] = {
            (a.job_id, a.attempt): a for a in attempts
        }
        self._touched: dict[tuple[UUID, int], Attempt] = {}

    def job(self, job_id: UUID) -> Job | None:
        return self._current.get(job_id)

    def attempt(self, job_id: UUID, number: int) -> Attempt | None:
        return self._attempts.get((job_id, number))

    def put_attempt(self, record: Attempt) -> None:
        key = (record.job_id, record.attempt)
        self._attempts[key] = record
        self._touched[key] = record

    def apply(self, step: t.Step) -> Job:
        current = self._current[step.job.id]
        assert (current.state, current.attempt) == (step.before.state, step.before.attempt)
        self._current[step.job.id] = step.job
        if step.attempt is not None:
            self.put_attempt(step.attempt)
        return step.job

    def job_writes(self) -> list[JobWrite]:
        """One write per changed job, in id order (the order rows are locked in)."""
        return [
            JobWrite(before=self._loaded[job_id], after=self._current[job_id])
            for job_id in sorted(self._current)
            if self._current[job_id] != self._loaded[job_id]
        ]

    def attempt_writes(self) -> list[Attempt]:
        return [self._touched[key] for key in sorted(self._touched)]


def plan_reports(batch: Batch, reports: Sequence[t.Report], *, now: datetime) -> list[ReportResult]:
    """Judge each report on its own fence, in order, as the in-memory store does."""
    out: list[ReportResult] = []
    for report in reports:
        job = batch.job(report.ref.job_id)
        if job is None:
            out.append(ReportResult(ref=report.ref, status=ReportStatus.NOT_FOUND))
            continue
        kept = attrs.evolve(report, result=normalized(report.result))
        verdict = t.apply_report(job, batch.attempt(job.id, report.ref.attempt), kept, now=now)
        if isinstance(verdict, t.Step):
            done = batch.apply(verdict)
            out.append(ReportResult(ref=report.ref, status=ReportStatus.APPLIED, state=done.state))
        elif isinstance(verdict, t.AlreadyApplied):
            out.append(
                ReportResult(ref=report.ref, status=ReportStatus.ALREADY_APPLIED, state=job.state)
            )
        else:
            if verdict.attempt is not None:
                batch.put_attempt(verdict.attempt)
            out.append(ReportResult(ref=report.ref, status=ReportStatus.STALE, state=job.state))
    return out


def fast_success_indexes(reports: Sequence[t.Report]) -> list[int]:
    """The reports a store may commit with a set-based statement for successes: each is a
    success and the first report in the batch for its job. A later report for the same job
    must be judged after the first one landed (it is `ALREADY_APPLIED` or stale), so it goes
    to the pure path, in order, with everything else.

    >>> from uuid import UUID
    >>> from taskyard.domain.model import LeaseRef
    >>> def r(n, kind=t.ReportKind.SUCCEEDED):
    ...     error = None if kind is t.ReportKind.SUCCEEDED else ErrorInfo(type="x", message="x")
    ...     ref = LeaseRef(job_id=UUID(int=n), attempt=1, worker="w")
    ...     return t.Report(ref=ref, kind=kind, error=error)
    >>> fast_success_indexes([r(1), r(2, t.ReportKind.FAILED), r(1), r(3)])
    [0, 3]
    >>> fast_success_indexes([r(2, t.ReportKind.FAILED), r(2)])
    []
    """
    seen: set[UUID] = set()
    fast: list[int] = []
    for index, report in enumerate(reports):
        job_id = report.ref.job_id
        if job_id in seen:
            continue
        seen.add(job_id)
        if report.kind is t.ReportKind.SUCCEEDED:
            fast.append(index)
    return fast


def plan_releases(batch: Batch, refs: Sequence[LeaseRef], *, now: datetime) -> list[ReportResult]:
    out: list[ReportResult] = []
    for ref in refs:
        job = batch.job(ref.job_id)
        if job is None:
            out.append(ReportResult(ref=ref, status=ReportStatus.NOT_FOUND))
            continue
        step = t.release(job, batch.attempt(job.id, ref.attempt), ref, now=now)
        if isinstance(step, t.Step):
            done = batch.apply(step)
            out.append(ReportResult(ref=ref, status=ReportStatus.APPLIED, state=done.state))
        else:
            out.append(ReportResult(ref=ref, status=ReportStatus.STALE, state=job.state))
    return out


def attempt_keys(refs: Iterable[LeaseRef]) -> list[tuple[UUID, int]]:
    return sorted({(ref.job_id, ref.attempt) for ref in refs})


def dependency_ids(jobs: Iterable[Job]) -> list[UUID]:
    return sorted({dep for job in jobs for dep in job.depends_on})


def states_of(deps: Iterable[UUID], states: Mapping[UUID, JobState]) -> dict[UUID, JobState]:
    """The states of `deps`, each of which must be in `states`."""
    return {dep: states[dep] for dep in deps}


# --- migrations ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(dialect: str) -> list[Migration]:
    """The versioned SQL files shipped in `taskyard/adapters/migrations/<dialect>/`, named
    `NNNN_name.sql`, in version order."""
    folder = resources.files("taskyard.adapters").joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        found.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=entry.read_text(encoding="utf-8"),
            )
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    assert versions == list(range(1, len(found) + 1)), f"migrations must be 1..n: {versions}"
    return found


_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def attempt_totals_from_rows(
    rows: Iterable[Sequence[Any]], bounds: Sequence[float]
) -> AttemptTotals:
    """Fold `(outcome, count, sum of run seconds, count <= bound for each bound)` rows,
    one per outcome, into `AttemptTotals`; run times count only for reported outcomes."""
    by_outcome = dict.fromkeys(Outcome, 0)
    counts = [0] * len(bounds)
    run_count = 0
    run_sum_s = 0.0
    for row in rows:
        outcome = Outcome(row[0])
        by_outcome[outcome] = int(row[1])
        if outcome in REPORTED_OUTCOMES:
            run_count += int(row[1])
            run_sum_s += float(row[2] or 0.0)
            for index in range(len(bounds)):
                counts[index] += int(row[3 + index] or 0)
    return AttemptTotals(
        by_outcome=by_outcome,
        run_s_buckets=tuple(bounds),
        run_s_counts=tuple(counts),
        run_s_count=run_count,
        run_s_sum_s=run_sum_s,
    )
