"""PostgreSQL's rows: the tables declared once, and `PostgresRows`, the engine's row access.

`PostgresRows` works on one connection, inside the transaction its caller opened (or in
autocommit for a read). What a write transaction loads it locks: `FOR UPDATE` in id order
for loads by key, `FOR UPDATE SKIP LOCKED` for the candidate queries the scheduler and
the claim run, so two passes at once skip each other's rows. Every time is the server's
`now()` of the transaction.

Values travel three ways, all made from the declaration: in a JSON document for
`jsonb_to_recordset` (batches of changes and small inserts), as binary `COPY` rows (large
inserts), and as binary parameters (the hot plain insert, `hotpaths.py`). JSON columns
travel as JSON text every way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import TupleRow, tuple_row
from psycopg.types.json import Jsonb

from taskyard.adapters import sqlshared as sql
from taskyard.domain.catalog import TaskInfo
from taskyard.domain.flow import Headroom, QueueLimits, Start
from taskyard.domain.model import Attempt, Job, JobState, Outcome
from taskyard.domain.ports import ClaimRequest, JobFilter, JobQuery
from taskyard.domain.retention import Periods, Prunable
from taskyard.domain.retry import RetryPolicy
from taskyard.domain.schedules import Schedule
from taskyard.domain.store import Changes, plans
from taskyard.domain.store.rows import (
    JobCount,
    OutcomeCount,
    Promotable,
    QueueSettings,
    Running,
    RunTimes,
)

Conn = psycopg.Connection[Any]

COPY_MIN_JOBS = 64
"""New jobs this many or more are written with `COPY`; fewer with one `INSERT`."""

_CACHED_MAX = 1024


def utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


_STATES: dict[str, JobState] = {state.value: state for state in JobState}
_POLICIES: dict[str, RetryPolicy] = {}
_POLICY_TEXTS: dict[RetryPolicy, str] = {}


def _policy(text: str) -> RetryPolicy:
    """The retry policy of a `backoff` column's text; the few distinct ones are kept."""
    policy = _POLICIES.get(text)
    if policy is None:
        if len(_POLICIES) >= _CACHED_MAX:
            _POLICIES.clear()
        policy = _POLICIES[text] = sql.policy_from_json(text)
    return policy


def _policy_text(policy: RetryPolicy) -> str:
    text = _POLICY_TEXTS.get(policy)
    if text is None:
        if len(_POLICY_TEXTS) >= _CACHED_MAX:
            _POLICY_TEXTS.clear()
        text = _POLICY_TEXTS[policy] = json.dumps(policy.to_json())
    return text


def _args(text: str) -> dict[str, Any]:
    """An `args` column's text as a new dict."""
    if text == "{}":
        return {}
    value: dict[str, Any] = json.loads(text)
    return value


def _args_text(args: Any) -> str:
    return sql.json_text(args) if args else "{}"  # type: ignore[return-value]


JOBS = sql.Table(
    Job,
    [
        sql.Column("id", "uuid"),
        sql.Column("task"),
        sql.Column("args", "jsonb", load=_args, dump=_args_text, select="{c}::text"),
        sql.Column("queue"),
        sql.Column("priority", "integer", changes=True),
        sql.Column("run_at", "timestamptz", load=utc, changes=True),
        sql.Column("max_attempts", "integer"),
        sql.Column("backoff", "jsonb", load=_policy, dump=_policy_text, select="{c}::text"),
        sql.Column("timeout_s", "double precision", null=True),
        sql.Column("idempotency_key", null=True),
        sql.Column("depends_on", "uuid[]", load=tuple, dump=list),
        sql.Column("state", load=_STATES.__getitem__, dump=sql.enum_value, changes=True),
        sql.Column("attempt", "integer", changes=True),
        sql.Column("attempt_limit", "integer", changes=True),
        sql.Column("created_at", "timestamptz", load=utc),
        sql.Column("updated_at", "timestamptz", load=utc, changes=True),
        sql.Column("finished_at", "timestamptz", load=utc, null=True, changes=True),
        sql.Column("lease_worker", null=True, changes=True),
        sql.Column("lease_expires_at", "timestamptz", load=utc, null=True, changes=True),
        sql.Column("cancel_requested", "boolean", changes=True),
        sql.Column("checkpoint", "jsonb", dump=sql.json_text, null=True, changes=True),
        sql.Column("result", "jsonb", dump=sql.json_text, null=True, changes=True),
        sql.error_column("last_error", "jsonb"),
        sql.Column("correlation_id", null=True),
        sql.Column("fingerprint", null=True),
        sql.Column("trace_context", "jsonb", dump=sql.json_text, null=True),
        sql.Column(
            "schedule",
            "jsonb",
            load=sql.fire_from_json,
            dump=sql.fire_text,
            select="{c}::text",
            null=True,
        ),
        sql.Column("concurrency_key", null=True),
    ],
)
ATTEMPTS = sql.Table(
    Attempt,
    [
        sql.Column("job_id", "uuid"),
        sql.Column("attempt", "integer"),
        sql.Column("worker"),
        sql.Column("started_at", "timestamptz", load=utc),
        sql.Column("lease_expires_at", "timestamptz", load=utc, changes=True),
        sql.Column("finished_at", "timestamptz", load=utc, null=True, changes=True),
        sql.Column("outcome", load=Outcome, dump=sql.enum_value, changes=True),
        sql.error_column("error", "jsonb"),
    ],
)
J = JOBS.select()
J_ = JOBS.select("j.")

