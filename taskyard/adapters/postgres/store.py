"""The PostgreSQL store: production's durable truth, on psycopg 3 and a connection pool.

Guards. Every change is conditional on the row's `(id, state, attempt)` and every time
comparison uses the server's `now()` (the transaction's start), so no worker clock ever
decides anything:

* The hot paths are single set-based statements: `claim` (pick with `FOR UPDATE SKIP
  LOCKED` in claim order, bump the attempt, open the attempt record),
  `heartbeat` (every lease of the call in one `UPDATE ... FROM unnest(...)`),
  `promote_due`, `reap_expired` and `resolve_dependencies`.
* The worker's outcomes (`report`, `release`) lock the rows of the batch in id order,
  let the domain's pure functions judge each report on its fence, and write all of them
  back with one conditional `UPDATE` (plus one upsert of attempt records), in one
  transaction.
* A person's changes (`cancel`, `retry`, `reschedule`) and `checkpoint` lock one row and
  go through the same pure functions; the bulk ones are set-based statements.

Session state: none on any path. The pool's connections are in autocommit mode and every
unit of work is an explicit transaction; there is no `LISTEN`, no `SET`, no session-level
advisory lock. Behind PgBouncer in transaction-pooling mode older than 1.21, turn off
psycopg's server-side prepared statements with `prepare_threshold=None` (or
`?prepare_threshold=none` in the URL).

Errors: a lost connection, a server that refuses (shutdown, read-only, out of space,
statement timeout) or an unmigrated database surface as `StoreUnavailable`; a transaction
that fails before its commit leaves nothing behind. A failure *during* the commit is
ambiguous: `enqueue` resolves it by re-reading the job ids it wrote; other calls raise
`StoreUnavailable` and their repeat resolves it (a repeated report answers
`ALREADY_APPLIED`, a repeated enqueue with an idempotency key returns the job).
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format, TransactionStatus
from psycopg.rows import TupleRow, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from taskyard.adapters.sqlshared import (
    RETRY_BUDGET_DEFAULT,
    Batch,
    attempt_keys,
    attempt_totals_from_rows,
    fast_success_indexes,
    json_text,
    normalized,
    percentile_index,
    pg_error_from_json,
    pg_error_to_json,
    plan_releases,
    plan_reports,
    policy_from_json,
)
from taskyard.domain import transitions as t
from taskyard.domain.errors import (
    IdempotencyConflict,
    JobNotFound,
    Refusal,
    StoreUnavailable,
    UnknownDependency,
)
from taskyard.domain.model import (
    Attempt,
    AttemptTotals,
    Enqueued,
    Job,
    JobState,
    Lease,
    LeaseRef,
    NewJob,
    Outcome,
    QueueInfo,
    Stats,
)
from taskyard.domain.ports import (
    ClaimRequest,
    JobFilter,
    JobPage,
    JobQuery,
    LeaseStatus,
    Promoted,
    ReportResult,
    ReportStatus,
)
from taskyard.domain.retry import RetryPolicy
from taskyard.domain.timefmt import after

S = JobState
T = TypeVar("T")
Conn = psycopg.Connection[Any]

POOL_MIN_SIZE_DEFAULT = 1
POOL_MAX_SIZE_DEFAULT = 10
POOL_TIMEOUT_S_DEFAULT = 10.0
CONNECT_TIMEOUT_S_DEFAULT = 5
PREPARE_THRESHOLD_DEFAULT: int | None = 5

JOB_FIELDS = (
    "id",
    "task",
    "args",
    "queue",
    "priority",
    "run_at",
    "max_attempts",
    "backoff",
    "timeout_s",
    "idempotency_key",
    "depends_on",
    "state",
    "attempt",
    "attempt_limit",
    "created_at",
    "updated_at",
    "finished_at",
    "lease_worker",
    "lease_expires_at",
    "cancel_requested",
    "checkpoint",
    "result",
    "last_error",
    "correlation_id",
    "fingerprint",
)
_AS_TEXT = frozenset({"args", "backoff"})
"""JSON columns read as text: psycopg's jsonb loader costs a few microseconds a value, and
these two are in every row a worker claims (`{}` and one of a handful of retry policies,
which `_policy` keeps decoded)."""


def _select(column: str, prefix: str = "") -> str:
    return f"{prefix}{column}::text AS {column}" if column in _AS_TEXT else f"{prefix}{column}"


JOB_COLUMNS = ", ".join(_select(c) for c in JOB_FIELDS)
J_COLUMNS = ", ".join(_select(c, "j.") for c in JOB_FIELDS)
ATTEMPT_COLUMNS = (
    "job_id, attempt, worker, started_at, lease_expires_at, finished_at, outcome, error"
)
A_COLUMNS = ", ".join(f"a.{c.strip()}" for c in ATTEMPT_COLUMNS.split(","))

_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialization failure and deadlock: the server rolled the transaction back whole."""


# --- rows ---------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _maybe_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


_STATES: dict[str, JobState] = {state.value: state for state in JobState}
_POLICIES: dict[str, RetryPolicy] = {}
_POLICIES_MAX = 1024


def _policy(text: str) -> RetryPolicy:
    """The retry policy of a `backoff` column's text; the few distinct ones are kept."""
    policy = _POLICIES.get(text)
    if policy is None:
        if len(_POLICIES) >= _POLICIES_MAX:
            _POLICIES.clear()
        policy = _POLICIES[text] = policy_from_json(text)
    return policy


def _plain(jobs: Sequence[NewJob]) -> bool:
    """No idempotency key and no dependency: nothing to look up before writing."""
    return all(new.idempotency_key is None and not new.depends_on for new in jobs)


class _EncodedJsonbDumper(Dumper):
    """A jsonb value already in PostgreSQL's binary form (the version byte 1, then the JSON
    text): a `COPY` of plain jobs encodes each row's JSON once, and the few distinct retry
    policies once for all."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        assert isinstance(obj, bytes) and obj[:1] == b"\x01", "encoded jsonb"
        return obj


def _jsonb(text: str) -> bytes:
    return b"\x01" + text.encode()


_EMPTY_JSONB = _jsonb("{}")
_BACKOFF_JSONB: dict[str, bytes] = {}


def _backoff_jsonb(text: str) -> bytes:
    encoded = _BACKOFF_JSONB.get(text)
    if encoded is None:
        if len(_BACKOFF_JSONB) >= _POLICIES_MAX:
            _BACKOFF_JSONB.clear()
        encoded = _BACKOFF_JSONB[text] = _jsonb(text)
    return encoded


_MICROSECOND = timedelta(microseconds=1)
_BACKOFF_TEXTS: dict[RetryPolicy, str] = {}


def _backoff_text(policy: RetryPolicy) -> str:
    text = _BACKOFF_TEXTS.get(policy)
    if text is None:
        if len(_BACKOFF_TEXTS) >= _POLICIES_MAX:
            _BACKOFF_TEXTS.clear()
        text = _BACKOFF_TEXTS[policy] = json.dumps(policy.to_json())
    return text


@attrs.frozen(kw_only=True)
class _PlainJob:
    """A plain submission with its JSON as text and its args as they will read back."""

    new: NewJob
    args: dict[str, Any]
    args_text: str
    backoff_text: str
    delay_us: int | None

    @classmethod
    def of(cls, new: NewJob) -> _PlainJob:
        if new.args:
            args_text = json.dumps(new.args, separators=(",", ":"), allow_nan=False)
            args: dict[str, Any] = json.loads(args_text)
        else:
            args_text, args = "{}", {}
        delay_us = None
        if new.run_at is None:
            delay_us = timedelta(seconds=new.delay_s or 0.0) // _MICROSECOND
        return cls(
            new=new,
            args=args,
            args_text=args_text,
            backoff_text=_backoff_text(new.backoff),
            delay_us=delay_us,
        )

    def create(self, now: datetime) -> Job:
        return t.create(self.new, now=now, dependency_states={}, args=self.args)


def _json_object(text: str) -> dict[str, Any]:
    """An `args` column's text as a new dict."""
    if text == "{}":
        return {}
    value: dict[str, Any] = json.loads(text)
    return value


