"""PostgreSQL's hot paths: the few operations done by one set-based statement instead of
the engine's load, decide and write.

* `claim`: `taskyard.claim_flow` (migration 0010; `taskyard.claim` of 0003 where no
  governed queue is reached), instead of `plans.claim`;
* `heartbeat`: `taskyard.heartbeat` (0002), instead of `plans.heartbeat`;
* `report_succeeded`: `taskyard.report_succeeded` (0003), for the first success of each
  job in a batch, instead of `plans.report` (every other report still goes there);
* `insert_plain`: one `INSERT ... SELECT` that reads `now()` itself, for fewer than
  `COPY_MIN_JOBS` jobs with no idempotency key and no dependency, instead of
  `plans.enqueue` (a larger batch of them goes to `plans.enqueue`, which writes it with
  one `COPY`).

Each restates one rule of the domain in SQL. The states and outcomes a statement writes
come in as parameters, named by `taskyard.domain.store.plans`; the state a statement selects
rows by is a literal where a partial index is declared on it (a cached plan can use the
index only for a literal; migration 0003 says what a parameter there cost), and
`test_hot_paths.py` holds those literals to the domain. Each hot path has a differential
test there that runs generated histories through it and through the pure rule at the same
`now()` and finds the same jobs, attempt records and answers. Each is one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import TupleRow, tuple_row

from taskyard.adapters.postgres.rows import COPY_MIN_JOBS, JOBS, Conn, J, record_value, utc
from taskyard.adapters.sqlshared import json_text, normalized
from taskyard.domain import transitions as t
from taskyard.domain.model import Enqueued, Job, JobState, LeaseRef, NewJob, Outcome
from taskyard.domain.ports import ClaimRequest, LeaseStatus
from taskyard.domain.store import plans
from taskyard.domain.timefmt import EPOCH


def _binary(conn: Conn) -> psycopg.Cursor[TupleRow]:
    """Values travel in binary both ways, which psycopg dumps and loads in C."""
    return conn.cursor(row_factory=tuple_row, binary=True)


# --- claim --------------------------------------------------------------------------------

_CLAIM = f"""
SELECT {J} FROM taskyard.claim_flow(%(worker)s, %(limit)s, %(ttl_s)s, %(queues)s::text[],
    %(tasks)s::text[], %(leased)s, %(open)s) AS j
"""
_CLAIM_STATES = {"leased": plans.LEASED.value, "open": plans.OPEN.value}


def claim(conn: Conn, request: ClaimRequest) -> list[Job]:
    """`plans.claim` in one statement: pick up to `limit` due jobs in claim order, skipping
    rows another claimer holds, make them leased with a new attempt, open their records.
    `taskyard.claim_flow` (migration 0010) hands a claim that reaches no governed queue to
    `taskyard.claim` as it was, and any other to `taskyard.claim_governed`, which follows
    `flow.admit` with the settings rows of the governed queues locked (in name order)."""
    params = {
        **_CLAIM_STATES,
        "worker": request.worker,
        "limit": request.limit,
        "ttl_s": request.lease_ttl_s,
        "queues": None if request.queues is None else sorted(request.queues),
        "tasks": None if request.tasks is None else sorted(request.tasks),
    }
    return [JOBS.read(row) for row in _binary(conn).execute(_CLAIM, params).fetchall()]


# --- heartbeat ----------------------------------------------------------------------------

_HEARTBEAT = """
SELECT id, attempt, lease_worker, lease_expires_at, cancel_requested
FROM taskyard.heartbeat(%(ids)s::uuid[], %(attempts)s::integer[], %(workers)s::text[],
    %(ttl_s)s)
"""


def heartbeat(conn: Conn, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
    """`plans.heartbeat` in one statement: every live lease of `refs` extended at once."""
    ordered = sorted(set(refs), key=lambda r: (r.job_id, r.attempt, r.worker))
    params = {
        "ttl_s": lease_ttl_s,
        "ids": [r.job_id for r in ordered],
        "attempts": [r.attempt for r in ordered],
        "workers": [r.worker for r in ordered],
    }
    held = {
        LeaseRef(job_id=job_id, attempt=attempt, worker=worker): (utc(expires), cancel)
        for job_id, attempt, worker, expires, cancel in _binary(conn).execute(_HEARTBEAT, params)
    }
    out: list[LeaseStatus] = []
    for ref in refs:
        if ref in held:
            expires_at, cancel_requested = held[ref]
            out.append(
                LeaseStatus(
                    ref=ref, held=True, expires_at=expires_at, cancel_requested=cancel_requested
                )
            )
        else:
            out.append(LeaseStatus(ref=ref, held=False))
    return out


# --- the success report -------------------------------------------------------------------

_REPORT_SUCCEEDED = """
SELECT job_id FROM taskyard.report_succeeded(%(ids)s::uuid[], %(attempts)s::integer[],
    %(workers)s::text[], %(results)s::text[], %(succeeded)s, %(open)s, %(closed)s) AS r(job_id)