# --- JSON documents for jsonb_to_recordset ------------------------------------------------

_JSON_WIRE: dict[str, Callable[[Any], Any]] = {
    "uuid": str,
    "timestamptz": datetime.isoformat,
    "uuid[]": lambda ids: [str(i) for i in ids],
}


def _record_type(column: sql.Column) -> str:
    """JSON columns arrive as JSON text (a string in the document) and are cast back."""
    return "text" if column.type == "jsonb" else column.type


def record_value(column: sql.Column, source: str) -> str:
    return f"{source}.{column.name}::jsonb" if column.type == "jsonb" else f"{source}.{column.name}"


def _recordset(alias: str, columns: Sequence[sql.Column], *, extra: str = "") -> str:
    types = ", ".join(f"{c.name} {_record_type(c)}" for c in columns)
    return f"jsonb_to_recordset(%({alias})s::jsonb) AS {alias}({extra}{types})"


def _documents(
    table: sql.Table[Any], columns: Sequence[sql.Column]
) -> Callable[[Any], dict[str, Any]]:
    """An object as a JSON document of `columns` (one record of a recordset)."""
    values = table.writer(columns, wire=_JSON_WIRE)
    names = [c.name for c in columns]
    return lambda obj: dict(zip(names, values(obj), strict=True))


_JOB_DOCUMENT = _documents(JOBS, JOBS.columns)
_CHANGE_DOCUMENT = _documents(JOBS, JOBS.changing)
_ATTEMPT_DOCUMENT = _documents(ATTEMPTS, ATTEMPTS.columns)

_INSERT_JOBS = f"""
WITH r AS (SELECT * FROM {_recordset("r", JOBS.columns)}),
inserted AS (
    INSERT INTO taskyard.jobs ({", ".join(JOBS.names)})
    SELECT {", ".join(record_value(c, "r") for c in JOBS.columns)} FROM r
    RETURNING 1
), edges AS (
    INSERT INTO taskyard.dependencies (job_id, depends_on)
    SELECT r.id, d.dep FROM r CROSS JOIN LATERAL unnest(r.depends_on) AS d(dep)
)
SELECT count(*) FROM inserted
"""

_GUARD = "id uuid, before_state text, before_attempt integer, "
_WRITE_BATCH = f"""
WITH w AS (
    SELECT * FROM {_recordset("w", JOBS.changing, extra=_GUARD)}
), changed AS (
    UPDATE taskyard.jobs AS j
    SET {", ".join(f"{c.name} = {record_value(c, 'w')}" for c in JOBS.changing)}
    FROM w
    WHERE j.id = w.id AND j.state = w.before_state AND j.attempt = w.before_attempt
    RETURNING j.id
), a AS (SELECT * FROM {_recordset("a", ATTEMPTS.columns)}
), recorded AS (
    INSERT INTO taskyard.attempts AS t ({", ".join(ATTEMPTS.names)})
    SELECT {", ".join(record_value(c, "a") for c in ATTEMPTS.columns)} FROM a
    ON CONFLICT (job_id, attempt) DO UPDATE
    SET {", ".join(f"{c.name} = excluded.{c.name}" for c in ATTEMPTS.changing)}
    WHERE t.outcome = %(open)s
    RETURNING 1
)
SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM recorded)
"""