def _job(row: Sequence[Any]) -> Job:
    (
        job_id,
        task,
        args,
        queue,
        priority,
        run_at,
        max_attempts,
        backoff,
        timeout_s,
        idempotency_key,
        depends_on,
        state,
        attempt,
        attempt_limit,
        created_at,
        updated_at,
        finished_at,
        lease_worker,
        lease_expires_at,
        cancel_requested,
        checkpoint,
        result,
        last_error,
        correlation_id,
        fingerprint,
    ) = row
    return Job(
        id=job_id,
        task=task,
        args=_json_object(args),
        queue=queue,
        priority=priority,
        run_at=_utc(run_at),
        max_attempts=max_attempts,
        backoff=_policy(backoff),
        timeout_s=timeout_s,
        idempotency_key=idempotency_key,
        depends_on=tuple(depends_on),
        state=_STATES[state],
        attempt=attempt,
        attempt_limit=attempt_limit,
        created_at=_utc(created_at),
        updated_at=_utc(updated_at),
        finished_at=_maybe_utc(finished_at),
        lease=(
            Lease(worker=lease_worker, expires_at=_utc(lease_expires_at))
            if lease_worker is not None
            else None
        ),
        cancel_requested=cancel_requested,
        checkpoint=checkpoint,
        result=result,
        last_error=pg_error_from_json(last_error),
        correlation_id=correlation_id,
        fingerprint=fingerprint,
    )


