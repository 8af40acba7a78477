"""The SQLite store: the embedded default (`taskyard standalone`, `sqlite:///path`).

It is the domain's `StoreEngine` over `SqliteRows`: every decision is the engine's, and
this module only reads and writes rows. A write is a conditional
`UPDATE ... WHERE id = ? AND state = ? AND attempt = ?`, inside one `BEGIN IMMEDIATE`
transaction with the reads it was decided on. The columns are declared once (`JOBS`,
`ATTEMPTS`); the statements' column lists and the row codecs are made from them.

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
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from taskyard.adapters.sqlshared import (
    SCHEDULE_COLUMNS,
    SETTINGS_COLUMNS,
    TASK_COLUMNS,
    Column,
    Table,
    enum_value,
    error_column,
    filter_terms,
    fire_from_json,
    fire_text,
    json_text,
    limits_of_row,
    literals,
    load_migrations,
    normalized,
    policy_from_json,
    retention_by_queue,
    run_times,
    schedule_from_row,
    schedule_row,
    settings_row,
    task_from_row,
    task_row,
)
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.errors import StoreUnavailable
from taskyard.domain.flow import Headroom, QueueLimits, Start, proposed
from taskyard.domain.model import Attempt, Job, JobState, Outcome
from taskyard.domain.ports import ClaimRequest, Clock, JobFilter, JobQuery
from taskyard.domain.retention import Periods, Prunable
from taskyard.domain.schedules import Schedule
from taskyard.domain.store import Changes, Rows, StoreEngine, plans
from taskyard.domain.store.rows import (
    JobCount,
    OutcomeCount,
    Promotable,
    QueueSettings,
    Running,
    RunTimes,
)
from taskyard.domain.timefmt import EPOCH

T = TypeVar("T")

BUSY_TIMEOUT_S_DEFAULT = 10.0
IDLE_CONNECTIONS_MAX = 8

_US = timedelta(microseconds=1)


def _us(moment: datetime) -> int:
    return (moment - EPOCH) // _US


def _time(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _ids(ids: Iterable[UUID]) -> str:
    return json.dumps(sorted(str(i) for i in set(ids)))


def _uuids(text: str) -> tuple[UUID, ...]:
    return tuple(UUID(d) for d in json.loads(text))


def _uuids_text(ids: tuple[UUID, ...]) -> str:
    return json.dumps([str(d) for d in ids])


JOBS = Table(
    Job,
    [
        Column("id", load=UUID, dump=str),
        Column("task"),
        Column("args", load=json.loads, dump=json_text),
        Column("queue"),
        Column("priority", changes=True),
        Column("run_at", load=_time, dump=_us, changes=True),
        Column("max_attempts"),
        Column("backoff", load=policy_from_json, dump=lambda p: json_text(p.to_json())),
        Column("timeout_s", null=True),
        Column("idempotency_key", null=True),
        Column("depends_on", load=_uuids, dump=_uuids_text),
        Column("state", load=JobState, dump=enum_value, changes=True),
        Column("attempt", changes=True),
        Column("attempt_limit", changes=True),
        Column("created_at", load=_time, dump=_us),
        Column("updated_at", load=_time, dump=_us, changes=True),
        Column("finished_at", load=_time, dump=_us, null=True, changes=True),
        Column("lease_worker", null=True, changes=True),
        Column("lease_expires_at", load=_time, dump=_us, null=True, changes=True),
        Column("cancel_requested", load=bool, dump=int, changes=True),
        Column("checkpoint", load=json.loads, dump=json_text, null=True, changes=True),
        Column("result", load=json.loads, dump=json_text, null=True, changes=True),
        error_column("last_error"),
        Column("correlation_id", null=True),
        Column("fingerprint", null=True),
        Column("trace_context", load=json.loads, dump=json_text, null=True),
        Column("schedule", load=fire_from_json, dump=fire_text, null=True),
        Column("concurrency_key", null=True),
    ],
)
ATTEMPTS = Table(
    Attempt,
    [
        Column("job_id", load=UUID, dump=str),
        Column("attempt"),
        Column("worker"),
        Column("started_at", load=_time, dump=_us),
        Column("lease_expires_at", load=_time, dump=_us, changes=True),
        Column("finished_at", load=_time, dump=_us, null=True, changes=True),
        Column("outcome", load=Outcome, dump=enum_value, changes=True),
        error_column("error"),
    ],
)
_J = JOBS.select()
_SETTINGS = SETTINGS_COLUMNS
_GUARD = JOBS.writer([c for c in JOBS.columns if c.name in ("id", "state", "attempt")])
_CHANGED = JOBS.writer(JOBS.changing)
_INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(JOBS.names)}) VALUES ({', '.join('?' * len(JOBS.names))})"
)
_UPDATE_JOB = (
    f"UPDATE jobs SET {', '.join(f'{c.name} = ?' for c in JOBS.changing)}"
    " WHERE id = ? AND state = ? AND attempt = ?"
)
_UPSERT_ATTEMPT = (
    f"INSERT INTO attempts ({', '.join(ATTEMPTS.names)})"
    f" VALUES ({', '.join('?' * len(ATTEMPTS.names))})"
    " ON CONFLICT (job_id, attempt) DO UPDATE SET"
    f" {', '.join(f'{c.name} = excluded.{c.name}' for c in ATTEMPTS.changing)}"
    " WHERE attempts.outcome = ?"
)


def _filter_sql(job_filter: JobFilter) -> tuple[str, list[Any]]:
    """`AND ...` conditions for a filter, and their parameters."""
    terms = filter_terms(job_filter)
    sql = "".join(f" AND {column} IN (SELECT value FROM json_each(?))" for column, _ in terms)
    return sql, [json.dumps(values) for _, values in terms]


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    return StoreUnavailable(message=f"SQLite store unavailable: {exc}")


def _is_unavailability(exc: sqlite3.Error) -> bool:
    """Locked, busy, I/O trouble, an unreadable file: not a bug in a statement."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


