"""What the SQL stores (PostgreSQL and SQLite) share.

* `Column` and `Table`: a table's columns declared once per dialect (name, type, how a
  value is stored and read back, whether a transition may change it); the statements'
  column lists and the row readers and writers are made from that declaration.
* The stored shapes of values that live in JSON columns (errors, retry policies), and
  the task catalog's rows.
* Migrations: the versioned SQL files shipped in the package.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from math import isfinite
from typing import Any, Generic, TypeVar
from uuid import UUID

import attrs

from taskyard.domain.arguments import Parameters
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.model import (
    Attempt,
    ErrorInfo,
    FireId,
    Job,
    JobState,
    JsonValue,
    Lease,
    Outcome,
)
from taskyard.domain.ports import JobFilter
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.schedules import Fire, FireCounts, FireOutcome, Schedule, parse_schedule
from taskyard.domain.store.rows import RunTimes
from taskyard.domain.timefmt import parse_time

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
    if type(value) in _READS_BACK_AS_IS or _plain_number(value):
        return value
    if value == {}:
        return {}
    if type(value) is dict and all(
        type(k) is str and (type(v) in _READS_BACK_AS_IS or _plain_number(v))
        for k, v in value.items()
    ):
        # A flat object of plain values (a job's usual args) reads back as it is: a copy
        # spares the JSON round trip (the bulk enqueue's largest cost after validation).
        return dict(value)
    return json.loads(json.dumps(value, allow_nan=False))


_READS_BACK_AS_IS = frozenset({str, bool, type(None)})
"""Types (exactly these, not their subclasses) whose values a JSON column gives back
unchanged."""
_INT_TEXT_MAX = 10**4000
"""Integers below this in size are written as text by `json` whatever Python's limit on
integer digits (4,300 by default); larger ones take the round trip, which says so."""


def _plain_number(value: object) -> bool:
    """An int or a finite float (not a subclass): written and read back as it is."""
    if type(value) is int:
        return -_INT_TEXT_MAX < value < _INT_TEXT_MAX
    return type(value) is float and isfinite(value)


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


@attrs.frozen
class Column:
    """One column of a table in one dialect. The column holds the attribute of the same
    name (a job's `lease` is held by `lease_worker` and `lease_expires_at`); `None` is
    SQL NULL both ways and never goes through a codec."""

    name: str
    type: str = "text"
    load: Codec | None = attrs.field(default=None, kw_only=True)
    """The stored value (as the driver returns it) to the attribute."""
    dump: Codec | None = attrs.field(default=None, kw_only=True)
    """The attribute to the stored value (as the driver takes it)."""
    select: str | None = attrs.field(default=None, kw_only=True)
    """The expression that reads the column (`{c}` is the column), where not the column."""
    null: bool = attrs.field(default=False, kw_only=True)
    changes: bool = attrs.field(default=False, kw_only=True)
    """A transition may change it: an update writes it."""

    def __attrs_post_init__(self) -> None:
        assert self.name.isidentifier() and not keyword.iskeyword(self.name), self.name


def filter_terms(job_filter: JobFilter) -> list[tuple[str, list[str]]]:
    """A filter's conditions: each column it names, with the values that column may hold."""
    terms = (
        ("state", sorted(s.value for s in job_filter.states)),
        ("queue", sorted(job_filter.queues)),
        ("task", sorted(job_filter.tasks)),
    )
    return [(column, values) for column, values in terms if values]


SETTINGS_COLUMNS = (
    "concurrency_limit, key_concurrency_limit, rate_count, rate_period_s, key_rate_count,"
    " key_rate_period_s, weight"
)
"""A queue's limits as both SQL stores keep them (`queue_settings`), in this order."""


def settings_row(limits: QueueLimits) -> tuple[Any, ...]:
    rate, key_rate = limits.rate_limit, limits.key_rate_limit
    return (
        limits.concurrency_limit,
        limits.key_concurrency_limit,
        rate.count if rate else None,
        float(rate.period_s) if rate else None,
        key_rate.count if key_rate else None,
        float(key_rate.period_s) if key_rate else None,
        limits.weight,
    )


def limits_of_row(row: Sequence[Any]) -> QueueLimits:
    concurrency, key_concurrency, count, period, key_count, key_period, weight = row
    return QueueLimits(
        concurrency_limit=concurrency,
        key_concurrency_limit=key_concurrency,
        rate_limit=None if count is None else RateLimit(count=count, period_s=period),
        key_rate_limit=(
            None if key_count is None else RateLimit(count=key_count, period_s=key_period)
        ),
        weight=weight,
    )


def retention_by_queue(rows: Iterable[tuple[str, str, int]]) -> dict[str, dict[JobState, int]]:
    """Rows of `(queue, state, retention_s)` as overrides by queue."""
    out: dict[str, dict[JobState, int]] = {}
    for queue, state, seconds in rows:
        out.setdefault(queue, {})[JobState(state)] = int(seconds)
    return out


def error_column(name: str, type: str = "text") -> Column:
    """A column of an `ErrorInfo`, as JSON, that a transition may change."""
    return Column(name, type, load=error_from_json, dump=error_text, null=True, changes=True)


def error_text(error: ErrorInfo) -> str:
    text = json_text(error_to_json(error))
    assert text is not None
    return text


def enum_value(value: JobState | Outcome) -> str:
    return str(value)  # a StrEnum's str is its value, and cheaper to reach than `.value`


def literals(*states: JobState) -> str:
    """States as SQL literals: the values come from the domain, and the planner sees them (a
    partial index is used only for a predicate it can match)."""
    assert all(s.value.isidentifier() for s in states), states
    return ", ".join(f"'{s.value}'" for s in sorted(states))


def run_times(counters: Iterable[Sequence[Any]], bounds: Sequence[float]) -> list[RunTimes]:
    """The `attempt_counts` table's rows `(outcome, bound, n, sum_s)` (both dialects keep
    it by trigger) as `RunTimes` over `bounds`: an attempt counts at each requested bound
    at or above its own; bound -1 marks one not finished (no run time)."""
    folded: dict[str, tuple[int, float, list[int]]] = {}
    for outcome, bound, n, sum_s in counters:
        count, total_s, at_most = folded.get(outcome, (0, 0.0, [0] * len(bounds)))
        if bound >= 0:
            at_most = [
                c + (int(n) if bound <= b else 0) for c, b in zip(at_most, bounds, strict=True)
            ]
        folded[outcome] = (count + int(n), total_s + float(sum_s), at_most)
    return [
        RunTimes(outcome=Outcome(outcome), count=count, sum_s=total_s, at_most=tuple(at_most))
        for outcome, (count, total_s, at_most) in folded.items()
        if count
    ]


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


TASK_COLUMNS = (
    "name, queue, priority, max_attempts, backoff, timeout_s, params, published_by, published_at"
)
"""The task catalog's columns, in the order of `task_row` and `task_from_row`."""


def task_row(task: TaskInfo, published_at: Any) -> tuple[Any, ...]:
    """A catalog entry as a row (`TASK_COLUMNS`), JSON as text, its time as the store
    keeps times."""
    assert task.published_by is not None, "only a published task is stored"
    return (
        task.name,
        task.queue,
        task.priority,
        task.max_attempts,
        json_text(task.backoff.to_json()),
        task.timeout_s,
        json_text(task.params.to_json()),
        task.published_by,
        published_at,
    )


def task_from_row(row: Sequence[Any], published_at: datetime) -> TaskInfo:
    name, queue, priority, max_attempts, backoff, timeout_s, params, published_by, _ = row
    return TaskInfo(
        name=name,
        queue=queue,
        priority=int(priority),
        max_attempts=int(max_attempts),
        backoff=policy_from_json(backoff),
        timeout_s=None if timeout_s is None else float(timeout_s),
        params=Parameters.from_json(json.loads(params) if isinstance(params, str) else params),
        published_by=published_by,
        published_at=published_at,
    )


# --- schedules ----------------------------------------------------------------------------

SCHEDULE_COLUMNS = (
    "name, spec, paused, next_fire_at, last_fire_at, last_job_id, recent, counts, created_at,"
    " updated_at"
)
"""The schedules table's columns, in the order of `schedule_row` and `schedule_from_row`."""


def schedule_row(schedule: Schedule, time: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """A schedule as a row (`SCHEDULE_COLUMNS`): JSON as text, times as `time` keeps them."""
    return (
        schedule.name,
        json_text(schedule.spec.to_json()),
        schedule.paused,
        time(schedule.next_fire_at),
        None if schedule.last_fire_at is None else time(schedule.last_fire_at),
        None if schedule.last_job_id is None else str(schedule.last_job_id),
        json_text([fire.to_json() for fire in schedule.recent]),
        json_text(attrs.asdict(schedule.counts)),
        time(schedule.created_at),
        time(schedule.updated_at),
    )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def schedule_from_row(row: Sequence[Any], time: Callable[[Any], datetime]) -> Schedule:
    _, spec, paused, next_fire_at, last_fire_at, last_job_id, recent, counts, created, updated = row
    return Schedule(
        spec=parse_schedule(_json(spec))[0],
        paused=bool(paused),
        next_fire_at=time(next_fire_at),
        last_fire_at=None if last_fire_at is None else time(last_fire_at),
        last_job_id=None if last_job_id is None else UUID(str(last_job_id)),
        recent=tuple(_fire(fire) for fire in _json(recent)),
        counts=_counts(_json(counts)),
        created_at=time(created),
        updated_at=time(updated),
    )


def _fire(data: Mapping[str, Any]) -> Fire:
    job_id = data.get("job_id")
    return Fire(
        fire_at=parse_time(data["fire_at"]),
        outcome=FireOutcome(data["outcome"]),
        job_id=None if job_id is None else UUID(job_id),
    )


def _counts(data: Mapping[str, Any]) -> FireCounts:
    return FireCounts(
        enqueued=int(data["enqueued"]),
        missed=int(data["missed"]),
        overlap_skipped=int(data["overlap_skipped"]),
        lag_s_sum=float(data["lag_s_sum"]),
    )


def fire_text(fire: FireId) -> str | None:
    """A job's `schedule` (the fire that enqueued it) for its JSON column."""
    return json_text(fire.to_json())


def fire_from_json(data: Any) -> FireId:
    data = _json(data)
    return FireId(name=data["name"], fire_at=parse_time(data["fire_at"]))