def _attempt(row: Sequence[Any]) -> Attempt:
    job_id, number, worker, started_at, lease_expires_at, finished_at, outcome, error = row
    return Attempt(
        job_id=job_id,
        attempt=number,
        worker=worker,
        started_at=_utc(started_at),
        lease_expires_at=_utc(lease_expires_at),
        finished_at=_maybe_utc(finished_at),
        outcome=Outcome(outcome),
        error=pg_error_from_json(error),
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _new_row(job: Job) -> dict[str, Any]:
    """A new job as a JSON record for `jsonb_to_recordset`."""
    return {
        "id": str(job.id),
        "task": job.task,
        "args": job.args,
        "queue": job.queue,
        "priority": job.priority,
        "run_at": _iso(job.run_at),
        "max_attempts": job.max_attempts,
        "backoff": job.backoff.to_json(),
        "timeout_s": job.timeout_s,
        "idempotency_key": job.idempotency_key,
        "depends_on": [str(d) for d in job.depends_on],
        "state": job.state.value,
        "attempt": job.attempt,
        "attempt_limit": job.attempt_limit,
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "finished_at": _iso(job.finished_at),
        "last_error": pg_error_to_json(job.last_error),
        "correlation_id": job.correlation_id,
        "fingerprint": job.fingerprint,
    }


def _change_row(before: Job, job: Job) -> dict[str, Any]:
    """A changed job as a JSON record: the guard (`before`'s state and attempt) and every
    field a transition may change."""
    return {
        "id": str(before.id),
        "before_state": before.state.value,
        "before_attempt": before.attempt,
        "priority": job.priority,
        "run_at": _iso(job.run_at),
        "state": job.state.value,
        "attempt": job.attempt,
        "attempt_limit": job.attempt_limit,
        "updated_at": _iso(job.updated_at),
        "finished_at": _iso(job.finished_at),
        "lease_worker": job.lease.worker if job.lease else None,
        "lease_expires_at": _iso(job.lease.expires_at) if job.lease else None,
        "cancel_requested": job.cancel_requested,
        "checkpoint": job.checkpoint,
        "result": job.result,
        "last_error": pg_error_to_json(job.last_error),
    }


def _attempt_row(record: Attempt) -> dict[str, Any]:
    return {
        "job_id": str(record.job_id),
        "attempt": record.attempt,
        "worker": record.worker,
        "started_at": _iso(record.started_at),
        "lease_expires_at": _iso(record.lease_expires_at),
        "finished_at": _iso(record.finished_at),
        "outcome": record.outcome.value,
        "error": pg_error_to_json(record.error),
    }


# --- statements ---------------------------------------------------------------------------

_INSERT_JOBS = f"""
WITH r AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
        id uuid, task text, args jsonb, queue text, priority integer, run_at timestamptz,
        max_attempts integer, backoff jsonb, timeout_s double precision, idempotency_key text,
        depends_on uuid[], state text, attempt integer, attempt_limit integer,
        created_at timestamptz, updated_at timestamptz, finished_at timestamptz,
        last_error jsonb, correlation_id text, fingerprint text)
), inserted AS (
    INSERT INTO taskyard.jobs (id, task, args, queue, priority, run_at, max_attempts, backoff,
        timeout_s, idempotency_key, depends_on, state, attempt, attempt_limit, created_at,
        updated_at, finished_at, last_error, correlation_id, fingerprint)
    SELECT id, task, args, queue, priority, run_at, max_attempts, backoff, timeout_s,
        idempotency_key, depends_on, state, attempt, attempt_limit, created_at, updated_at,
        finished_at, last_error, correlation_id, fingerprint
    FROM r
    RETURNING {JOB_COLUMNS}
), edges AS (
    INSERT INTO taskyard.dependencies (job_id, depends_on)
    SELECT r.id, d.dep FROM r CROSS JOIN LATERAL unnest(r.depends_on) AS d(dep)
)
SELECT {JOB_COLUMNS} FROM inserted
"""

COPY_MIN_JOBS = 64
"""A batch of plain jobs (no idempotency key, no dependency) this large is written with
`COPY` after reading the transaction's time; a smaller one with `_INSERT_PLAIN`."""

_INSERT_PLAIN = """
WITH r AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(tasks)s::text[], %(args)s::text[],
        %(queues)s::text[], %(priorities)s::integer[], %(run_ats)s::timestamptz[],
        %(delays_us)s::bigint[], %(max_attempts)s::integer[], %(backoffs)s::text[],
        %(timeouts)s::double precision[], %(correlations)s::text[], %(fingerprints)s::text[])
        AS r(id, task, args, queue, priority, run_at, delay_us, max_attempts, backoff,
             timeout_s, correlation_id, fingerprint)
), ins AS (
    INSERT INTO taskyard.jobs (id, task, args, queue, priority, run_at, max_attempts,
        backoff, timeout_s, state, attempt, attempt_limit, created_at, updated_at,
        correlation_id, fingerprint)
    SELECT r.id, r.task, r.args::jsonb, r.queue, r.priority, w.run_at, r.max_attempts,
        r.backoff::jsonb, r.timeout_s,
        CASE WHEN w.run_at <= now() THEN 'queued' ELSE 'scheduled' END,
        0, r.max_attempts, now(), now(), r.correlation_id, r.fingerprint
    FROM r CROSS JOIN LATERAL (
        SELECT coalesce(r.run_at, now() + r.delay_us * interval '1 microsecond') AS run_at
    ) AS w
    RETURNING state
)
SELECT now(), count(*) FILTER (WHERE state = 'queued'), count(*) FROM ins
"""
"""Plain jobs in one statement that reads the time itself: `run_at` is the one given or
now() plus the delay (in whole microseconds, as `timedelta` rounds it), and the state is
`queued` when that is not after now(), else `scheduled`: `transitions.create` for a job
with no dependencies. It answers the time and how many were queued, so the store builds
the same jobs with `create` and checks it agrees."""

_INSERT_PLAIN_ONE = _INSERT_PLAIN.replace(
    _INSERT_PLAIN[_INSERT_PLAIN.index("WITH r AS (") : _INSERT_PLAIN.index("), ins AS (")],
    """WITH r AS (
    SELECT %s::uuid AS id, %s::text AS task, %s::text AS args, %s::text AS queue,
        %s::integer AS priority, %s::timestamptz AS run_at, %s::bigint AS delay_us,
        %s::integer AS max_attempts, %s::text AS backoff, %s::double precision AS timeout_s,
        %s::text AS correlation_id, %s::text AS fingerprint
""",
)
"""`_INSERT_PLAIN` for one job, its values as scalars."""

_COPY_PLAIN = """
COPY taskyard.jobs (id, task, args, queue, priority, run_at, max_attempts, backoff,
    timeout_s, state, attempt, attempt_limit, created_at, updated_at, correlation_id,
    fingerprint) FROM STDIN (FORMAT BINARY)
"""
_COPY_PLAIN_TYPES = [
    "uuid",
    "text",
    "jsonb",
    "text",
    "int4",
    "timestamptz",
    "int4",
    "jsonb",
    "float8",
    "text",
    "int4",
    "int4",
    "timestamptz",
    "timestamptz",
    "text",
    "text",
]

_WRITE_BATCH = """
WITH w AS (
    SELECT * FROM jsonb_to_recordset(%(jobs)s::jsonb) AS w(
        id uuid, before_state text, before_attempt integer, priority integer,
        run_at timestamptz, state text, attempt integer, attempt_limit integer,
        updated_at timestamptz, finished_at timestamptz, lease_worker text,
        lease_expires_at timestamptz, cancel_requested boolean, checkpoint jsonb,
        result jsonb, last_error jsonb)
), changed AS (
    UPDATE taskyard.jobs AS j
    SET priority = w.priority, run_at = w.run_at, state = w.state, attempt = w.attempt,
        attempt_limit = w.attempt_limit, updated_at = w.updated_at,
        finished_at = w.finished_at, lease_worker = w.lease_worker,
        lease_expires_at = w.lease_expires_at, cancel_requested = w.cancel_requested,
        checkpoint = w.checkpoint, result = w.result, last_error = w.last_error
    FROM w
    WHERE j.id = w.id AND j.state = w.before_state AND j.attempt = w.before_attempt
    RETURNING j.id
), a AS (
    SELECT * FROM jsonb_to_recordset(%(attempts)s::jsonb) AS a(
        job_id uuid, attempt integer, worker text, started_at timestamptz,
        lease_expires_at timestamptz, finished_at timestamptz, outcome text, error jsonb)
), recorded AS (
    INSERT INTO taskyard.attempts AS t (job_id, attempt, worker, started_at,
        lease_expires_at, finished_at, outcome, error)
    SELECT job_id, attempt, worker, started_at, lease_expires_at, finished_at, outcome, error
    FROM a
    ON CONFLICT (job_id, attempt) DO UPDATE
    SET lease_expires_at = excluded.lease_expires_at, finished_at = excluded.finished_at,
        outcome = excluded.outcome, error = excluded.error
    WHERE t.outcome = 'running'
    RETURNING 1
)
SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM recorded)
"""


_CLAIM = f"""
SELECT {JOB_COLUMNS}
FROM taskyard.claim(%(worker)s, %(limit)s, %(ttl_s)s, %(queues)s::text[], %(tasks)s::text[])
"""
"""`taskyard.claim` (migration 0002): pick up to `limit` due jobs in claim order, skipping
rows another claimer holds, make them running with a new attempt and lease, and open
their attempt records, in one statement under planner settings of its own."""

_HEARTBEAT = """
SELECT id, attempt, lease_worker, lease_expires_at, cancel_requested
FROM taskyard.heartbeat(%(ids)s::uuid[], %(attempts)s::integer[], %(workers)s::text[],
    %(ttl_s)s)
"""

_REPORT_SUCCEEDED = """
SELECT job_id FROM taskyard.report_succeeded(%(ids)s::uuid[], %(attempts)s::integer[],
    %(workers)s::text[], %(results)s::text[]) AS r(job_id)
"""
"""`taskyard.report_succeeded` (migration 0002): commit the successes that still hold a
live lease and were not asked to cancel, exactly as `transitions.apply_report` would; any
report it does not apply is judged again by the pure function."""

_PROMOTE = """
WITH due AS MATERIALIZED (
    SELECT j.id FROM taskyard.jobs AS j
    WHERE j.state IN ('scheduled', 'retrying') AND j.run_at <= now()
      AND (j.state = 'retrying' OR NOT EXISTS (
          SELECT 1 FROM taskyard.dependencies AS d
          JOIN taskyard.jobs AS p ON p.id = d.depends_on
          WHERE d.job_id = j.id AND p.state <> 'succeeded'))
    ORDER BY j.run_at, j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), promoted AS (
    UPDATE taskyard.jobs AS j SET state = 'queued', updated_at = now()
    FROM due WHERE j.id = due.id
    RETURNING j.queue
)
SELECT queue, count(*) FROM promoted GROUP BY queue
"""

_LOST_ERROR = """jsonb_build_object('type', 'worker_lost', 'message',
    'the lease of worker ' || e.lease_worker || ' expired without a report',
    'traceback', NULL)"""

_REAP = f"""
WITH expired AS MATERIALIZED (
    SELECT id, attempt, lease_worker, lease_expires_at FROM taskyard.jobs
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), reaped AS (
    UPDATE taskyard.jobs AS j
    SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                     WHEN j.attempt >= j.attempt_limit THEN 'dead'
                     ELSE 'queued' END,
        finished_at = CASE WHEN j.cancel_requested OR j.attempt >= j.attempt_limit
                           THEN now() ELSE j.finished_at END,
        lease_worker = NULL, lease_expires_at = NULL, updated_at = now(),
        last_error = {_LOST_ERROR}
    FROM expired AS e
    WHERE j.id = e.id AND j.state = 'running' AND j.attempt = e.attempt
    RETURNING {J_COLUMNS}
), closed AS (
    UPDATE taskyard.attempts AS a
    SET outcome = 'worker_lost', finished_at = now(), lease_expires_at = e.lease_expires_at,
        error = {_LOST_ERROR}
    FROM expired AS e
    WHERE a.job_id = e.id AND a.attempt = e.attempt AND a.outcome = 'running'
)
SELECT {JOB_COLUMNS} FROM reaped ORDER BY id
"""

_RESOLVE = f"""
WITH failed AS MATERIALIZED (
    SELECT j.id, f.dep_id, f.dep_state FROM taskyard.jobs AS j
    CROSS JOIN LATERAL (
        SELECT p.id AS dep_id, p.state AS dep_state
        FROM taskyard.dependencies AS d JOIN taskyard.jobs AS p ON p.id = d.depends_on
        WHERE d.job_id = j.id AND p.state IN ('dead', 'cancelled')
        ORDER BY p.id LIMIT 1
    ) AS f
    WHERE j.state = 'scheduled' AND cardinality(j.depends_on) > 0
    ORDER BY j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), cancelled AS (
    UPDATE taskyard.jobs AS j
    SET state = 'cancelled', updated_at = now(), finished_at = now(),
        last_error = jsonb_build_object('type', 'dependency_failed',
            'message', 'dependency ' || f.dep_id || ' ended ' || f.dep_state,
            'traceback', NULL)
    FROM failed AS f
    WHERE j.id = f.id AND j.state = 'scheduled'
    RETURNING {J_COLUMNS}
)
SELECT {JOB_COLUMNS} FROM cancelled ORDER BY id
"""

_NEXT_WAKEUP = """
SELECT least(
    (SELECT min(run_at) FROM taskyard.jobs
     WHERE state IN ('scheduled', 'retrying') AND run_at > now()),
    (SELECT min(lease_expires_at) + %(reapable_after)s FROM taskyard.jobs
     WHERE state = 'running' AND lease_expires_at >= now()))
"""

_CANCELLED_WHILE_WAITING = json.dumps(
    {"type": "cancelled", "message": "cancelled while waiting to run", "traceback": None}
)


def _filter_sql(job_filter: JobFilter, params: dict[str, Any], *, prefix: str = "") -> str:
    sql = ""
    for column, values in (
        ("state", sorted(s.value for s in job_filter.states)),
        ("queue", sorted(job_filter.queues)),
        ("task", sorted(job_filter.tasks)),
    ):
        if values:
            sql += f" AND {prefix}{column} = ANY(%(f_{column})s::text[])"
            params[f"f_{column}"] = values
    return sql


# --- errors -------------------------------------------------------------------------------


class AmbiguousCommit(StoreUnavailable):
    """The connection failed while the commit was in flight: it may or may not have landed."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_unavailability(exc: psycopg.Error) -> bool:
    return isinstance(
        exc,
        psycopg.OperationalError
        | psycopg.InterfaceError
        | psycopg.InternalError
        | pg_errors.UndefinedTable
        | pg_errors.InvalidSchemaName,
    )


def _is_lost_connection(exc: psycopg.Error) -> bool:
    """The connection failed (no answer from the server, or a connection-class error):
    whatever was sent may or may not have run."""
    return exc.sqlstate is None or exc.sqlstate.startswith("08")


def _unavailable(exc: psycopg.Error, *, committing: bool) -> StoreUnavailable:
    detail = _first_line(exc)
    if isinstance(exc, pg_errors.UndefinedTable | pg_errors.InvalidSchemaName):
        detail += " (is the schema migrated? run `taskyard migrate`)"
    if committing:
        return AmbiguousCommit(
            message=f"PostgreSQL unavailable during commit (it may have landed): {detail}"
        )
    return StoreUnavailable(message=f"PostgreSQL unavailable: {detail}")


def _is_idempotency_race(exc: psycopg.Error) -> bool:
    return (
        isinstance(exc, pg_errors.UniqueViolation)
        and exc.diag.constraint_name == "jobs_idempotency_key"
    )


# --- the store ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PoolSettings:
    min_size: int = POOL_MIN_SIZE_DEFAULT
    max_size: int = POOL_MAX_SIZE_DEFAULT
    timeout_s: float = POOL_TIMEOUT_S_DEFAULT
    connect_timeout_s: int = CONNECT_TIMEOUT_S_DEFAULT
    prepare_threshold: int | None = PREPARE_THRESHOLD_DEFAULT
    """psycopg prepares a statement on the server after this many runs; None never does
    (needed behind PgBouncer < 1.21 in transaction mode)."""


_URL_SETTINGS = ("pool_min_size", "pool_max_size", "pool_timeout", "prepare_threshold")


def split_url(url: str) -> tuple[str, PoolSettings]:
    """Take taskyard's own query parameters (`pool_min_size`, `pool_max_size`,
    `pool_timeout`, `prepare_threshold`) out of a URL; libpq gets the rest."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _URL_SETTINGS:
            ours[key] = value
        else:
            theirs.append((key, value))
    settings = PoolSettings()
    if "pool_min_size" in ours:
        settings = attrs.evolve(settings, min_size=int(ours["pool_min_size"]))
    if "pool_max_size" in ours:
        settings = attrs.evolve(settings, max_size=int(ours["pool_max_size"]))
    if "pool_timeout" in ours:
        settings = attrs.evolve(settings, timeout_s=float(ours["pool_timeout"]))
    if "prepare_threshold" in ours:
        raw = ours["prepare_threshold"].lower()
        settings = attrs.evolve(
            settings, prepare_threshold=None if raw in ("", "none", "off") else int(raw)
        )
    if not (0 <= settings.min_size <= settings.max_size and settings.max_size >= 1):
        raise ValueError(f"pool sizes must be 0 <= min <= max, max >= 1: {settings}")
    if settings.timeout_s <= 0:
        raise ValueError(f"pool_timeout must be > 0: {settings.timeout_s}")
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    conninfo = urlunsplit((scheme, parts.netloc, parts.path, urlencode(theirs), parts.fragment))
    return conninfo, settings


