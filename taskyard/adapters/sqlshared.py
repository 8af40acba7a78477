"""What the SQL stores (PostgreSQL and SQLite) share.

* `Column` and `Table`: a table's columns declared once per dialect (name, type, how a
  value is stored and read back, whether a transition may change it); the statements'
  column lists and the row readers and writers are made from that declaration.
* The stored shapes of values that live in JSON columns (errors, retry policies).
* Migrations: the versioned SQL files shipped in the package.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any, Generic, TypeVar

import attrs

from taskyard.domain.model import Attempt, ErrorInfo, Job, JsonValue, Lease
from taskyard.domain.retry import Jitter, RetryPolicy

R = TypeVar("R", Job, Attempt)
Codec = Callable[[Any], Any]

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


def error_to_json(error: ErrorInfo) -> dict[str, Any]:
    return {"type": error.type, "message": error.message, "traceback": error.traceback}


def error_from_json(data: Any) -> ErrorInfo:
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


# --- tables -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Column:
    """One column of a table in one dialect. The column holds the attribute of the same
    name (a job's `lease` is held by `lease_worker` and `lease_expires_at`); `None` is
    SQL NULL both ways and never goes through a codec."""

    name: str
    type: str = "text"
    load: Codec | None = None
    """The stored value (as the driver returns it) to the attribute."""
    dump: Codec | None = None
    """The attribute to the stored value (as the driver takes it)."""
    select: str | None = None
    """The expression that reads the column, where not the column itself."""
    null: bool = False
    changes: bool = False
    """A transition may change it: an update writes it."""

    def __attrs_post_init__(self) -> None:
        assert self.name.isidentifier() and not keyword.iskeyword(self.name), self.name


_LEASE = {"lease_worker": "worker", "lease_expires_at": "expires_at"}


def _generated(source: str, names: Mapping[str, Any], function: str) -> Any:
    """A function compiled from `source` (built below from a declaration, as attrs builds
    `__init__`): a row reader or writer as fast as one written out by hand."""
    scope = dict(names)
    exec(compile(source, f"<taskyard row code {function}>", "exec"), scope)
    return scope[function]


def _coded(codec: Codec | None, value: str, name: str, scope: dict[str, Any]) -> str:
    if codec is None:
        return value
    scope[name] = codec
    return f"{name}({value})"


class Table(Generic[R]):
    """A table of jobs or attempt records in one dialect, from its columns' declaration."""

    def __init__(self, kind: type[R], columns: Sequence[Column]) -> None:
        self.kind: type[R] = kind
        self.columns = tuple(columns)
        self.names = tuple(c.name for c in self.columns)
        self.changing = tuple(c for c in self.columns if c.changes)
        self.read: Callable[[Sequence[Any]], R] = self._reader()
        self.values: Callable[[R], tuple[Any, ...]] = self.writer(self.columns)
        """A value as the row that stores it (every column, dumped)."""

    def select(self, prefix: str = "") -> str:
        """The select list that `read` takes a row of (`prefix`: a table alias and a dot)."""
        return ", ".join(
            f"{c.select.format(c=prefix + c.name)} AS {c.name}" if c.select else prefix + c.name
            for c in self.columns
        )

    def _reader(self) -> Callable[[Sequence[Any]], R]:
        scope: dict[str, Any] = {"Kind": self.kind, "Lease": Lease}
        fields: dict[str, str] = {}
        lease: dict[str, str] = {}
        for index, column in enumerate(self.columns):
            raw = f"v{index}"
            value = _coded(column.load, raw, f"load{index}", scope)
            if self.kind is Job and column.name in _LEASE:
                lease[_LEASE[column.name]] = value  # both set or both NULL (a schema check)
            elif column.null and value != raw:
                fields[column.name] = f"None if {raw} is None else {value}"
            else:
                fields[column.name] = value
        if lease:
            parts = ", ".join(f"{k}={v}" for k, v in lease.items())
            worker = f"v{self.names.index('lease_worker')}"
            fields["lease"] = f"None if {worker} is None else Lease({parts})"
        source = (
            f"def read(row):\n    {', '.join(f'v{i}' for i in range(len(self.columns)))}, = row\n"
            f"    return Kind({', '.join(f'{k}=({v})' for k, v in fields.items())})\n"
        )
        reader: Callable[[Sequence[Any]], R] = _generated(source, scope, "read")
        return reader

    def writer(
        self, columns: Sequence[Column], *, wire: Mapping[str, Codec] | None = None
    ) -> Callable[[R], tuple[Any, ...]]:
        """A value as the stored values of `columns`, each dumped and then put on `wire`
        (by column type: a JSON document, for instance, wants text for a timestamp)."""
        scope: dict[str, Any] = {}
        values: list[str] = []
        for index, column in enumerate(columns):
            null = column.null
            got = f"obj.{column.name}"
            if self.kind is Job and column.name in _LEASE:
                got, null = f"obj.lease.{_LEASE[column.name]}", True
            value = _coded(column.dump, got, f"dump{index}", scope)
            value = _coded((wire or {}).get(column.type), value, f"wire{index}", scope)
            if got.startswith("obj.lease."):
                value = f"None if obj.lease is None else {value}"
            elif null and value != got:
                value = f"None if {got} is None else {value}"
            values.append(f"({value})")
        source = f"def write(obj):\n    return ({', '.join(values)},)\n"
        writer: Callable[[R], tuple[Any, ...]] = _generated(source, scope, "write")
        return writer


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


# --- until PostgreSQL runs on the engine (removed with it) --------------------------------

from collections.abc import Iterable  # noqa: E402
from datetime import datetime  # noqa: E402
from uuid import UUID  # noqa: E402

from taskyard.domain import transitions as t  # noqa: E402
from taskyard.domain.model import REPORTED_OUTCOMES, AttemptTotals, JobState, LeaseRef, Outcome  # noqa: E402
from taskyard.domain.ports import ReportResult, ReportStatus  # noqa: E402


def pg_error_to_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    return None if error is None else error_to_json(error)


def pg_error_from_json(data: Any) -> ErrorInfo | None:
    return None if data is None else error_from_json(data)


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
