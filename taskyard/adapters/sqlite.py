"""The SQLite store: the embedded default (`taskyard standalone`, `sqlite:///path`).

Same semantics as the in-memory store, because every transition goes through the same
pure functions of `taskyard.domain.transitions`: a call loads the rows it needs, lets the
domain decide, and writes the result with a conditional `UPDATE ... WHERE id = ? AND
state = ? AND attempt = ?`, all inside one `BEGIN IMMEDIATE` transaction.

Locking: the file is in WAL mode, so readers never block the writer nor each other.
Every write transaction starts with `BEGIN IMMEDIATE`, which takes SQLite's single write
lock up front (a deferred transaction that later tries to write can fail with
`SQLITE_BUSY` instead of waiting); a writer that finds the lock taken waits up to
`busy_timeout_s`, then the call raises `StoreUnavailable`. Since the lock is held from the
first read to the commit, every read-decide-write is serial, across threads and across
processes on the same file.

Time: the injected `Clock` (the system clock, from the composition root) is read after the
write lock is taken, so store time never runs backwards from one committed write to the
next as long as that clock does not.

Connections: one per concurrent caller, taken from a small pool of idle connections
(a `sqlite3.Connection` is not shared between threads at once).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import attrs

from taskyard.adapters.sqlshared import (
    Batch,
    attempt_keys,
    attempt_totals_from_rows,
    error_from_json,
    error_to_json,
    json_text,
    load_migrations,
    normalized,
    percentile_index,
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
    Clock,
    JobFilter,
    JobPage,
    JobQuery,
    LeaseStatus,
    Promoted,
    ReportResult,
)
from taskyard.domain.timefmt import EPOCH, after

S = JobState
T = TypeVar("T")

BUSY_TIMEOUT_S_DEFAULT = 10.0
IDLE_CONNECTIONS_MAX = 8

_US = timedelta(microseconds=1)

JOB_COLUMNS = (
    "id, task, args, queue, priority, run_at, max_attempts, backoff, timeout_s, "
    "idempotency_key, depends_on, state, attempt, attempt_limit, created_at, updated_at, "
    "finished_at, lease_worker, lease_expires_at, cancel_requested, checkpoint, result, "
    "last_error, correlation_id, fingerprint"
)
ATTEMPT_COLUMNS = (
    "job_id, attempt, worker, started_at, lease_expires_at, finished_at, outcome, error"
)

_INSERT_JOB = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join(['?'] * 25)})"
_UPDATE_JOB = """
UPDATE jobs SET priority = ?, run_at = ?, state = ?, attempt = ?, attempt_limit = ?,
    updated_at = ?, finished_at = ?, lease_worker = ?, lease_expires_at = ?,
    cancel_requested = ?, checkpoint = ?, result = ?, last_error = ?
WHERE id = ? AND state = ? AND attempt = ?
"""
_UPSERT_ATTEMPT = f"""
INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id, attempt) DO UPDATE SET
    lease_expires_at = excluded.lease_expires_at, finished_at = excluded.finished_at,
    outcome = excluded.outcome, error = excluded.error