_BUCKET = "min(CAST((finished_at - ?) / ? AS INTEGER), ?)"
"""The index of a row's slice of time since a moment (parameters: the moment in
microseconds, the slice's length in microseconds, the last index, which takes any later)."""


class SqliteRows:
    """`Rows` over one connection inside one transaction."""

    def __init__(self, conn: sqlite3.Connection, now: datetime) -> None:
        self._conn = conn
        self._now = now

    def now(self) -> datetime:
        return self._now

    def _jobs(self, where: str, *params: Any) -> list[Job]:
        return [
            JOBS.read(row)
            for row in self._conn.execute(f"SELECT {_J} FROM jobs AS j WHERE {where}", params)
        ]

    def _one(self, sql: str, *params: Any) -> Any:
        return self._conn.execute(sql, params).fetchone()[0]

    # --- loading by key -------------------------------------------------------------------

    def jobs(self, ids: Collection[UUID]) -> list[Job]:
        return self._jobs("id IN (SELECT value FROM json_each(?)) ORDER BY id", _ids(ids))

    def attempt_records(self, keys: Collection[tuple[UUID, int]]) -> list[Attempt]:
        wanted = json.dumps([[str(job_id), number] for job_id, number in keys])
        rows = self._conn.execute(
            f"""SELECT {ATTEMPTS.select("a.")} FROM json_each(?) AS k
                JOIN attempts AS a ON a.job_id = json_extract(k.value, '$[0]')
                                  AND a.attempt = json_extract(k.value, '$[1]')""",
            (wanted,),
        )
        return [ATTEMPTS.read(row) for row in rows]

    def keyed(self, keys: Collection[str]) -> list[Job]:
        return self._jobs(
            "idempotency_key IN (SELECT value FROM json_each(?))", json.dumps(list(keys))
        )

    def states(self, ids: Collection[UUID]) -> dict[UUID, JobState]:
        rows = self._conn.execute(
            "SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(?))", (_ids(ids),)
        )
        return {UUID(job_id): JobState(state) for job_id, state in rows}

    # --- candidates -----------------------------------------------------------------------

    def _due(self, request: ClaimRequest, state: JobState, now: datetime) -> tuple[str, list[Any]]:
        where = (
            f"state = {literals(state)} AND run_at <= ?"
            " AND queue NOT IN (SELECT queue FROM paused_queues)"
        )
        params: list[Any] = [_us(now)]
        for column, names in (("queue", request.queues), ("task", request.tasks)):
            if names is not None:
                where += f" AND {column} IN (SELECT value FROM json_each(?))"
                params.append(json.dumps(sorted(names)))
        return where, params

    def claimable(
        self,
        request: ClaimRequest,
        *,
        state: JobState,
        now: datetime,
        other_than: Collection[str] = (),
    ) -> list[Job]:
        where, params = self._due(request, state, now)
        if other_than:
            where += " AND queue NOT IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(other_than)))
        return self._jobs(
            f"{where} ORDER BY priority DESC, run_at, id LIMIT ?", *params, request.limit
        )

    def claimable_in_turns(
        self,
        request: ClaimRequest,
        queue: str,
        *,
        state: JobState,
        now: datetime,
        after: str | None,
        room: Headroom,
        limit: int,
    ) -> list[Job]:
        """Each key's first jobs (no more than the claim, the queue or the key can take),
        the keys walked on `jobs_claim_key` in the order they take turns (after `after`,
        then from the first): one probe per key, and the walk stops once the keys walked
        (with the jobs without a key, when those come among them) hold as many first jobs
        as the claim can take, for no key further on can come before them. Then
        `flow.proposed` picks among what was read."""
        cap = limit if room.jobs is None else min(limit, room.jobs)
        if cap <= 0:
            return []
        where, params = self._due(request, state, now)

        def first(match: str, *args: Any) -> list[Job]:
            rows = self._conn.execute(
                f"""SELECT {_J} FROM jobs AS j INDEXED BY jobs_claim_key
                    WHERE {where} AND queue = ? AND {match}
                    ORDER BY priority DESC, run_at, id LIMIT ?""",
                (*params, queue, *args),
            )
            return [JOBS.read(row) for row in rows]

        def next_key(past: str) -> str | None:
            row = self._conn.execute(
                f"""SELECT min(concurrency_key) FROM jobs INDEXED BY jobs_claim_key
                    WHERE state = {literals(state)} AND queue = ? AND concurrency_key > ?""",
                (queue, past),
            ).fetchone()
            return None if row is None else row[0]

        unkeyed = first("concurrency_key IS NULL", cap)
        found = list(unkeyed)
        # The jobs without a key take their turn first when no key was served yet, else
        # first among the keys at or before `after` (the name "" sorts first).
        firsts = 1 if unkeyed and after is None else 0
        wrapped = False
        key = next_key(after or "")
        if key is None and after is not None:
            key, wrapped = next_key(""), True
            firsts += 1 if unkeyed else 0
        while key is not None and firsts < cap:
            if wrapped and after is not None and key > after:
                break
            key_room = room.key_room(key)
            take = cap if key_room is None else min(cap, key_room)
            if take > 0:
                jobs = first("concurrency_key = ?", key, take)
                found.extend(jobs)
                firsts += 1 if jobs else 0
            following = next_key(key)
            if following is None and not wrapped and after is not None:
                wrapped = True
                firsts += 1 if unkeyed else 0
                following = next_key("")
            key = following
        return proposed(found, room, after=after, limit=limit)

    def promotable(self, rule: Promotable, *, now: datetime, limit: int) -> list[Job]:
        return self._jobs(
            f"""state IN ({literals(*rule.states)}) AND run_at <= ?
                AND (state <> {literals(rule.gated)} OR NOT EXISTS (
                    SELECT 1 FROM dependencies AS d JOIN jobs AS p ON p.id = d.depends_on
                    WHERE d.job_id = j.id AND p.state <> {literals(rule.gate_open)}))
                ORDER BY run_at, id LIMIT ?""",
            _us(now),
            limit,
        )

    def expired(self, *, state: JobState, now: datetime, limit: int) -> list[Job]:
        return self._jobs(
            f"state = {literals(state)} AND lease_expires_at < ? ORDER BY id LIMIT ?",
            _us(now),
            limit,
        )

    def blocked(self, *, state: JobState, failed: Collection[JobState], limit: int) -> list[Job]:
        return self._jobs(
            f"""state = {literals(state)} AND depends_on <> '[]' AND EXISTS (
                    SELECT 1 FROM dependencies AS d JOIN jobs AS p ON p.id = d.depends_on
                    WHERE d.job_id = j.id AND p.state IN ({literals(*failed)}))
                ORDER BY id LIMIT ?""",
            limit,
        )

    def matching(self, job_filter: JobFilter, *, states: Collection[JobState]) -> list[Job]:
        where, params = _filter_sql(job_filter)
        return self._jobs(f"state IN ({literals(*states)}){where} ORDER BY id", *params)

    def prunable(self, rule: Prunable, *, limit: int) -> list[Job]:
        where = f"state = {literals(rule.state)} AND finished_at <= ?"
        params: list[Any] = [_us(rule.finished_by)]
        if rule.queues is not None:
            where += " AND queue IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(rule.queues)))
        if rule.other_than:
            where += " AND queue NOT IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(rule.other_than)))
        return self._jobs(
            f"""{where} AND NOT EXISTS (SELECT 1 FROM dependencies AS d WHERE d.depends_on = j.id)
                ORDER BY finished_at, id LIMIT ?""",
            *params,
            limit,
        )

    # --- writing --------------------------------------------------------------------------

    def delete(self, jobs: Sequence[Job]) -> None:
        ids = _ids(job.id for job in jobs)
        self._conn.execute(
            "DELETE FROM attempts WHERE job_id IN (SELECT value FROM json_each(?))", (ids,)
        )
        self._conn.execute(
            "DELETE FROM dependencies WHERE job_id IN (SELECT value FROM json_each(?))", (ids,)
        )
        cursor = self._conn.execute(
            "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))", (ids,)
        )
        assert cursor.rowcount == len(jobs), "rows changed under the write lock"

    def set_retention(self, queue: str, periods: Periods) -> None:
        self._conn.execute("DELETE FROM queue_retention WHERE queue = ?", (queue,))
        self._conn.executemany(
            "INSERT INTO queue_retention (queue, state, retention_s) VALUES (?, ?, ?)",
            [(queue, state.value, seconds) for state, seconds in sorted(periods.items())],
        )

    def write(self, changes: Changes) -> None:
        conn = self._conn
        if changes.created:
            conn.executemany(_INSERT_JOB, map(JOBS.values, changes.created))
            conn.executemany(
                "INSERT INTO dependencies (job_id, depends_on) VALUES (?, ?)",
                [(str(job.id), str(dep)) for job in changes.created for dep in job.depends_on],
            )
        if changes.updated:
            cursor = conn.executemany(
                _UPDATE_JOB, [_CHANGED(w.after) + _GUARD(w.before) for w in changes.updated]
            )
            assert cursor.rowcount == len(changes.updated), "rows changed under the write lock"
        if changes.attempts:
            open_ = plans.OPEN.value
            conn.executemany(
                _UPSERT_ATTEMPT, [(*ATTEMPTS.values(a), open_) for a in changes.attempts]
            )

    def set_paused(self, queue: str, *, paused: bool) -> None:
        if paused:
            self._conn.execute(
                "INSERT OR IGNORE INTO paused_queues (queue, paused_at) VALUES (?, ?)",
                (queue, _us(self._now)),
            )
        else:
            self._conn.execute("DELETE FROM paused_queues WHERE queue = ?", (queue,))

    def put_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        if not limits.governed:
            self._conn.execute("DELETE FROM queue_settings WHERE queue = ?", (queue,))
            self._conn.execute("DELETE FROM queue_starts WHERE queue = ?", (queue,))
            return
        self._conn.execute(
            f"""INSERT INTO queue_settings (queue, {_SETTINGS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (queue) DO UPDATE SET
                {", ".join(f"{c} = excluded.{c}" for c in _SETTINGS.split(", "))}""",
            (queue, *settings_row(limits)),
        )

    def set_turns(self, turns: Mapping[str, str]) -> None:
        self._conn.executemany(
            "UPDATE queue_settings SET turn_after = ? WHERE queue = ?",
            [(key, queue) for queue, key in sorted(turns.items())],
        )

    def record_starts(self, queue: str, starts: Sequence[Start], *, keep_after: datetime) -> None:
        self._conn.execute(
            "DELETE FROM queue_starts WHERE queue = ? AND started_at <= ?",
            (queue, _us(keep_after)),
        )
        self._conn.executemany(
            "INSERT INTO queue_starts (queue, concurrency_key, started_at) VALUES (?, ?, ?)",
            [(queue, start.key, _us(start.at)) for start in starts],
        )

    def put_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        self._conn.executemany(
            f"INSERT OR REPLACE INTO tasks ({TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [task_row(task, _us(task.published_at or self._now)) for task in tasks],
        )

    def put_schedules(self, schedules: Sequence[Schedule]) -> None:
        self._conn.executemany(
            f"INSERT OR REPLACE INTO schedules ({SCHEDULE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [schedule_row(schedule, _us) for schedule in schedules],
        )

    def delete_schedule(self, name: str) -> bool:
        return self._conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount > 0

    def due_schedules(self, *, now: datetime, limit: int) -> list[Schedule]:
        rows = self._conn.execute(
            f"""SELECT {SCHEDULE_COLUMNS} FROM schedules
                WHERE NOT paused AND next_fire_at <= ? ORDER BY next_fire_at, name LIMIT ?""",
            (_us(now), limit),
        )
        return [schedule_from_row(row, _time) for row in rows]

    def schedule_rows(self, names: Collection[str] | None = None) -> list[Schedule]:
        if names is None:
            rows = self._conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules")
        else:
            rows = self._conn.execute(
                f"""SELECT {SCHEDULE_COLUMNS} FROM schedules
                    WHERE name IN (SELECT value FROM json_each(?))""",
                (json.dumps(sorted(set(names))),),
            )
        return [schedule_from_row(row, _time) for row in rows]

    # --- reading --------------------------------------------------------------------------

    def page(self, query: JobQuery) -> list[Job]:
        where, params = _filter_sql(query.filter)
        if query.cursor is not None:
            where += " AND (created_at, id) < (?, ?)"
            params += [_us(query.cursor[0]), str(query.cursor[1])]
        return self._jobs(
            f"1 = 1{where} ORDER BY created_at DESC, id DESC LIMIT ?", *params, query.limit + 1
        )

    def job_attempts(self, job_id: UUID) -> list[Attempt] | None:
        if not self._one("SELECT count(*) FROM jobs WHERE id = ?", str(job_id)):
            return None
        rows = self._conn.execute(
            f"SELECT {ATTEMPTS.select()} FROM attempts WHERE job_id = ? ORDER BY attempt",
            (str(job_id),),
        )
        return [ATTEMPTS.read(row) for row in rows]

    def earliest_run_at(self, *, states: Collection[JobState], after: datetime) -> datetime | None:
        found = self._one(
            f"SELECT min(run_at) FROM jobs WHERE state IN ({literals(*states)}) AND run_at > ?",
            _us(after),
        )
        return None if found is None else _time(found)

    def earliest_expiry(self, *, state: JobState, after: datetime) -> datetime | None:
        found = self._one(
            f"SELECT min(lease_expires_at) FROM jobs WHERE state = {literals(state)}"
            " AND lease_expires_at > ?",
            _us(after),
        )
        return None if found is None else _time(found)

    def earliest_fire_at(self, *, after: datetime) -> datetime | None:
        found = self._one(
            "SELECT min(next_fire_at) FROM schedules WHERE NOT paused AND next_fire_at > ?",
            _us(after),
        )
        return None if found is None else _time(found)

    def job_counts(self) -> list[JobCount]:
        rows = self._conn.execute(
            "SELECT queue, task, state, error_type, n FROM job_counts WHERE n <> 0"
        )
        return [
            JobCount(
                queue=queue, task=task, state=JobState(state), error_type=error or None, count=n
            )
            for queue, task, state, error, n in rows
        ]

    def earliest_run_at_by_queue(self, *, state: JobState) -> dict[str, datetime]:
        # One probe of jobs_queued_age per queue the counters say has such jobs.
        rows = self._conn.execute(
            f"""SELECT q.queue, (SELECT min(j.run_at) FROM jobs AS j
                                 WHERE j.queue = q.queue AND j.state = {literals(state)})
                FROM (SELECT DISTINCT queue FROM job_counts
                      WHERE state = {literals(state)} AND n > 0) AS q"""
        )
        return {queue: _time(run_at) for queue, run_at in rows if run_at is not None}

    def error_ids(
        self, *, state: JobState, task: str, error_type: str | None, limit: int
    ) -> list[UUID]:
        rows = self._conn.execute(
            f"""SELECT id FROM jobs
                WHERE state = {literals(state)} AND task = ?
                  AND json_extract(last_error, '$.type') IS ?
                ORDER BY created_at DESC, id DESC LIMIT ?""",
            (task, error_type, limit),
        )
        return [UUID(job_id) for (job_id,) in rows]

    def dependents(self, job_id: UUID, *, limit: int) -> list[Job]:
        return self._jobs(
            """id IN (SELECT d.job_id FROM dependencies AS d WHERE d.depends_on = ?)
               ORDER BY created_at, id LIMIT ?""",
            str(job_id),
            limit,
        )

    def paused(self) -> set[str]:
        return {queue for (queue,) in self._conn.execute("SELECT queue FROM paused_queues")}

    def queue_settings(self, queues: Collection[str] | None = None) -> dict[str, QueueSettings]:
        where, params = "", []
        if queues is not None:
            where, params = (
                " WHERE queue IN (SELECT value FROM json_each(?))",
                [json.dumps(sorted(queues))],
            )
        rows = self._conn.execute(
            f"SELECT queue, {_SETTINGS}, turn_after FROM queue_settings{where} ORDER BY queue",
            params,
        )
        return {
            row[0]: QueueSettings(limits=limits_of_row(row[1:-1]), turn_after=row[-1])
            for row in rows
        }

    def running(
        self, queues: Collection[str] | None, *, state: JobState, now: datetime
    ) -> list[Running]:
        where, params = "", list[Any]([_us(now)])
        if queues is not None:
            where = " AND queue IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(queues)))
        rows = self._conn.execute(
            f"""SELECT queue, concurrency_key, count(*) FROM jobs
                WHERE state = {literals(state)} AND lease_expires_at >= ?{where}
                GROUP BY queue, concurrency_key""",
            params,
        )
        return [Running(queue=queue, key=key, count=n) for queue, key, n in rows]

    def starts(self, queue: str, *, after: datetime, key: str | None = None) -> list[Start]:
        keyed, params = ("", ()) if key is None else (" AND concurrency_key = ?", (key,))
        rows = self._conn.execute(
            "SELECT concurrency_key, started_at FROM queue_starts"
            f" WHERE queue = ? AND started_at > ?{keyed}",
            (queue, _us(after), *params),
        )
        return [Start(key=key, at=_time(at)) for key, at in rows]

    def retention_overrides(self) -> dict[str, dict[JobState, int]]:
        rows = self._conn.execute("SELECT queue, state, retention_s FROM queue_retention")
        return retention_by_queue(rows)

    def task_entries(self) -> list[TaskInfo]:
        rows = self._conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks")
        return [task_from_row(row, _time(row[-1])) for row in rows]

    def finished_counts(self, *, since: datetime) -> dict[JobState, int]:
        rows = self._conn.execute(
            "SELECT state, count(*) FROM jobs WHERE finished_at >= ? GROUP BY state", (_us(since),)
        )
        return {JobState(state): count for state, count in rows}

    def outcome_counts(self, *, since: datetime) -> list[OutcomeCount]:
        rows = self._conn.execute(
            """SELECT outcome, json_extract(error, '$.type'), count(*) FROM attempts
               WHERE finished_at >= ? GROUP BY 1, 2""",
            (_us(since),),
        )
        return [OutcomeCount(outcome=Outcome(o), error_type=e, count=n) for o, e, n in rows]

    def finished_by_bucket(
        self, *, since: datetime, bucket_s: float, buckets: int
    ) -> list[tuple[int, JobState, int]]:
        rows = self._conn.execute(
            f"SELECT {_BUCKET}, state, count(*) FROM jobs WHERE finished_at >= ? GROUP BY 1, 2",
            (_us(since), bucket_s * 1e6, buckets - 1, _us(since)),
        )
        return [(int(index), JobState(state), n) for index, state, n in rows]

    def outcomes_by_bucket(
        self, *, since: datetime, bucket_s: float, buckets: int
    ) -> list[tuple[int, OutcomeCount]]:
        rows = self._conn.execute(
            f"""SELECT {_BUCKET}, outcome, json_extract(error, '$.type'), count(*)
                FROM attempts WHERE finished_at >= ? GROUP BY 1, 2, 3""",
            (_us(since), bucket_s * 1e6, buckets - 1, _us(since)),
        )
        return [
            (int(index), OutcomeCount(outcome=Outcome(o), error_type=e, count=n))
            for index, o, e, n in rows
        ]

    def run_seconds_at(
        self, *, since: datetime, outcome: Outcome, ranks: Sequence[int]
    ) -> list[float]:
        rows = self._conn.execute(
            """SELECT rank, d FROM (
                   SELECT finished_at - started_at AS d,
                          row_number() OVER (ORDER BY finished_at - started_at) - 1 AS rank
                   FROM attempts WHERE finished_at >= ? AND outcome = ?)
               WHERE rank IN (SELECT value FROM json_each(?))""",
            (_us(since), outcome.value, json.dumps(list(ranks))),
        )
        found = dict(rows.fetchall())
        return [found[rank] / 1e6 for rank in ranks]

    def run_times(self, *, bounds: Sequence[float]) -> list[RunTimes]:
        rows = self._conn.execute("SELECT outcome, bound, n, sum_s FROM attempt_counts")
        return run_times(rows, bounds)


class SqliteJobStore(StoreEngine):
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock,
        busy_timeout_s: float = BUSY_TIMEOUT_S_DEFAULT,
    ) -> None:
        assert busy_timeout_s > 0, busy_timeout_s
        super().__init__(self, normal=normalized)
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

    def _transaction(self, begin: str, work: Callable[[sqlite3.Connection, datetime], T]) -> T:
        """Run `work` in one transaction, with the store time read once it has begun (after
        the write lock is held, for `BEGIN IMMEDIATE`). An error rolls everything back."""
        with self._connection() as conn:
            try:
                conn.execute(begin)
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

    def writing(self, work: Callable[[Rows], T]) -> T:
        return self._transaction("BEGIN IMMEDIATE", lambda conn, now: work(SqliteRows(conn, now)))

    def reading(self, work: Callable[[Rows], T]) -> T:
        return self._transaction("BEGIN", lambda conn, now: work(SqliteRows(conn, now)))

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
        return self._transaction("BEGIN IMMEDIATE", upgrade)

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