"""


def report_succeeded(conn: Conn, reports: Sequence[t.Report]) -> set[UUID]:
    """Commit the successes among `reports` that still hold a live lease and were not asked
    to cancel, as `transitions.apply_report` would; the ids it committed. `reports` must be
    `plans.first_successes` of a batch (one per job)."""
    params = {
        "ids": [r.ref.job_id for r in reports],
        "attempts": [r.ref.attempt for r in reports],
        "workers": [r.ref.worker for r in reports],
        "results": [json_text(r.result) for r in reports],
        "succeeded": JobState.SUCCEEDED.value,
        "open": plans.OPEN.value,
        "closed": Outcome.SUCCEEDED.value,
    }
    return {job_id for (job_id,) in _binary(conn).execute(_REPORT_SUCCEEDED, params)}


# --- the plain insert ---------------------------------------------------------------------

_COMPUTED = ("run_at", "state", "created_at", "updated_at")
"""What `transitions.create` takes from the store's clock: the statement computes these at
its own `now()`. Everything else of a new job is sent as `create` makes it."""
_SENT = [c for c in JOBS.columns if c.name not in _COMPUTED and c.name != "depends_on"]
_SENT_VALUES = JOBS.writer(_SENT)
_US = timedelta(microseconds=1)


def _insert_plain(one: bool) -> str:
    """The statement for one job (its values as scalars: far cheaper to send than a dozen
    one-element arrays) or for several (one array per column)."""
    types = ["text" if c.type == "jsonb" else c.type for c in _SENT]
    names = [c.name for c in _SENT]
    if one:
        given = ", ".join(f"%s::{ty} AS {n}" for ty, n in zip(types, names, strict=True))
        rows = f"SELECT {given}, %s::timestamptz AS run_at, %s::bigint AS delay_us"
    else:
        arrays = ", ".join(f"%s::{ty}[]" for ty in types)
        rows = (
            f"SELECT * FROM unnest({arrays}, %s::timestamptz[], %s::bigint[])"
            f" AS r({', '.join(names)}, run_at, delay_us)"
        )
    return f"""
WITH r AS ({rows}), ins AS (
    INSERT INTO taskyard.jobs ({", ".join(names)}, {", ".join(_COMPUTED)})
    SELECT {", ".join(record_value(c, "r") for c in _SENT)}, w.run_at,
        CASE WHEN w.run_at <= now() THEN %s ELSE %s END, now(), now()
    FROM r CROSS JOIN LATERAL (
        SELECT coalesce(r.run_at, now() + r.delay_us * interval '1 microsecond') AS run_at
    ) AS w
    RETURNING state
)
SELECT now(), count(*) FILTER (WHERE state = %s), count(*) FROM ins
"""


_INSERT_PLAIN_ONE = _insert_plain(one=True)
_INSERT_PLAIN = _insert_plain(one=False)


def plain(jobs: Sequence[NewJob]) -> bool:
    """No idempotency key and no dependency: nothing to look up before writing."""
    return all(new.idempotency_key is None and not new.depends_on for new in jobs)


def insert_plain(conn: Conn, jobs: Sequence[NewJob]) -> list[Enqueued]:
    """`plans.enqueue` of plain jobs in one statement that reads the time itself: `run_at`
    is the one given or `now()` plus the delay (in whole microseconds, as `timedelta` rounds
    it), the state `create`'s rule at that `now()`. It answers the time and how many it
    queued; the jobs are then made by `create` at that time, and the counts must agree."""
    assert plain(jobs) and 0 < len(jobs) < COPY_MIN_JOBS, len(jobs)
    made = [(new, normalized(dict(new.args))) for new in jobs]
    sent = [_SENT_VALUES(t.create(new, now=EPOCH, dependency_states={}, args=a)) for new, a in made]
    run_ats = [new.run_at for new in jobs]
    delays = [None if new.run_at else timedelta(seconds=new.delay_s or 0.0) // _US for new in jobs]
    due, waiting = plans.CREATED_DUE.value, plans.CREATED_WAITING.value
    if len(jobs) == 1:
        statement, cursor = _INSERT_PLAIN_ONE, _binary(conn)
        params: Sequence[Any] = (*sent[0], run_ats[0], delays[0], due, waiting, due)
    else:
        statement, cursor = _INSERT_PLAIN, conn.cursor(row_factory=tuple_row)
        params = (*map(list, zip(*sent, strict=True)), run_ats, delays, due, waiting, due)
    row = cursor.execute(statement, params).fetchone()
    assert row is not None
    now = utc(row[0])
    created = [t.create(new, now=now, dependency_states={}, args=a) for new, a in made]
    queued = sum(1 for job in created if job.state is plans.CREATED_DUE)
    assert (queued, len(created)) == (row[1], row[2]), (row, queued, len(created))
    return [Enqueued(job=job, created=True) for job in created]