WHERE attempts.outcome = 'running'
"""


def _us(moment: datetime) -> int:
    return (moment - EPOCH) // _US


def _time(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _maybe_time(us: int | None) -> datetime | None:
    return None if us is None else _time(us)


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _ids_json(ids: Iterable[UUID]) -> str:
    return json.dumps(sorted(str(i) for i in set(ids)))


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
        id=UUID(job_id),
        task=task,
        args=json.loads(args),
        queue=queue,
        priority=priority,
        run_at=_time(run_at),
        max_attempts=max_attempts,
        backoff=policy_from_json(backoff),
        timeout_s=timeout_s,
        idempotency_key=idempotency_key,
        depends_on=tuple(UUID(d) for d in json.loads(depends_on)),
        state=JobState(state),
        attempt=attempt,
        attempt_limit=attempt_limit,
        created_at=_time(created_at),
        updated_at=_time(updated_at),
        finished_at=_maybe_time(finished_at),
        lease=(
            Lease(worker=lease_worker, expires_at=_time(lease_expires_at))
            if lease_worker is not None
            else None
        ),
        cancel_requested=bool(cancel_requested),
        checkpoint=_json(checkpoint),
        result=_json(result),
        last_error=error_from_json(last_error),
        correlation_id=correlation_id,
        fingerprint=fingerprint,
    )


def _job_params(job: Job) -> tuple[Any, ...]:
    return (
        str(job.id),
        job.task,
        json_text(dict(job.args)),
        job.queue,
        job.priority,
        _us(job.run_at),
        job.max_attempts,
        json_text(job.backoff.to_json()),
        job.timeout_s,
        job.idempotency_key,
        json.dumps([str(d) for d in job.depends_on]),
        job.state.value,
        job.attempt,
        job.attempt_limit,
        _us(job.created_at),
        _us(job.updated_at),
        *_tail(job),
    )


def _tail(job: Job) -> tuple[Any, ...]:
    return (
        None if job.finished_at is None else _us(job.finished_at),
        job.lease.worker if job.lease else None,
        _us(job.lease.expires_at) if job.lease else None,
        int(job.cancel_requested),
        json_text(job.checkpoint),
        json_text(job.result),
        json_text(error_to_json(job.last_error)),
        job.correlation_id,
        job.fingerprint,
    )


def _update_params(before: Job, job: Job) -> tuple[Any, ...]:
    return (
        job.priority,
        _us(job.run_at),
        job.state.value,
        job.attempt,
        job.attempt_limit,
        _us(job.updated_at),
        None if job.finished_at is None else _us(job.finished_at),
        job.lease.worker if job.lease else None,
        _us(job.lease.expires_at) if job.lease else None,
        int(job.cancel_requested),
        json_text(job.checkpoint),
        json_text(job.result),
        json_text(error_to_json(job.last_error)),
        str(before.id),
        before.state.value,
        before.attempt,
    )


def _attempt(row: Sequence[Any]) -> Attempt:
    job_id, number, worker, started_at, lease_expires_at, finished_at, outcome, error = row
    return Attempt(
        job_id=UUID(job_id),
        attempt=number,
        worker=worker,
        started_at=_time(started_at),
        lease_expires_at=_time(lease_expires_at),
        finished_at=_maybe_time(finished_at),
        outcome=Outcome(outcome),
        error=error_from_json(error),
    )


def _attempt_params(record: Attempt) -> tuple[Any, ...]:
    return (
        str(record.job_id),
        record.attempt,
        record.worker,
        _us(record.started_at),
        _us(record.lease_expires_at),
        None if record.finished_at is None else _us(record.finished_at),
        record.outcome.value,
        json_text(error_to_json(record.error)),
    )


def _filter_sql(job_filter: JobFilter) -> tuple[str, list[Any]]:
    """`AND ...` conditions for a filter, and their parameters."""
    sql = ""
    params: list[Any] = []
    for column, values in (
        ("state", sorted(s.value for s in job_filter.states)),
        ("queue", sorted(job_filter.queues)),
        ("task", sorted(job_filter.tasks)),
    ):
        if values:
            sql += f" AND {column} IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(values))
    return sql, params


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    return StoreUnavailable(message=f"SQLite store unavailable: {exc}")


def _is_unavailability(exc: sqlite3.Error) -> bool:
    """Locked, busy, I/O trouble, an unreadable file: not a bug in a statement."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