# --- COPY ---------------------------------------------------------------------------------


class _EncodedJsonbDumper(Dumper):
    """A jsonb value already in PostgreSQL's binary form (the version byte 1, then the JSON
    text), so a `COPY` encodes each JSON value once."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        assert isinstance(obj, bytes) and obj[:1] == b"\x01", "encoded jsonb"
        return obj


_EMPTY = b"\x01{}"


def _encoded(text: str) -> bytes:
    return _EMPTY if text == "{}" else b"\x01" + text.encode()


_COPY_VALUES = JOBS.writer(JOBS.columns, wire={"jsonb": _encoded})
_COPY_JOBS = f"COPY taskyard.jobs ({', '.join(JOBS.names)}) FROM STDIN (FORMAT BINARY)"


def copy_jobs(conn: Conn, jobs: Sequence[Job]) -> None:
    """New jobs by one binary `COPY` (and their dependency edges by one insert)."""
    cur = conn.cursor(binary=True)
    cur.adapters.register_dumper(None, _EncodedJsonbDumper)
    with cur.copy(_COPY_JOBS) as copy:
        copy.set_types([c.type for c in JOBS.columns])
        for job in jobs:
            copy.write_row(_COPY_VALUES(job))
    edges = [(job.id, dep) for job in jobs for dep in job.depends_on]
    if edges:
        conn.execute(
            "INSERT INTO taskyard.dependencies (job_id, depends_on)"
            " SELECT * FROM unnest(%s::uuid[], %s::uuid[])",
            ([e[0] for e in edges], [e[1] for e in edges]),
        )


# --- the engine's row access --------------------------------------------------------------


def filter_sql(job_filter: JobFilter, params: dict[str, Any]) -> str:
    """`AND ...` conditions for a filter; their parameters go into `params`. The states are
    literals (the domain's, `sql.literals`), so a plan can use a partial index on a state
    (`jobs_dead_created` for a list of dead jobs)."""
    where = ""
    for column, values in sql.filter_terms(job_filter):
        if column == "state":
            where += f" AND state IN ({sql.literals(*job_filter.states)})"
            continue
        where += f" AND {column} = ANY(%(f_{column})s::text[])"
        params[f"f_{column}"] = values
    return where


_SCHEDULE_SELECT = sql.SCHEDULE_COLUMNS.replace("spec,", "spec::text,").replace(
    "recent, counts", "recent::text, counts::text"
)
_BUCKET = "least(floor(extract(epoch FROM finished_at - %(since)s) / %(bucket_s)s)::int, %(last)s)"
"""The index of a row's slice of time since `since` (the last slice takes any later)."""


class PostgresRows:
    """`Rows` over one connection. `locking`: a write transaction (loads lock their rows)."""

    def __init__(self, conn: Conn, *, locking: bool) -> None:
        self._conn = conn
        self._lock = " FOR UPDATE" if locking else ""
        self._skip = " FOR UPDATE SKIP LOCKED" if locking else ""
        self._now: datetime | None = None

    def _cursor(self) -> psycopg.Cursor[TupleRow]:
        return self._conn.cursor(row_factory=tuple_row)

    def _all(self, sql: str, params: Any = None) -> list[TupleRow]:
        return self._cursor().execute(sql, params).fetchall()

    def _one(self, sql: str, params: Any = None) -> Any:
        row = self._cursor().execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    def _jobs(self, where: str, params: Any = None) -> list[Job]:
        return [
            JOBS.read(r)
            for r in self._all(f"SELECT {J} FROM taskyard.jobs AS j WHERE {where}", params)
        ]

    def now(self) -> datetime:
        if self._now is None:
            self._now = utc(self._one("SELECT now()"))
        return self._now

    # --- loading by key -------------------------------------------------------------------

    def jobs(self, ids: Collection[UUID]) -> list[Job]:
        return self._jobs(f"id = ANY(%s) ORDER BY id{self._lock}", (sorted(set(ids)),))

    def attempt_records(self, keys: Collection[tuple[UUID, int]]) -> list[Attempt]:
        rows = self._all(
            f"""SELECT {ATTEMPTS.select("a.")}
                FROM unnest(%s::uuid[], %s::integer[]) AS k(job_id, attempt)
                JOIN taskyard.attempts AS a USING (job_id, attempt)""",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return [ATTEMPTS.read(row) for row in rows]

    def keyed(self, keys: Collection[str]) -> list[Job]:
        return self._jobs("idempotency_key = ANY(%s)", (list(keys),))

    def states(self, ids: Collection[UUID]) -> dict[UUID, JobState]:
        rows = self._all("SELECT id, state FROM taskyard.jobs WHERE id = ANY(%s)", (list(ids),))
        return {job_id: _STATES[state] for job_id, state in rows}

    # --- candidates -----------------------------------------------------------------------

    def claimable(
        self,
        request: ClaimRequest,
        *,
        state: JobState,
        now: datetime,
        other_than: Collection[str] = (),
    ) -> list[Job]:
        """The engine's claim on these rows (the store itself claims with `hotpaths.claim`,
        which the differential test holds to this)."""
        return self._jobs(
            f"""state = {sql.literals(state)} AND run_at <= %(now)s
                AND queue NOT IN (SELECT queue FROM taskyard.paused_queues)
                AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
                AND (%(tasks)s::text[] IS NULL OR task = ANY(%(tasks)s::text[]))
                AND NOT queue = ANY(%(other)s::text[])
                ORDER BY priority DESC, run_at, id LIMIT %(limit)s{self._skip}""",
            {
                "now": now,
                "queues": None if request.queues is None else sorted(request.queues),
                "tasks": None if request.tasks is None else sorted(request.tasks),
                "other": sorted(other_than),
                "limit": request.limit,
            },
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
        """Ranked within each key by a window over the queue's due jobs; the rows picked
        are then locked (the queue's settings row, locked first, serialises its claims)."""
        keys = sorted(room.keys)
        return self._jobs(
            f"""state = {sql.literals(state)} AND run_at <= %(now)s AND id IN (
                SELECT c.id FROM (
                    SELECT one.id, one.concurrency_key, row_number() OVER (
                        PARTITION BY coalesce(one.concurrency_key, '')
                        ORDER BY one.priority DESC, one.run_at, one.id) AS turn
                    FROM taskyard.jobs AS one
                    WHERE one.state = {sql.literals(state)} AND one.queue = %(queue)s
                      AND one.run_at <= %(now)s
                      AND one.queue NOT IN (SELECT queue FROM taskyard.paused_queues)
                      AND (%(tasks)s::text[] IS NULL OR one.task = ANY(%(tasks)s::text[]))
                ) AS c
                LEFT JOIN unnest(%(keys)s::text[], %(rooms)s::integer[]) AS r(key, room)
                    ON r.key = c.concurrency_key
                WHERE c.concurrency_key IS NULL
                   OR c.turn <= coalesce(r.room, %(per_key)s::integer, c.turn)
                ORDER BY c.turn,
                    (%(after)s::text IS NOT NULL
                     AND coalesce(c.concurrency_key, '') COLLATE "C" <= %(after)s::text),
                    coalesce(c.concurrency_key, '') COLLATE "C"
                LIMIT %(limit)s)
                ORDER BY id{self._skip}""",
            {
                "queue": queue,
                "now": now,
                "tasks": None if request.tasks is None else sorted(request.tasks),
                "keys": keys,
                "rooms": [room.keys[key] for key in keys],
                "per_key": room.per_key,
                "after": after,
                "limit": limit,
            },
        )

    def promotable(self, rule: Promotable, *, now: datetime, limit: int) -> list[Job]:
        return self._jobs(
            f"""state IN ({sql.literals(*rule.states)}) AND run_at <= %s
                AND (state <> {sql.literals(rule.gated)} OR NOT EXISTS (
                    SELECT 1 FROM taskyard.dependencies AS d
                    JOIN taskyard.jobs AS p ON p.id = d.depends_on
                    WHERE d.job_id = j.id AND p.state <> {sql.literals(rule.gate_open)}))
                ORDER BY run_at, id LIMIT %s{self._skip}""",
            (now, limit),
        )

    def expired(self, *, state: JobState, now: datetime, limit: int) -> list[Job]:
        return self._jobs(
            f"state = {sql.literals(state)} AND lease_expires_at < %s"
            f" ORDER BY id LIMIT %s{self._skip}",
            (now, limit),
        )

    def blocked(self, *, state: JobState, failed: Collection[JobState], limit: int) -> list[Job]:
        return self._jobs(
            f"""state = {sql.literals(state)} AND cardinality(depends_on) > 0 AND EXISTS (
                    SELECT 1 FROM taskyard.dependencies AS d
                    JOIN taskyard.jobs AS p ON p.id = d.depends_on
                    WHERE d.job_id = j.id AND p.state IN ({sql.literals(*failed)}))
                ORDER BY id LIMIT %s{self._skip}""",
            (limit,),
        )

    def matching(self, job_filter: JobFilter, *, states: Collection[JobState]) -> list[Job]:
        params: dict[str, Any] = {}
        where = filter_sql(job_filter, params)
        return self._jobs(
            f"state IN ({sql.literals(*states)}){where} ORDER BY id{self._lock}", params
        )

    def prunable(self, rule: Prunable, *, limit: int) -> list[Job]:
        """Walks jobs_finished oldest first; a row a person is retrying (or an enqueue is
        naming as a dependency: its key-share lock) is skipped, never waited for."""
        return self._jobs(
            f"""state = {sql.literals(rule.state)} AND finished_at <= %(by)s
                AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
                AND NOT (queue = ANY(%(other)s::text[]))
                AND NOT EXISTS (
                    SELECT 1 FROM taskyard.dependencies AS d WHERE d.depends_on = j.id)
                ORDER BY finished_at, id LIMIT %(limit)s{self._skip}""",
            {
                "by": rule.finished_by,
                "queues": None if rule.queues is None else sorted(rule.queues),
                "other": sorted(rule.other_than),
                "limit": limit,
            },
        )

    # --- writing --------------------------------------------------------------------------

    def delete(self, jobs: Sequence[Job]) -> None:
        """By primary key; the job's own dependency rows go with it (ON DELETE CASCADE)."""
        ids = [job.id for job in jobs]
        self._conn.execute("DELETE FROM taskyard.attempts WHERE job_id = ANY(%s)", (ids,))
        deleted = self._conn.execute("DELETE FROM taskyard.jobs WHERE id = ANY(%s)", (ids,))
        assert deleted.rowcount == len(ids), "the rows are held by this transaction"

    def set_retention(self, queue: str, periods: Periods) -> None:
        self._conn.execute("DELETE FROM taskyard.queue_retention WHERE queue = %s", (queue,))
        self._cursor().executemany(
            "INSERT INTO taskyard.queue_retention (queue, state, retention_s) VALUES (%s, %s, %s)",
            [(queue, state.value, seconds) for state, seconds in sorted(periods.items())],
        )

    def write(self, changes: Changes) -> None:
        if len(changes.created) >= COPY_MIN_JOBS:
            copy_jobs(self._conn, changes.created)
        elif changes.created:
            documents = Jsonb([_JOB_DOCUMENT(job) for job in changes.created])
            inserted = self._one(_INSERT_JOBS, {"r": documents})
            assert inserted == len(changes.created), "every new job is inserted"
        if not (changes.updated or changes.attempts):
            return
        jobs = [
            {
                "id": str(w.before.id),
                "before_state": w.before.state.value,
                "before_attempt": w.before.attempt,
                **_CHANGE_DOCUMENT(w.after),
            }
            for w in changes.updated
        ]
        params = {
            "w": Jsonb(jobs),
            "a": Jsonb([_ATTEMPT_DOCUMENT(a) for a in changes.attempts]),
            "open": plans.OPEN.value,
        }
        row = self._cursor().execute(_WRITE_BATCH, params).fetchone()
        # The rows are locked by this transaction: every guarded write must land.
        assert row == (len(changes.updated), len(changes.attempts)), row

    def set_paused(self, queue: str, *, paused: bool) -> None:
        if paused:
            self._conn.execute(
                "INSERT INTO taskyard.paused_queues (queue) VALUES (%s) ON CONFLICT DO NOTHING",
                (queue,),
            )
        else:
            self._conn.execute("DELETE FROM taskyard.paused_queues WHERE queue = %s", (queue,))

    def put_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        if not limits.governed:
            self._conn.execute("DELETE FROM taskyard.queue_settings WHERE queue = %s", (queue,))
            self._conn.execute("DELETE FROM taskyard.queue_starts WHERE queue = %s", (queue,))
            return
        columns = sql.SETTINGS_COLUMNS
        self._conn.execute(
            f"""INSERT INTO taskyard.queue_settings (queue, {columns})
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (queue) DO UPDATE SET ({columns})
                    = ({", ".join(f"EXCLUDED.{c}" for c in columns.split(", "))})""",
            (queue, *sql.settings_row(limits)),
        )

    def set_turns(self, turns: Mapping[str, str]) -> None:
        ordered = sorted(turns.items())
        self._conn.execute(
            """UPDATE taskyard.queue_settings AS s SET turn_after = t.key
               FROM unnest(%s::text[], %s::text[]) AS t(queue, key) WHERE s.queue = t.queue""",
            ([q for q, _ in ordered], [k for _, k in ordered]),
        )

    def record_starts(self, queue: str, starts: Sequence[Start], *, keep_after: datetime) -> None:
        self._conn.execute(
            "DELETE FROM taskyard.queue_starts WHERE queue = %s AND started_at <= %s",
            (queue, keep_after),
        )
        self._conn.execute(
            """INSERT INTO taskyard.queue_starts (queue, concurrency_key, started_at)
               SELECT %s, * FROM unnest(%s::text[], %s::timestamptz[])""",
            (queue, [s.key for s in starts], [s.at for s in starts]),
        )

    def put_tasks(self, tasks: Sequence[TaskInfo]) -> None:
        self._cursor().executemany(
            f"""INSERT INTO taskyard.tasks ({sql.TASK_COLUMNS})
                VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s::jsonb, %s, %s)
                ON CONFLICT (name) DO UPDATE SET
                    (queue, priority, max_attempts, backoff, timeout_s, params, published_by,
                     published_at)
                  = (EXCLUDED.queue, EXCLUDED.priority, EXCLUDED.max_attempts,
                     EXCLUDED.backoff, EXCLUDED.timeout_s, EXCLUDED.params,
                     EXCLUDED.published_by, EXCLUDED.published_at)""",
            [sql.task_row(task, task.published_at) for task in tasks],
        )

    def put_schedules(self, schedules: Sequence[Schedule]) -> None:
        self._cursor().executemany(
            f"""INSERT INTO taskyard.schedules ({sql.SCHEDULE_COLUMNS})
                VALUES (%s, %s::jsonb, %s, %s, %s, %s::uuid, %s::jsonb, %s::jsonb, %s, %s)
                ON CONFLICT (name) DO UPDATE SET
                    (spec, paused, next_fire_at, last_fire_at, last_job_id, recent, counts,
                     created_at, updated_at)
                  = (EXCLUDED.spec, EXCLUDED.paused, EXCLUDED.next_fire_at,
                     EXCLUDED.last_fire_at, EXCLUDED.last_job_id, EXCLUDED.recent,
                     EXCLUDED.counts, EXCLUDED.created_at, EXCLUDED.updated_at)""",
            [sql.schedule_row(schedule, lambda moment: moment) for schedule in schedules],
        )

    def delete_schedule(self, name: str) -> bool:
        cursor = self._cursor().execute("DELETE FROM taskyard.schedules WHERE name = %s", (name,))
        return cursor.rowcount > 0

    def due_schedules(self, *, now: datetime, limit: int) -> list[Schedule]:
        rows = self._all(
            f"""SELECT {_SCHEDULE_SELECT} FROM taskyard.schedules
                WHERE NOT paused AND next_fire_at <= %s
                ORDER BY next_fire_at, name LIMIT %s{self._skip}""",
            (now, limit),
        )
        return [sql.schedule_from_row(row, utc) for row in rows]

    def schedule_rows(self, names: Collection[str] | None = None) -> list[Schedule]:
        if names is None:
            rows = self._all(f"SELECT {_SCHEDULE_SELECT} FROM taskyard.schedules")
        else:
            rows = self._all(
                f"""SELECT {_SCHEDULE_SELECT} FROM taskyard.schedules
                    WHERE name = ANY(%s::text[]) ORDER BY name{self._lock}""",
                (sorted(set(names)),),
            )
        return [sql.schedule_from_row(row, utc) for row in rows]

    # --- reading --------------------------------------------------------------------------

    def page(self, query: JobQuery) -> list[Job]:
        params: dict[str, Any] = {"limit": query.limit + 1}
        where = filter_sql(query.filter, params)
        if query.cursor is not None:
            where += " AND (created_at, id) < (%(c_at)s, %(c_id)s)"
            params["c_at"], params["c_id"] = query.cursor
        return self._jobs(f"true{where} ORDER BY created_at DESC, id DESC LIMIT %(limit)s", params)

    def job_attempts(self, job_id: UUID) -> list[Attempt] | None:
        rows = self._all(
            f"""SELECT {ATTEMPTS.select("a.")} FROM taskyard.jobs AS j
                LEFT JOIN taskyard.attempts AS a ON a.job_id = j.id
                WHERE j.id = %s ORDER BY a.attempt""",
            (job_id,),
        )
        if not rows:
            return None
        return [ATTEMPTS.read(row) for row in rows if row[0] is not None]

    def earliest_run_at(self, *, states: Collection[JobState], after: datetime) -> datetime | None:
        found = self._one(
            f"SELECT min(run_at) FROM taskyard.jobs"
            f" WHERE state IN ({sql.literals(*states)}) AND run_at > %s",
            (after,),
        )
        return None if found is None else utc(found)

    def earliest_expiry(self, *, state: JobState, after: datetime) -> datetime | None:
        found = self._one(
            f"SELECT min(lease_expires_at) FROM taskyard.jobs WHERE state = {sql.literals(state)}"
            " AND lease_expires_at > %s",
            (after,),
        )
        return None if found is None else utc(found)

    def earliest_fire_at(self, *, after: datetime) -> datetime | None:
        found = self._one(
            "SELECT min(next_fire_at) FROM taskyard.schedules"
            " WHERE NOT paused AND next_fire_at > %s",  # the index schedules_due
            (after,),
        )
        return None if found is None else utc(found)

    def job_counts(self) -> list[JobCount]:
        rows = self._all(
            """SELECT queue, task, state, error_type, sum(n) FROM taskyard.job_counts
               GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0"""
        )
        return [
            JobCount(
                queue=queue, task=task, state=_STATES[state], error_type=error or None, count=int(n)
            )
            for queue, task, state, error, n in rows
        ]

    def earliest_run_at_by_queue(self, *, state: JobState) -> dict[str, datetime]:
        # One probe of jobs_queued_age per queue the counters say has such jobs.
        rows = self._all(
            f"""SELECT q.queue, (SELECT min(j.run_at) FROM taskyard.jobs AS j
                                 WHERE j.queue = q.queue AND j.state = {sql.literals(state)})
                FROM (SELECT queue FROM taskyard.job_counts
                      WHERE state = {sql.literals(state)}
                      GROUP BY queue HAVING sum(n) > 0) AS q"""
        )
        return {queue: utc(run_at) for queue, run_at in rows if run_at is not None}

    def error_ids(
        self, *, state: JobState, task: str, error_type: str | None, limit: int
    ) -> list[UUID]:
        # As the counters do, an empty type is no error.
        typed = "IS NULL" if error_type is None else "= %(type)s"
        rows = self._all(
            f"""SELECT id FROM taskyard.jobs
                WHERE state = {sql.literals(state)} AND task = %(task)s
                  AND (last_error->>'type') {typed}
                ORDER BY created_at DESC, id DESC LIMIT %(limit)s""",
            {"task": task, "type": error_type, "limit": limit},
        )
        return [job_id for (job_id,) in rows]

    def dependents(self, job_id: UUID, *, limit: int) -> list[Job]:
        return self._jobs(
            """id IN (SELECT d.job_id FROM taskyard.dependencies AS d WHERE d.depends_on = %s)
               ORDER BY created_at, id LIMIT %s""",
            (job_id, limit),
        )

    def paused(self) -> set[str]:
        return {queue for (queue,) in self._all("SELECT queue FROM taskyard.paused_queues")}

    def queue_settings(self, queues: Collection[str] | None = None) -> dict[str, QueueSettings]:
        rows = self._all(
            f"""SELECT queue, {sql.SETTINGS_COLUMNS}, turn_after FROM taskyard.queue_settings
                WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[])
                ORDER BY queue COLLATE "C"{self._lock}""",
            {"queues": None if queues is None else sorted(queues)},
        )
        return {
            row[0]: QueueSettings(limits=sql.limits_of_row(row[1:-1]), turn_after=row[-1])
            for row in rows
        }

    def running(
        self, queues: Collection[str] | None, *, state: JobState, now: datetime
    ) -> list[Running]:
        rows = self._all(
            f"""SELECT queue, concurrency_key, count(*) FROM taskyard.jobs
                WHERE state = {sql.literals(state)} AND lease_expires_at >= %(now)s
                  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
                GROUP BY queue, concurrency_key""",
            {"now": now, "queues": None if queues is None else sorted(queues)},
        )
        return [Running(queue=queue, key=key, count=n) for queue, key, n in rows]

    def starts(self, queue: str, *, after: datetime, key: str | None = None) -> list[Start]:
        keyed = "" if key is None else " AND concurrency_key = %(key)s"
        rows = self._all(
            "SELECT concurrency_key, started_at FROM taskyard.queue_starts"
            f" WHERE queue = %(queue)s AND started_at > %(after)s{keyed}",
            {"queue": queue, "after": after, "key": key},
        )
        return [Start(key=key, at=utc(at)) for key, at in rows]

    def retention_overrides(self) -> dict[str, dict[JobState, int]]:
        rows = self._all("SELECT queue, state, retention_s FROM taskyard.queue_retention")
        return sql.retention_by_queue(rows)

    def task_entries(self) -> list[TaskInfo]:
        rows = self._all(f"SELECT {sql.TASK_COLUMNS} FROM taskyard.tasks")
        return [sql.task_from_row(row, utc(row[-1])) for row in rows]

    def finished_counts(self, *, since: datetime) -> dict[JobState, int]:
        rows = self._all(
            "SELECT state, count(*) FROM taskyard.jobs WHERE finished_at >= %s GROUP BY state",
            (since,),
        )
        return {_STATES[state]: int(count) for state, count in rows}

    def outcome_counts(self, *, since: datetime) -> list[OutcomeCount]:
        rows = self._all(
            """SELECT outcome, error->>'type', count(*) FROM taskyard.attempts
               WHERE finished_at >= %s GROUP BY 1, 2""",
            (since,),
        )
        return [OutcomeCount(outcome=Outcome(o), error_type=e, count=int(n)) for o, e, n in rows]

    def finished_by_bucket(
        self, *, since: datetime, bucket_s: float, buckets: int
    ) -> list[tuple[int, JobState, int]]:
        rows = self._all(
            f"""SELECT {_BUCKET}, state, count(*) FROM taskyard.jobs
                WHERE finished_at >= %(since)s GROUP BY 1, 2""",
            {"since": since, "bucket_s": bucket_s, "last": buckets - 1},
        )
        return [(int(index), _STATES[state], int(n)) for index, state, n in rows]

    def outcomes_by_bucket(
        self, *, since: datetime, bucket_s: float, buckets: int
    ) -> list[tuple[int, OutcomeCount]]:
        rows = self._all(
            f"""SELECT {_BUCKET}, outcome, error->>'type', count(*) FROM taskyard.attempts
                WHERE finished_at >= %(since)s GROUP BY 1, 2, 3""",
            {"since": since, "bucket_s": bucket_s, "last": buckets - 1},
        )
        return [
            (int(index), OutcomeCount(outcome=Outcome(o), error_type=e, count=int(n)))
            for index, o, e, n in rows
        ]

    def run_seconds_at(
        self, *, since: datetime, outcome: Outcome, ranks: Sequence[int]
    ) -> list[float]:
        rows = self._all(
            """SELECT rank, d FROM (
                   SELECT extract(epoch FROM finished_at - started_at)::float8 AS d,
                          row_number() OVER (ORDER BY finished_at - started_at) - 1 AS rank
                   FROM taskyard.attempts WHERE finished_at >= %s AND outcome = %s) AS r
               WHERE rank = ANY(%s)""",
            (since, outcome.value, list(ranks)),
        )
        found = {int(rank): float(d) for rank, d in rows}
        return [found[rank] for rank in ranks]

    def run_times(self, *, bounds: Sequence[float]) -> list[RunTimes]:
        rows = self._all(
            """SELECT outcome, bound, sum(n), sum(sum_s) FROM taskyard.attempt_counts
               GROUP BY 1, 2"""
        )
        return sql.run_times(rows, bounds)