class PostgresJobStore:
    def __init__(
        self,
        conninfo: str,
        *,
        settings: PoolSettings | None = None,
        retry_budget: int = RETRY_BUDGET_DEFAULT,
    ) -> None:
        self.settings = settings or PoolSettings()
        assert 0 <= self.settings.min_size <= self.settings.max_size, self.settings
        assert self.settings.max_size >= 1, self.settings
        assert retry_budget >= 0, retry_budget
        self._retry_budget = retry_budget
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo,
            min_size=self.settings.min_size,
            max_size=self.settings.max_size,
            timeout=self.settings.timeout_s,
            kwargs={
                "autocommit": True,
                "prepare_threshold": self.settings.prepare_threshold,
                "connect_timeout": self.settings.connect_timeout_s,
            },
            name="taskyard-store",
            open=False,
        )
        self._opened = False
        self._open_lock = threading.Lock()
        self._schema_checked = False

    @classmethod
    def from_url(cls, url: str, *, retry_budget: int = RETRY_BUDGET_DEFAULT) -> PostgresJobStore:
        """A store for `postgresql://...`; pool settings come from the URL's query."""
        conninfo, settings = split_url(url)
        return cls(conninfo, settings=settings, retry_budget=retry_budget)

    def _ensure_open(self) -> None:
        if self._opened:
            return
        with self._open_lock:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True

    def close(self) -> None:
        with self._open_lock:
            if self._opened:
                self._pool.close()
                self._opened = False

    def __enter__(self) -> PostgresJobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions -------------------------------------------------------------------

    def _run(
        self,
        work: Callable[[Conn], T],
        *,
        transaction: bool = True,
        single_write: bool = False,
    ) -> T:
        """Run `work` on a pooled connection, in one transaction. A transaction the server
        rolled back whole (deadlock, serialization failure, a lost idempotency-key race)
        runs again, up to the retry budget. Refusals pass through untouched.

        `single_write`: `work` is one autocommitted statement that writes (no explicit
        transaction); a connection lost once it was sent is an `AmbiguousCommit`, as a
        lost answer to a `COMMIT` is."""
        assert not (transaction and single_write), "a single write runs in autocommit"
        self._ensure_open()
        trial = 0
        while True:
            committing = False
            sent = False
            try:
                with self._pool.connection() as conn:
                    if not self._schema_checked:
                        self._check_schema(conn)
                    if not transaction:
                        sent = single_write
                        return work(conn)
                    with conn.transaction():
                        result = work(conn)
                        committing = True
                    return result
            except psycopg.Error as exc:
                if sent and _is_lost_connection(exc):
                    committing = True
                retryable = exc.sqlstate in _RETRYABLE_SQLSTATES or _is_idempotency_race(exc)
                if retryable and not committing and trial < self._retry_budget:
                    trial += 1
                    continue
                if _is_unavailability(exc) or retryable:
                    raise _unavailable(exc, committing=committing) from exc
                raise

    def _check_schema(self, conn: Conn) -> None:
        """Once per store: refuse to run on a schema older than this code (a newer one is
        accepted, so a rolling upgrade can migrate first)."""
        from taskyard.adapters.postgres.schema import latest_version, schema_version

        version = schema_version(conn)
        needed = latest_version()
        if version is None or version < needed:
            found = "no taskyard schema" if version is None else f"schema version {version}"
            raise StoreUnavailable(
                message=f"PostgreSQL has {found}; this taskyard needs version {needed}: "
                "run `taskyard migrate`"
            )
        self._schema_checked = True

    def now(self) -> datetime:
        def work(conn: Conn) -> datetime:
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            return _utc(row[0])

        return self._run(work, transaction=False)

    # --- helpers inside a transaction ---------------------------------------------------

    @staticmethod
    def _cursor(conn: Conn) -> psycopg.Cursor[TupleRow]:
        return conn.cursor(row_factory=tuple_row)

    @staticmethod
    def _binary(conn: Conn) -> psycopg.Cursor[TupleRow]:
        """For the hot statements: values travel in binary both ways, which psycopg dumps
        and loads in C (a third less client time for a one-job insert)."""
        return conn.cursor(row_factory=tuple_row, binary=True)

    @classmethod
    def _tx_now(cls, conn: Conn) -> datetime:
        row = cls._cursor(conn).execute("SELECT now()").fetchone()
        assert row is not None
        return _utc(row[0])

    @classmethod
    def _states(cls, conn: Conn, ids: Iterable[UUID]) -> dict[UUID, JobState]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = (
            cls._cursor(conn)
            .execute("SELECT id, state FROM taskyard.jobs WHERE id = ANY(%s)", (wanted,))
            .fetchall()
        )
        return {job_id: JobState(state) for job_id, state in rows}

    @classmethod
    def _dependency_states(cls, conn: Conn, job: Job) -> dict[UUID, JobState]:
        stored = cls._states(conn, job.depends_on)
        return {dep: stored[dep] for dep in job.depends_on}

    @classmethod
    def _lock_job(cls, conn: Conn, job_id: UUID) -> Job:
        row = (
            cls._cursor(conn)
            .execute(f"SELECT {JOB_COLUMNS} FROM taskyard.jobs WHERE id = %s FOR UPDATE", (job_id,))
            .fetchone()
        )
        if row is None:
            raise JobNotFound(job_id)
        return _job(row)

    @classmethod
    def _lock_batch(cls, conn: Conn, refs: Sequence[LeaseRef]) -> tuple[datetime, Batch]:
        """The transaction's time, and the jobs of `refs` locked in id order with the attempt
        records the refs name."""
        ids = sorted({r.job_id for r in refs})
        keys = attempt_keys(refs)
        now = cls._tx_now(conn)
        cur = cls._cursor(conn)
        cur.execute(
            f"SELECT {JOB_COLUMNS} FROM taskyard.jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (ids,),
        )
        jobs = [_job(row) for row in cur.fetchall()]
        cur.execute(
            f"""SELECT {A_COLUMNS}
                FROM unnest(%s::uuid[], %s::integer[]) AS k(job_id, attempt)
                JOIN taskyard.attempts AS a USING (job_id, attempt)""",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        attempts = [_attempt(row) for row in cur.fetchall()]
        return now, Batch(jobs, attempts)

    @classmethod
    def _write_batch(cls, conn: Conn, batch: Batch) -> None:
        writes = batch.job_writes()
        records = batch.attempt_writes()
        if not writes and not records:
            return
        row = (
            cls._cursor(conn)
            .execute(
                _WRITE_BATCH,
                {
                    "jobs": Jsonb([_change_row(w.before, w.after) for w in writes]),
                    "attempts": Jsonb([_attempt_row(r) for r in records]),
                },
            )
            .fetchone()
        )
        assert row is not None
        # The rows are locked by this transaction: every guarded write must land.
        assert (row[0], row[1]) == (len(writes), len(records)), (row, len(writes), len(records))

    # --- submission and reading ---------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        if not jobs:
            return []
        if _plain(jobs) and len(jobs) < COPY_MIN_JOBS:
            try:
                return self._run(
                    lambda conn: self._insert_plain(conn, jobs),
                    transaction=False,
                    single_write=True,
                )
            except AmbiguousCommit:
                # One statement: all of it landed or none did.
                stored = self._stored([n.id for n in jobs])
                if len(stored) == len(jobs):
                    return [Enqueued(job=stored[n.id], created=True) for n in jobs]
                raise
        answer: list[Enqueued] = []

        def work(conn: Conn) -> list[Enqueued]:
            answer[:] = self._enqueue_on(conn, jobs)
            return list(answer)

        try:
            return self._run(work)
        except AmbiguousCommit:
            if answer and self._all_stored([e.job.id for e in answer if e.created]):
                return answer
            raise

    def _stored(self, ids: Sequence[UUID]) -> dict[UUID, Job]:
        """Re-read after an ambiguous commit: the jobs of `ids` that are there (none when
        the store cannot be reached)."""

        def work(conn: Conn) -> dict[UUID, Job]:
            rows = (
                self._cursor(conn)
                .execute(f"SELECT {JOB_COLUMNS} FROM taskyard.jobs WHERE id = ANY(%s)", (ids,))
                .fetchall()
            )
            return {job.id: job for job in map(_job, rows)}

        try:
            return self._run(work, transaction=False)
        except StoreUnavailable:
            return {}

    def _all_stored(self, ids: Sequence[UUID]) -> bool:
        """Re-read after an ambiguous commit: True only when every job is there."""
        if not ids:
            return True

        def work(conn: Conn) -> bool:
            row = conn.execute(
                "SELECT count(*) FROM taskyard.jobs WHERE id = ANY(%s)", (list(ids),)
            ).fetchone()
            return row is not None and row[0] == len(set(ids))

        try:
            return self._run(work, transaction=False)
        except StoreUnavailable:
            return False

    def enqueue_in(self, connection: Conn, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Enqueue through the caller's psycopg connection, inside its transaction (or a
        transaction of its own when the connection is in autocommit mode): the jobs commit
        or roll back with the caller's work. Nothing is visible to workers before then."""
        if not jobs:
            return []
        if (
            not connection.autocommit
            and connection.info.transaction_status is TransactionStatus.IDLE
        ):
            # Open the caller's transaction now: `transaction()` on an idle connection
            # would start one of its own and commit it at the end of the block.
            connection.execute("SELECT 1")
        trial = 0
        while True:
            try:
                with connection.transaction():
                    return self._enqueue_on(connection, jobs)
            except psycopg.Error as exc:
                if _is_idempotency_race(exc) and trial < self._retry_budget:
                    trial += 1
                    continue
                if _is_unavailability(exc):
                    raise _unavailable(exc, committing=False) from exc
                raise

    def _enqueue_on(self, conn: Conn, jobs: Sequence[NewJob]) -> list[Enqueued]:
        if _plain(jobs):
            if len(jobs) < COPY_MIN_JOBS:
                return self._insert_plain(conn, jobs)
            return self._copy_plain(conn, jobs)
        cur = self._cursor(conn)
        now = self._tx_now(conn)
        keys = sorted({n.idempotency_key for n in jobs if n.idempotency_key is not None})
        known: dict[str, Job] = {}
        if keys:
            cur.execute(
                f"SELECT {JOB_COLUMNS} FROM taskyard.jobs WHERE idempotency_key = ANY(%s)",
                (keys,),
            )
            for row in cur.fetchall():
                job = _job(row)
                assert job.idempotency_key is not None
                known[job.idempotency_key] = job
        stored = self._states(conn, {d for n in jobs for d in n.depends_on})
        pending: dict[UUID, Job] = {}
        planned: list[tuple[UUID | None, Enqueued | None]] = []
        for new in jobs:
            if new.idempotency_key is not None:
                existing = known.get(new.idempotency_key)
                if existing is not None:
                    if existing.fingerprint != new.fingerprint:
                        raise IdempotencyConflict(
                            new.idempotency_key, None if existing.id in pending else existing.id
                        )
                    if existing.id in pending:
                        planned.append((existing.id, None))
                    else:
                        planned.append((None, Enqueued(job=existing, created=False)))
                    continue
            states: dict[UUID, JobState] = {}
            for dep in new.depends_on:
                if dep in pending:
                    states[dep] = pending[dep].state
                elif dep in stored:
                    states[dep] = stored[dep]
                else:
                    raise UnknownDependency(dep)
            job = t.create(
                attrs.evolve(new, args=normalized(dict(new.args))),
                now=now,
                dependency_states=states,
            )
            pending[job.id] = job
            if job.idempotency_key is not None:
                known[job.idempotency_key] = job
            planned.append((job.id, None))
        inserted: dict[UUID, Job] = {}
        if pending:
            cur.execute(_INSERT_JOBS, {"rows": Jsonb([_new_row(j) for j in pending.values()])})
            inserted = {job.id: job for job in map(_job, cur.fetchall())}
            assert set(inserted) == set(pending), "every new job is inserted"
        out: list[Enqueued] = []
        seen: set[UUID] = set()
        for job_id, done in planned:
            if done is not None:
                out.append(done)
            else:
                assert job_id is not None
                out.append(Enqueued(job=inserted[job_id], created=job_id not in seen))
                seen.add(job_id)
        return out

    def _insert_plain(self, conn: Conn, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Jobs without idempotency keys or dependencies, in one statement that reads the
        time itself (`_INSERT_PLAIN`): no transaction of its own, one round trip. The domain's
        `create` then builds the jobs at that time; the statement decided their states by
        the same rule, which the counts check."""
        prepared = [_PlainJob.of(new) for new in jobs]
        if len(jobs) == 1:
            # The common call (one API request, one library call): scalars are far cheaper
            # to send than a dozen one-element arrays.
            (one,) = prepared
            new = jobs[0]
            statement = _INSERT_PLAIN_ONE
            values: Sequence[Any] | dict[str, Any] = (
                new.id,
                new.task,
                one.args_text,
                new.queue,
                new.priority,
                new.run_at,
                one.delay_us,
                new.max_attempts,
                one.backoff_text,
                new.timeout_s,
                new.correlation_id,
                new.fingerprint,
            )
        else:
            statement = _INSERT_PLAIN
            values = self._plain_arrays(jobs, prepared)
        cursor = self._binary(conn) if statement is _INSERT_PLAIN_ONE else self._cursor(conn)
        row = cursor.execute(statement, values).fetchone()
        assert row is not None
        now = _utc(row[0])
        created = [p.create(now) for p in prepared]
        queued = sum(1 for job in created if job.state is S.QUEUED)
        assert (queued, len(created)) == (row[1], row[2]), (row, queued, len(created))
        return [Enqueued(job=job, created=True) for job in created]

    @staticmethod
    def _plain_arrays(jobs: Sequence[NewJob], prepared: Sequence[_PlainJob]) -> dict[str, Any]:
        return {
            "ids": [new.id for new in jobs],
            "tasks": [new.task for new in jobs],
            "args": [p.args_text for p in prepared],
            "queues": [new.queue for new in jobs],
            "priorities": [new.priority for new in jobs],
            "run_ats": [new.run_at for new in jobs],
            "delays_us": [p.delay_us for p in prepared],
            "max_attempts": [new.max_attempts for new in jobs],
            "backoffs": [p.backoff_text for p in prepared],
            "timeouts": [new.timeout_s for new in jobs],
            "correlations": [new.correlation_id for new in jobs],
            "fingerprints": [new.fingerprint for new in jobs],
        }

    def _copy_plain(self, conn: Conn, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """A large batch of plain jobs: the transaction's time, the domain's `create` for
        each, and one binary `COPY` of the rows (the caller's transaction commits them)."""
        now = self._tx_now(conn)
        created = [_PlainJob.of(new) for new in jobs]
        out: list[Enqueued] = []
        cur = conn.cursor(binary=True)
        cur.adapters.register_dumper(None, _EncodedJsonbDumper)
        with cur.copy(_COPY_PLAIN) as copy:
            copy.set_types(_COPY_PLAIN_TYPES)
            for plain in created:
                job = plain.create(now)
                copy.write_row(
                    (
                        job.id,
                        job.task,
                        _EMPTY_JSONB if plain.args_text == "{}" else _jsonb(plain.args_text),
                        job.queue,
                        job.priority,
                        job.run_at,
                        job.max_attempts,
                        _backoff_jsonb(plain.backoff_text),
                        job.timeout_s,
                        job.state.value,
                        job.attempt,
                        job.attempt_limit,
                        job.created_at,
                        job.updated_at,
                        job.correlation_id,
                        job.fingerprint,
                    )
                )
                out.append(Enqueued(job=job, created=True))
        return out

    def get(self, job_id: UUID) -> Job:
        def work(conn: Conn) -> Job:
            row = (
                self._cursor(conn)
                .execute(f"SELECT {JOB_COLUMNS} FROM taskyard.jobs WHERE id = %s", (job_id,))
                .fetchone()
            )
            if row is None:
                raise JobNotFound(job_id)
            return _job(row)

        return self._run(work, transaction=False)

    def list_jobs(self, query: JobQuery) -> JobPage:
        params: dict[str, Any] = {"limit": query.limit + 1}
        where = _filter_sql(query.filter, params)
        if query.cursor is not None:
            where += " AND (created_at, id) < (%(c_at)s, %(c_id)s)"
            params["c_at"], params["c_id"] = query.cursor
        sql = (
            f"SELECT {JOB_COLUMNS} FROM taskyard.jobs WHERE true{where}"
            " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
        )
        rows = self._run(
            lambda conn: self._cursor(conn).execute(sql, params).fetchall(), transaction=False
        )
        page = [_job(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        next_cursor = (page[-1].created_at, page[-1].id) if more and page else None
        return JobPage(jobs=page, next_cursor=next_cursor)

    def attempts(self, job_id: UUID) -> list[Attempt]:
        def work(conn: Conn) -> list[Attempt]:
            rows = (
                self._cursor(conn)
                .execute(
                    f"""SELECT {A_COLUMNS} FROM taskyard.jobs AS j
                        LEFT JOIN taskyard.attempts AS a ON a.job_id = j.id
                        WHERE j.id = %s ORDER BY a.attempt""",
                    (job_id,),
                )
                .fetchall()
            )
            if not rows:
                raise JobNotFound(job_id)
            return [_attempt(row) for row in rows if row[0] is not None]

        return self._run(work, transaction=False)

    # --- the worker's path --------------------------------------------------------------

    def claim(self, request: ClaimRequest) -> list[Job]:
        params: dict[str, Any] = {
            "limit": request.limit,
            "worker": request.worker,
            "ttl_s": request.lease_ttl_s,
            "queues": sorted(request.queues) if request.queues is not None else None,
            "tasks": sorted(request.tasks) if request.tasks is not None else None,
        }

        def work(conn: Conn) -> list[Job]:
            return [_job(row) for row in self._binary(conn).execute(_CLAIM, params).fetchall()]

        return self._run(work, transaction=False)

    def heartbeat(self, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
        assert lease_ttl_s > 0, lease_ttl_s
        if not refs:
            return []
        ordered = sorted(set(refs), key=lambda r: (r.job_id, r.attempt, r.worker))
        params = {
            "ttl_s": lease_ttl_s,
            "ids": [r.job_id for r in ordered],
            "attempts": [r.attempt for r in ordered],
            "workers": [r.worker for r in ordered],
        }

        def work(conn: Conn) -> list[Any]:
            return self._binary(conn).execute(_HEARTBEAT, params).fetchall()

        held = {
            LeaseRef(job_id=job_id, attempt=attempt, worker=worker): (_utc(expires), cancel)
            for job_id, attempt, worker, expires, cancel in self._run(work, transaction=False)
        }
        out: list[LeaseStatus] = []
        for ref in refs:
            if ref in held:
                expires_at, cancel_requested = held[ref]
                out.append(
                    LeaseStatus(
                        ref=ref,
                        held=True,
                        expires_at=expires_at,
                        cancel_requested=cancel_requested,
                    )
                )
            else:
                out.append(LeaseStatus(ref=ref, held=False))
        return out

    def checkpoint(self, ref: LeaseRef, state: object) -> None:
        saved = normalized(state)

        def work(conn: Conn) -> None:
            job = self._lock_job(conn, ref.job_id)
            step = t.save_checkpoint(job, ref, now=self._tx_now(conn), state=saved)
            if isinstance(step, Refusal):
                raise step
            batch = Batch([job], ())
            batch.apply(step)
            self._write_batch(conn, batch)

        self._run(work)

    def report(self, reports: Sequence[t.Report]) -> list[ReportResult]:
        """Successes that still hold their lease (nearly every report) are committed by one
        set-based statement (`_REPORT_SUCCEEDED`), which writes exactly what
        `transitions.apply_report` would. Everything else (failures, stale or repeated
        reports, cancellation requested, unknown jobs, a second report for a job in the same
        batch) is then judged by the domain's pure function, in the order given."""
        if not reports:
            return []
        results: list[ReportResult | None] = [None] * len(reports)
        fast = fast_success_indexes(reports)
        if fast:
            params = {
                "ids": [reports[i].ref.job_id for i in fast],
                "attempts": [reports[i].ref.attempt for i in fast],
                "workers": [reports[i].ref.worker for i in fast],
                "results": [json_text(reports[i].result) for i in fast],
            }

            def fast_work(conn: Conn) -> set[UUID]:
                rows = self._binary(conn).execute(_REPORT_SUCCEEDED, params).fetchall()
                return {job_id for (job_id,) in rows}

            applied = self._run(fast_work, transaction=False, single_write=True)
            for i in fast:
                if reports[i].ref.job_id in applied:
                    results[i] = ReportResult(
                        ref=reports[i].ref, status=ReportStatus.APPLIED, state=S.SUCCEEDED
                    )
        rest = [i for i, result in enumerate(results) if result is None]
        if rest:
            pending = [reports[i] for i in rest]

            def work(conn: Conn) -> list[ReportResult]:
                now, batch = self._lock_batch(conn, [r.ref for r in pending])
                out = plan_reports(batch, pending, now=now)
                self._write_batch(conn, batch)
                return out

            for i, result in zip(rest, self._run(work), strict=True):
                results[i] = result
        return [result for result in results if result is not None]

    def release(self, refs: Sequence[LeaseRef]) -> list[ReportResult]:
        if not refs:
            return []

        def work(conn: Conn) -> list[ReportResult]:
            now, batch = self._lock_batch(conn, refs)
            out = plan_releases(batch, refs, now=now)
            self._write_batch(conn, batch)
            return out

        return self._run(work)

    # --- the scheduler's path -----------------------------------------------------------

    def promote_due(self, *, limit: int) -> Promoted:
        assert limit >= 1, limit

        def work(conn: Conn) -> Promoted:
            rows = self._cursor(conn).execute(_PROMOTE, {"limit": limit}).fetchall()
            return Promoted(by_queue={queue: int(count) for queue, count in rows})

        return self._run(work, transaction=False)

    def reap_expired(self, *, limit: int) -> list[Job]:
        assert limit >= 1, limit

        def work(conn: Conn) -> list[Job]:
            return [_job(r) for r in self._cursor(conn).execute(_REAP, {"limit": limit})]

        return self._run(work, transaction=False)

    def resolve_dependencies(self, *, limit: int) -> list[Job]:
        assert limit >= 1, limit

        def work(conn: Conn) -> list[Job]:
            return [_job(r) for r in self._cursor(conn).execute(_RESOLVE, {"limit": limit})]

        return self._run(work, transaction=False)

    def next_wakeup(self) -> datetime | None:
        def work(conn: Conn) -> datetime | None:
            row = (
                self._cursor(conn)
                .execute(_NEXT_WAKEUP, {"reapable_after": t.REAPABLE_AFTER})
                .fetchone()
            )
            return None if row is None or row[0] is None else _utc(row[0])

        return self._run(work, transaction=False)

    # --- a person's path ----------------------------------------------------------------

    def _change(
        self, job_id: UUID, decide: Callable[[Conn, Job, datetime], t.Step | Refusal]
    ) -> Job:
        def work(conn: Conn) -> Job:
            job = self._lock_job(conn, job_id)
            step = decide(conn, job, self._tx_now(conn))
            if isinstance(step, Refusal):
                raise step
            if step.job == step.before:
                return step.job
            batch = Batch([job], ())
            batch.apply(step)
            self._write_batch(conn, batch)
            return step.job

        return self._run(work)

    def cancel(self, job_id: UUID) -> Job:
        return self._change(job_id, lambda _conn, job, now: t.cancel(job, now=now))

    def retry(self, job_id: UUID) -> Job:
        return self._change(
            job_id,
            lambda conn, job, now: t.retry(
                job, now=now, dependency_states=self._dependency_states(conn, job)
            ),
        )

    def reschedule(
        self, job_id: UUID, *, priority: int | None = None, run_at: datetime | None = None
    ) -> Job:
        return self._change(
            job_id,
            lambda _conn, job, now: t.reschedule(job, now=now, priority=priority, run_at=run_at),
        )

    def cancel_many(self, job_filter: JobFilter) -> int:
        """`cancel` of every matching active job, as one statement: waiting and due jobs end
        cancelled; running ones get cancellation requested (once)."""
        params: dict[str, Any] = {"error": _CANCELLED_WHILE_WAITING}
        where = _filter_sql(job_filter, params)
        sql = f"""
        WITH target AS MATERIALIZED (
            SELECT id FROM taskyard.jobs
            WHERE state IN ('scheduled', 'queued', 'retrying', 'running')
              AND NOT (state = 'running' AND cancel_requested){where}
            ORDER BY id
            FOR UPDATE
        )
        UPDATE taskyard.jobs AS j
        SET state = CASE WHEN j.state = 'running' THEN 'running' ELSE 'cancelled' END,
            cancel_requested = j.cancel_requested OR j.state = 'running',
            finished_at = CASE WHEN j.state = 'running' THEN j.finished_at ELSE now() END,
            last_error = CASE WHEN j.state = 'running' THEN j.last_error
                              ELSE %(error)s::jsonb END,
            updated_at = now()
        FROM target WHERE j.id = target.id
        """
        return self._run(lambda conn: self._cursor(conn).execute(sql, params).rowcount)

    def retry_many(self, job_filter: JobFilter) -> int:
        """`retry` of every matching dead or cancelled job, as one statement."""
        params: dict[str, Any] = {}
        where = _filter_sql(job_filter, params)
        sql = f"""
        WITH target AS MATERIALIZED (
            SELECT id FROM taskyard.jobs
            WHERE state IN ('dead', 'cancelled'){where}
            ORDER BY id
            FOR UPDATE
        )
        UPDATE taskyard.jobs AS j
        SET state = CASE WHEN NOT EXISTS (
                SELECT 1 FROM taskyard.dependencies AS d
                JOIN taskyard.jobs AS p ON p.id = d.depends_on
                WHERE d.job_id = j.id AND p.state <> 'succeeded') THEN 'queued'
                ELSE 'scheduled' END,
            run_at = now(), attempt_limit = j.attempt + j.max_attempts,
            cancel_requested = false, finished_at = NULL, lease_worker = NULL,
            lease_expires_at = NULL, result = NULL, updated_at = now()
        FROM target WHERE j.id = target.id
        """
        return self._run(lambda conn: self._cursor(conn).execute(sql, params).rowcount)

    def set_paused(self, queue: str, *, paused: bool) -> None:
        def work(conn: Conn) -> None:
            if paused:
                conn.execute(
                    "INSERT INTO taskyard.paused_queues (queue) VALUES (%s)"
                    " ON CONFLICT (queue) DO NOTHING",
                    (queue,),
                )
            else:
                conn.execute("DELETE FROM taskyard.paused_queues WHERE queue = %s", (queue,))

        self._run(work, transaction=False)

    def queues(self) -> list[QueueInfo]:
        def work(conn: Conn) -> tuple[datetime, list[Any], set[str]]:
            cur = self._cursor(conn)
            now = self._tx_now(conn)
            rows = cur.execute(
                """SELECT queue, state, count(*), min(run_at) FILTER (WHERE state = 'queued')
                   FROM taskyard.jobs GROUP BY queue, state"""
            ).fetchall()
            paused = {q for (q,) in cur.execute("SELECT queue FROM taskyard.paused_queues")}
            return now, rows, paused

        now, rows, paused = self._run(work)
        counts: dict[str, dict[JobState, int]] = defaultdict(dict)
        oldest: dict[str, datetime] = {}
        for queue, state, count, oldest_run_at in rows:
            counts[queue][JobState(state)] = int(count)
            if oldest_run_at is not None:
                oldest[queue] = _utc(oldest_run_at)
        return [
            QueueInfo(
                name=name,
                paused=name in paused,
                counts={state: counts[name].get(state, 0) for state in JobState},
                oldest_queued_age_s=(
                    max(0.0, (now - oldest[name]).total_seconds()) if name in oldest else None
                ),
            )
            for name in sorted(set(counts) | paused)
        ]

    def stats(self, *, window_s: float) -> Stats:
        def work(conn: Conn) -> Stats:
            cur = self._cursor(conn)
            since = after(self._tx_now(conn), -window_s)
            row = cur.execute(
                """SELECT
                    (SELECT count(*) FROM taskyard.jobs
                     WHERE finished_at >= %(since)s AND state = 'succeeded'),
                    (SELECT count(*) FROM taskyard.jobs
                     WHERE finished_at >= %(since)s AND state = 'dead'),
                    (SELECT count(*) FROM taskyard.attempts  -- as transitions.charged_failure
                     WHERE finished_at >= %(since)s
                       AND outcome IN ('failed', 'timeout', 'worker_lost', 'stale')
                       AND (error->>'type') IS DISTINCT FROM %(shutdown)s),
                    (SELECT count(*) FROM taskyard.attempts
                     WHERE finished_at >= %(since)s AND outcome = 'succeeded')""",
                {"since": since, "shutdown": t.SHUTDOWN_ERROR},
            ).fetchone()
            assert row is not None
            succeeded, dead, failed, runs = (int(v) for v in row)
            p50 = p95 = None
            if runs:
                # percentile_disc(f) takes the value at 0-based index ceil(f * n) - 1; aim
                # at the middle of the index the in-memory store picks.
                fractions = [
                    (percentile_index(runs, fraction) + 0.5) / runs for fraction in (0.5, 0.95)
                ]
                picked = cur.execute(
                    """SELECT percentile_disc(%(fractions)s::float8[]) WITHIN GROUP (
                           ORDER BY extract(epoch FROM finished_at - started_at)::float8)
                       FROM taskyard.attempts
                       WHERE finished_at >= %(since)s AND outcome = 'succeeded'""",
                    {"since": since, "fractions": fractions},
                ).fetchone()
                assert picked is not None
                p50, p95 = picked[0]
            return Stats(
                window_s=window_s,
                succeeded=succeeded,
                dead=dead,
                failed_attempts=failed,
                throughput_per_s=(succeeded + dead) / window_s,
                run_s_p50=p50,
                run_s_p95=p95,
            )

        return self._run(work)

    def attempt_totals(self, *, run_s_buckets: Sequence[float]) -> AttemptTotals:
        bounds = [float(b) for b in run_s_buckets]
        buckets = "".join(f", count(*) FILTER (WHERE d <= %(b{i})s)" for i in range(len(bounds)))
        query = (
            "SELECT outcome, count(*), coalesce(sum(d), 0)"
            f"{buckets} FROM (SELECT outcome, "
            "extract(epoch FROM finished_at - started_at)::float8 AS d "
            "FROM taskyard.attempts) AS a GROUP BY outcome"
        )
        params = {f"b{i}": bound for i, bound in enumerate(bounds)}

        def work(conn: Conn) -> list[tuple[Any, ...]]:
            return list(self._cursor(conn).execute(query, params).fetchall())

        return attempt_totals_from_rows(self._run(work, transaction=False), bounds)