class SqliteJobStore:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock,
        busy_timeout_s: float = BUSY_TIMEOUT_S_DEFAULT,
    ) -> None:
        assert busy_timeout_s > 0, busy_timeout_s
        self.path = os.fspath(path)
        assert self.path and self.path != ":memory:", "SQLite store needs a file"
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self.schema_version = self._migrate()

    # --- connections and transactions ---------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA foreign_keys = OFF")
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            assert not self._closed, "the store is closed"
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            try:
                conn = self._connect()
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc
        try:
            yield conn
        finally:
            with self._lock:
                keep = (
                    not self._closed
                    and not conn.in_transaction
                    and len(self._idle) < IDLE_CONNECTIONS_MAX
                )
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def _write(self, work: Callable[[sqlite3.Connection, datetime], T]) -> T:
        """Run `work` in a `BEGIN IMMEDIATE` transaction with the store time read after the
        write lock is held. A refusal or any error rolls everything back."""
        with self._connection() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn, self._clock.now())
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if _is_unavailability(exc):
                    raise _unavailable(exc) from exc
                raise
            return result

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one read transaction (a consistent snapshot)."""
        with self._connection() as conn:
            try:
                conn.execute("BEGIN")
                try:
                    result = work(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if _is_unavailability(exc):
                    raise _unavailable(exc) from exc
                raise
            return result

    def _migrate(self) -> int:
        """Create or upgrade the schema; its version is the file's `user_version`."""
        migrations = load_migrations("sqlite")
        latest = migrations[-1].version

        def upgrade(conn: sqlite3.Connection, _now: datetime) -> int:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > latest:
                raise StoreUnavailable(
                    message=f"{self.path} has schema version {version}; this taskyard "
                    f"knows versions up to {latest}"
                )
            for migration in migrations:
                if migration.version > version:
                    for statement in _statements(migration.sql):
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {latest:d}")
            return latest

        with self._connection() as conn:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc
            if str(mode).lower() != "wal":
                raise StoreUnavailable(message=f"{self.path}: cannot use WAL mode ({mode})")
        return self._write(upgrade)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> SqliteJobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> datetime:
        return self._clock.now()

    # --- loading ------------------------------------------------------------------------

    @staticmethod
    def _load_jobs(conn: sqlite3.Connection, ids: Iterable[UUID]) -> list[Job]:
        rows = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
            (_ids_json(ids),),
        ).fetchall()
        return [_job(row) for row in rows]

    @staticmethod
    def _load_job(conn: sqlite3.Connection, job_id: UUID) -> Job:
        row = conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (str(job_id),)
        ).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _job(row)

    @staticmethod
    def _load_attempts(conn: sqlite3.Connection, keys: Iterable[tuple[UUID, int]]) -> list[Attempt]:
        wanted = json.dumps([[str(job_id), number] for job_id, number in keys])
        rows = conn.execute(
            f"""SELECT {", ".join("a." + c.strip() for c in ATTEMPT_COLUMNS.split(","))}
                FROM json_each(?) AS k
                JOIN attempts AS a ON a.job_id = json_extract(k.value, '$[0]')
                                  AND a.attempt = json_extract(k.value, '$[1]')""",
            (wanted,),
        ).fetchall()
        return [_attempt(row) for row in rows]

    @staticmethod
    def _states(conn: sqlite3.Connection, ids: Iterable[UUID]) -> dict[UUID, JobState]:
        rows = conn.execute(
            "SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
            (_ids_json(ids),),
        ).fetchall()
        return {UUID(job_id): JobState(state) for job_id, state in rows}

    def _dependency_states(
        self, conn: sqlite3.Connection, job: Job, batch: Batch | None = None
    ) -> dict[UUID, JobState]:
        stored = self._states(conn, job.depends_on)
        states: dict[UUID, JobState] = {}
        for dep in job.depends_on:
            current = batch.job(dep) if batch is not None else None
            states[dep] = current.state if current is not None else stored[dep]
        return states

    @staticmethod
    def _write_batch(conn: sqlite3.Connection, batch: Batch) -> None:
        writes = batch.job_writes()
        if writes:
            cursor = conn.executemany(
                _UPDATE_JOB, [_update_params(w.before, w.after) for w in writes]
            )
            assert cursor.rowcount == len(writes), "rows changed under the write lock"
        records = batch.attempt_writes()
        if records:
            conn.executemany(_UPSERT_ATTEMPT, [_attempt_params(r) for r in records])

    # --- submission and reading ---------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        if not jobs:
            return []

        def work(conn: sqlite3.Connection, now: datetime) -> list[Enqueued]:
            keys = sorted({n.idempotency_key for n in jobs if n.idempotency_key is not None})
            known: dict[str, Job] = {}
            if keys:
                rows = conn.execute(
                    f"SELECT {JOB_COLUMNS} FROM jobs"
                    " WHERE idempotency_key IN (SELECT value FROM json_each(?))",
                    (json.dumps(keys),),
                ).fetchall()
                known = {job.idempotency_key: job for job in map(_job, rows) if job.idempotency_key}
            stored = self._states(conn, {d for n in jobs for d in n.depends_on})
            pending: dict[UUID, Job] = {}
            out: list[Enqueued] = []
            for new in jobs:
                if new.idempotency_key is not None:
                    existing = known.get(new.idempotency_key)
                    if existing is not None:
                        if existing.fingerprint != new.fingerprint:
                            raise IdempotencyConflict(
                                new.idempotency_key, None if existing.id in pending else existing.id
                            )
                        out.append(Enqueued(job=existing, created=False))
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
                out.append(Enqueued(job=job, created=True))
            conn.executemany(_INSERT_JOB, [_job_params(job) for job in pending.values()])
            conn.executemany(
                "INSERT INTO dependencies (job_id, depends_on) VALUES (?, ?)",
                [(str(job.id), str(dep)) for job in pending.values() for dep in job.depends_on],
            )
            return out

        return self._write(work)

    def get(self, job_id: UUID) -> Job:
        return self._read(lambda conn: self._load_job(conn, job_id))

    def list_jobs(self, query: JobQuery) -> JobPage:
        where, params = _filter_sql(query.filter)
        if query.cursor is not None:
            where += " AND (created_at, id) < (?, ?)"
            params += [_us(query.cursor[0]), str(query.cursor[1])]
        sql = (
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1{where}"
            " ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        rows = self._read(lambda conn: conn.execute(sql, (*params, query.limit + 1)).fetchall())
        page = [_job(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        next_cursor = (page[-1].created_at, page[-1].id) if more and page else None
        return JobPage(jobs=page, next_cursor=next_cursor)

    def attempts(self, job_id: UUID) -> list[Attempt]:
        def work(conn: sqlite3.Connection) -> list[Attempt]:
            self._load_job(conn, job_id)
            rows = conn.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY attempt",
                (str(job_id),),
            ).fetchall()
            return [_attempt(row) for row in rows]

        return self._read(work)

    # --- the worker's path --------------------------------------------------------------

    def claim(self, request: ClaimRequest) -> list[Job]:
        sql = (
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'queued' AND run_at <= ?"
            " AND queue NOT IN (SELECT queue FROM paused_queues)"
        )
        params: list[Any] = []
        if request.queues is not None:
            sql += " AND queue IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(request.queues)))
        if request.tasks is not None:
            sql += " AND task IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(request.tasks)))
        sql += " ORDER BY priority DESC, run_at, id LIMIT ?"

        def work(conn: sqlite3.Connection, now: datetime) -> list[Job]:
            rows = conn.execute(sql, (_us(now), *params, request.limit)).fetchall()
            batch = Batch(map(_job, rows), ())
            claimed: list[Job] = []
            for row in rows:
                job = batch.job(UUID(row[0]))
                assert job is not None
                step = t.claim(job, now=now, worker=request.worker, lease_ttl_s=request.lease_ttl_s)
                assert isinstance(step, t.Step), step
                claimed.append(batch.apply(step))
            self._write_batch(conn, batch)
            return claimed

        return self._write(work)

    def heartbeat(self, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
        if not refs:
            return []

        def work(conn: sqlite3.Connection, now: datetime) -> list[LeaseStatus]:
            batch = Batch(self._load_jobs(conn, {r.job_id for r in refs}), ())
            out: list[LeaseStatus] = []
            for ref in refs:
                job = batch.job(ref.job_id)
                step = (
                    None if job is None else t.heartbeat(job, ref, now=now, lease_ttl_s=lease_ttl_s)
                )
                if isinstance(step, t.Step):
                    extended = batch.apply(step)
                    assert extended.lease is not None
                    out.append(
                        LeaseStatus(
                            ref=ref,
                            held=True,
                            expires_at=extended.lease.expires_at,
                            cancel_requested=extended.cancel_requested,
                        )
                    )
                else:
                    out.append(LeaseStatus(ref=ref, held=False))
            self._write_batch(conn, batch)
            return out

        return self._write(work)

    def checkpoint(self, ref: LeaseRef, state: object) -> None:
        saved = normalized(state)

        def work(conn: sqlite3.Connection, now: datetime) -> None:
            job = self._load_job(conn, ref.job_id)
            step = t.save_checkpoint(job, ref, now=now, state=saved)
            if isinstance(step, Refusal):
                raise step
            batch = Batch([job], ())
            batch.apply(step)
            self._write_batch(conn, batch)

        self._write(work)

    def _load_batch(self, conn: sqlite3.Connection, refs: Sequence[LeaseRef]) -> Batch:
        return Batch(
            self._load_jobs(conn, {r.job_id for r in refs}),
            self._load_attempts(conn, attempt_keys(refs)),
        )

    def report(self, reports: Sequence[t.Report]) -> list[ReportResult]:
        if not reports:
            return []

        def work(conn: sqlite3.Connection, now: datetime) -> list[ReportResult]:
            batch = self._load_batch(conn, [r.ref for r in reports])
            out = plan_reports(batch, reports, now=now)
            self._write_batch(conn, batch)
            return out

        return self._write(work)

    def release(self, refs: Sequence[LeaseRef]) -> list[ReportResult]:
        if not refs:
            return []

        def work(conn: sqlite3.Connection, now: datetime) -> list[ReportResult]:
            batch = self._load_batch(conn, refs)
            out = plan_releases(batch, refs, now=now)
            self._write_batch(conn, batch)
            return out

        return self._write(work)

    # --- the scheduler's path -----------------------------------------------------------

    def promote_due(self, *, limit: int) -> Promoted:
        def work(conn: sqlite3.Connection, now: datetime) -> Promoted:
            rows = conn.execute(
                f"""SELECT {JOB_COLUMNS} FROM jobs AS j
                    WHERE state IN ('scheduled', 'retrying') AND run_at <= ?
                      AND (state = 'retrying' OR NOT EXISTS (
                          SELECT 1 FROM dependencies AS d JOIN jobs AS p ON p.id = d.depends_on
                          WHERE d.job_id = j.id AND p.state <> 'succeeded'))
                    ORDER BY run_at, id LIMIT ?""",
                (_us(now), limit),
            ).fetchall()
            batch = Batch(map(_job, rows), ())
            by_queue: dict[str, int] = defaultdict(int)
            for row in rows:
                job = batch.job(UUID(row[0]))
                assert job is not None
                step = t.promote(job, now=now, dependency_states=self._dependency_states(conn, job))
                if isinstance(step, t.Step):
                    batch.apply(step)
                    by_queue[job.queue] += 1
            self._write_batch(conn, batch)
            return Promoted(by_queue=dict(by_queue))

        return self._write(work)

    def reap_expired(self, *, limit: int) -> list[Job]:
        def work(conn: sqlite3.Connection, now: datetime) -> list[Job]:
            rows = conn.execute(
                f"""SELECT {JOB_COLUMNS} FROM jobs
                    WHERE state = 'running' AND lease_expires_at < ? ORDER BY id LIMIT ?""",
                (_us(now), limit),
            ).fetchall()
            jobs = [_job(row) for row in rows]
            batch = Batch(jobs, self._load_attempts(conn, [(j.id, j.attempt) for j in jobs]))
            reaped: list[Job] = []
            for job in jobs:
                step = t.expire(job, batch.attempt(job.id, job.attempt), now=now)
                assert isinstance(step, t.Step), step
                reaped.append(batch.apply(step))
            self._write_batch(conn, batch)
            return reaped

        return self._write(work)

    def resolve_dependencies(self, *, limit: int) -> list[Job]:
        def work(conn: sqlite3.Connection, now: datetime) -> list[Job]:
            rows = conn.execute(
                f"""SELECT {JOB_COLUMNS} FROM jobs AS j
                    WHERE state = 'scheduled' AND depends_on <> '[]' AND EXISTS (
                        SELECT 1 FROM dependencies AS d JOIN jobs AS p ON p.id = d.depends_on
                        WHERE d.job_id = j.id AND p.state IN ('dead', 'cancelled'))
                    ORDER BY id LIMIT ?""",
                (limit,),
            ).fetchall()
            jobs = [_job(row) for row in rows]
            batch = Batch(jobs, ())
            cancelled: list[Job] = []
            for job in jobs:
                step = t.fail_dependency(
                    job, now=now, dependency_states=self._dependency_states(conn, job)
                )
                if isinstance(step, t.Step):
                    cancelled.append(batch.apply(step))
            self._write_batch(conn, batch)
            return cancelled

        return self._write(work)

    def next_wakeup(self) -> datetime | None:
        def work(conn: sqlite3.Connection) -> datetime | None:
            now_us = _us(self.now())
            (run_at,) = conn.execute(
                "SELECT min(run_at) FROM jobs WHERE state IN ('scheduled', 'retrying')"
                " AND run_at > ?",
                (now_us,),
            ).fetchone()
            (expiry,) = conn.execute(
                "SELECT min(lease_expires_at) + ? FROM jobs WHERE state = 'running'"
                " AND lease_expires_at >= ?",
                (t.REAPABLE_AFTER // _US, now_us),
            ).fetchone()
            moments = [m for m in (run_at, expiry) if m is not None]
            return _time(min(moments)) if moments else None

        return self._read(work)

    # --- a person's path ----------------------------------------------------------------

    def _change(
        self,
        job_id: UUID,
        decide: Callable[[sqlite3.Connection, Job, datetime], t.Step | Refusal],
    ) -> Job:
        def work(conn: sqlite3.Connection, now: datetime) -> Job:
            job = self._load_job(conn, job_id)
            step = decide(conn, job, now)
            if isinstance(step, Refusal):
                raise step
            if step.job == step.before:
                return step.job
            batch = Batch([job], ())
            batch.apply(step)
            self._write_batch(conn, batch)
            return step.job

        return self._write(work)

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

    def _change_many(
        self,
        job_filter: JobFilter,
        states: frozenset[JobState],
        decide: Callable[[sqlite3.Connection, Batch, Job, datetime], t.Step | Refusal],
    ) -> int:
        where, params = _filter_sql(job_filter)

        def work(conn: sqlite3.Connection, now: datetime) -> int:
            rows = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs"
                f" WHERE state IN (SELECT value FROM json_each(?)){where} ORDER BY id",
                (json.dumps(sorted(s.value for s in states)), *params),
            ).fetchall()
            jobs = [_job(row) for row in rows]
            batch = Batch(jobs, ())
            count = 0
            for job in jobs:
                step = decide(conn, batch, job, now)
                if isinstance(step, t.Step) and step.job != step.before:
                    batch.apply(step)
                    count += 1
            self._write_batch(conn, batch)
            return count

        return self._write(work)

    def cancel_many(self, job_filter: JobFilter) -> int:
        active = frozenset({S.SCHEDULED, S.QUEUED, S.RUNNING, S.RETRYING})
        return self._change_many(
            job_filter, active, lambda _conn, _batch, job, now: t.cancel(job, now=now)
        )

    def retry_many(self, job_filter: JobFilter) -> int:
        return self._change_many(
            job_filter,
            frozenset({S.DEAD, S.CANCELLED}),
            lambda conn, batch, job, now: t.retry(
                job, now=now, dependency_states=self._dependency_states(conn, job, batch)
            ),
        )

    def set_paused(self, queue: str, *, paused: bool) -> None:
        def work(conn: sqlite3.Connection, now: datetime) -> None:
            if paused:
                conn.execute(
                    "INSERT OR IGNORE INTO paused_queues (queue, paused_at) VALUES (?, ?)",
                    (queue, _us(now)),
                )
            else:
                conn.execute("DELETE FROM paused_queues WHERE queue = ?", (queue,))

        self._write(work)

    def queues(self) -> list[QueueInfo]:
        def work(conn: sqlite3.Connection) -> tuple[list[Any], set[str]]:
            rows = conn.execute(
                """SELECT queue, state, count(*),
                          min(CASE WHEN state = 'queued' THEN run_at END)
                   FROM jobs GROUP BY queue, state"""
            ).fetchall()
            paused = {queue for (queue,) in conn.execute("SELECT queue FROM paused_queues")}
            return rows, paused

        rows, paused = self._read(work)
        now = self.now()
        counts: dict[str, dict[JobState, int]] = defaultdict(dict)
        oldest: dict[str, datetime] = {}
        for queue, state, count, oldest_run_at in rows:
            counts[queue][JobState(state)] = count
            if oldest_run_at is not None:
                oldest[queue] = _time(oldest_run_at)
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

    def attempt_totals(self, *, run_s_buckets: Sequence[float]) -> AttemptTotals:
        bounds = [float(b) for b in run_s_buckets]
        buckets = "".join(", sum(CASE WHEN d <= ? THEN 1 ELSE 0 END)" for _ in bounds)
        query = (
            f"SELECT outcome, count(*), coalesce(sum(d), 0){buckets} FROM "
            "(SELECT outcome, (finished_at - started_at) / 1e6 AS d FROM attempts) "
            "GROUP BY outcome"
        )

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return list(conn.execute(query, bounds).fetchall())

        return attempt_totals_from_rows(self._read(work), bounds)

    def stats(self, *, window_s: float) -> Stats:
        now = self.now()
        since = _us(after(now, -window_s))

        def work(conn: sqlite3.Connection) -> tuple[dict[str, int], int, list[int]]:
            finished = dict(
                conn.execute(
                    """SELECT state, count(*) FROM jobs
                       WHERE finished_at >= ? AND state IN ('succeeded', 'dead')
                       GROUP BY state""",
                    (since,),
                ).fetchall()
            )
            (failed,) = conn.execute(  # as transitions.charged_failure
                """SELECT count(*) FROM attempts WHERE finished_at >= ?
                   AND outcome IN ('failed', 'timeout', 'worker_lost', 'stale')
                   AND coalesce(json_extract(error, '$.type'), '') != ?""",
                (since, t.SHUTDOWN_ERROR),
            ).fetchone()
            durations = [
                us
                for (us,) in conn.execute(
                    """SELECT finished_at - started_at FROM attempts
                       WHERE finished_at >= ? AND outcome = 'succeeded' ORDER BY 1""",
                    (since,),
                )
            ]
            return finished, failed, durations

        finished, failed, durations_us = self._read(work)
        succeeded = finished.get("succeeded", 0)
        dead = finished.get("dead", 0)

        def pick(fraction: float) -> float | None:
            if not durations_us:
                return None
            return durations_us[percentile_index(len(durations_us), fraction)] / 1e6

        return Stats(
            window_s=window_s,
            succeeded=succeeded,
            dead=dead,
            failed_attempts=failed,
            throughput_per_s=(succeeded + dead) / window_s,
            run_s_p50=pick(0.5),
            run_s_p95=pick(0.95),
        )


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (SQLite runs one at a time here, so a
    migration stays inside the caller's transaction)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--") and not current.strip():
            continue
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    assert not current.strip(), f"an unfinished statement in a migration: {current!r}"
    return out
