"""The PostgreSQL store: production's durable truth, on psycopg 3 and a connection pool.

It is the domain's `StoreEngine` over `PostgresRows` (`rows.py`): every decision is the
engine's, made on rows loaded and locked in one transaction and written back with one
conditional batch write on `(id, state, attempt)`. Four hot paths are one set-based
statement each instead (`hotpaths.py`: claim, heartbeat, the success report and the plain
insert), and their answers are held to the engine's by differential tests. Every time
comparison uses the server's `now()` (the transaction's start): no worker clock ever
decides anything.

Session state: none on any path. The pool's connections are in autocommit mode and every
unit of work is an explicit transaction or one statement; there is no `LISTEN`, no `SET`,
no session-level advisory lock. Behind PgBouncer in transaction-pooling mode older than
1.21, turn off psycopg's server-side prepared statements with `prepare_threshold=None` (or
`?prepare_threshold=none` in the URL).

Errors: a lost connection, a server that refuses (shutdown, read-only, out of space,
statement timeout) or an unmigrated database surface as `StoreUnavailable`; a transaction
that fails before its commit leaves nothing behind, and one the server rolled back whole
(deadlock, serialization failure, a lost idempotency-key race) runs again. A failure
*during* the commit is ambiguous (`AmbiguousCommit`): `enqueue` resolves it by re-reading
the job ids it wrote; other calls raise it and their repeat resolves it (a repeated report
answers `ALREADY_APPLIED`, a repeated enqueue with an idempotency key returns the job).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from taskyard.adapters.postgres import hotpaths
from taskyard.adapters.postgres.callers import with_server_cursors
from taskyard.adapters.postgres.rows import COPY_MIN_JOBS, JOBS, Conn, J, PostgresRows
from taskyard.adapters.sqlshared import RETRY_BUDGET_DEFAULT, normalized
from taskyard.domain.errors import StoreUnavailable, UnknownDependency
from taskyard.domain.model import Enqueued, Job, JobState, LeaseRef, NewJob
from taskyard.domain.ports import ClaimRequest, LeaseStatus, ReportResult, ReportStatus
from taskyard.domain.store import Rows, StoreEngine, plans
from taskyard.domain.transitions import Report

T = TypeVar("T")

POOL_MIN_SIZE_DEFAULT = 1
POOL_MAX_SIZE_DEFAULT = 10
POOL_TIMEOUT_S_DEFAULT = 10.0
CONNECT_TIMEOUT_S_DEFAULT = 5
PREPARE_THRESHOLD_DEFAULT: int | None = 5

_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialization failure and deadlock: the server rolled the transaction back whole."""

__all__ = ["COPY_MIN_JOBS", "AmbiguousCommit", "PoolSettings", "PostgresJobStore", "split_url"]


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


# --- the store ---------------------------------------------------------------------------


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


def _missing_dependency(exc: psycopg.errors.ForeignKeyViolation, jobs: Sequence[NewJob]) -> UUID:
    """The dependency the server named (`Key (depends_on)=(...) is not present`)."""
    named = {str(dep): dep for new in jobs for dep in new.depends_on}
    detail = exc.diag.message_detail or ""
    found = [dep for text, dep in named.items() if text in detail]
    assert found, detail
    return found[0]


UPKEEP_TABLES = ("jobs", "attempts")
"""The tables every claim, report and prune leaves dead rows in."""


class PostgresJobStore(StoreEngine):
    def __init__(
        self,
        conninfo: str,
        *,
        settings: PoolSettings | None = None,
        retry_budget: int = RETRY_BUDGET_DEFAULT,
    ) -> None:
        super().__init__(self, normal=normalized)
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
        return self._run(lambda conn: PostgresRows(conn, locking=False).now(), transaction=False)

    # --- upkeep (`Upkeep`) ----------------------------------------------------------------

    def table_rows(self) -> dict[str, tuple[int, int]]:
        def work(conn: Conn) -> dict[str, tuple[int, int]]:
            rows = conn.execute(
                "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables"
                " WHERE schemaname = 'taskyard' AND relname = ANY(%s)",
                (list(UPKEEP_TABLES),),
            )
            return {name: (int(live), int(dead)) for name, live, dead in rows}

        return self._run(work, transaction=False)

    def vacuum(self, table: str) -> None:
        """`VACUUM (SKIP_LOCKED)`: a table another vacuum (autovacuum) holds is skipped, not
        waited for; the lock it takes (SHARE UPDATE EXCLUSIVE) lets every read and write
        through."""
        assert table in UPKEEP_TABLES, table

        def work(conn: Conn) -> None:
            conn.execute(f"VACUUM (SKIP_LOCKED) taskyard.{table}")

        self._run(work, transaction=False)

    def writing(self, work: Callable[[Rows], T]) -> T:
        return self._run(lambda conn: work(PostgresRows(conn, locking=True)))

    def reading(self, work: Callable[[Rows], T]) -> T:
        return self._run(lambda conn: work(PostgresRows(conn, locking=False)), transaction=False)

    # --- hot paths ----------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        if not jobs:
            return []
        if hotpaths.plain(jobs) and len(jobs) < COPY_MIN_JOBS:
            try:
                return self._run(
                    lambda conn: hotpaths.insert_plain(conn, jobs),
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

        def work(rows: Rows) -> list[Enqueued]:
            answer[:] = plans.enqueue(rows, jobs, normal=normalized)
            return list(answer)

        try:
            return self.writing(work)
        except AmbiguousCommit:
            created = [e.job.id for e in answer if e.created]
            if answer and len(self._stored(created)) == len(set(created)):
                return answer
            raise
        except psycopg.errors.ForeignKeyViolation as exc:
            # A dependency read as stored was deleted by a prune before this insert took
            # its key lock: the same refusal as a dependency that was never there.
            raise UnknownDependency(_missing_dependency(exc, jobs)) from exc

    def _stored(self, ids: Sequence[UUID]) -> dict[UUID, Job]:
        """Re-read after an ambiguous commit: the jobs of `ids` that are there (none when
        the store cannot be reached)."""
        if not ids:
            return {}

        def work(conn: Conn) -> dict[UUID, Job]:
            rows = conn.execute(f"SELECT {J} FROM taskyard.jobs AS j WHERE id = ANY(%s)", (ids,))
            return {job.id: job for job in map(JOBS.read, rows)}

        try:
            return self._run(work, transaction=False)
        except StoreUnavailable:
            return {}

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
                with with_server_cursors(connection), connection.transaction():
                    if hotpaths.plain(jobs) and len(jobs) < COPY_MIN_JOBS:
                        return hotpaths.insert_plain(connection, jobs)
                    rows = PostgresRows(connection, locking=True)
                    return plans.enqueue(rows, jobs, normal=normalized)
            except psycopg.Error as exc:
                if _is_idempotency_race(exc) and trial < self._retry_budget:
                    trial += 1
                    continue
                if _is_unavailability(exc):
                    raise _unavailable(exc, committing=False) from exc
                raise

    def claim(self, request: ClaimRequest) -> list[Job]:
        return self._run(lambda conn: hotpaths.claim(conn, request), transaction=False)

    def heartbeat(self, refs: Sequence[LeaseRef], *, lease_ttl_s: float) -> list[LeaseStatus]:
        assert lease_ttl_s > 0, lease_ttl_s
        if not refs:
            return []
        return self._run(
            lambda conn: hotpaths.heartbeat(conn, refs, lease_ttl_s=lease_ttl_s), transaction=False
        )

    def report(self, reports: Sequence[Report]) -> list[ReportResult]:
        """The first success of each job in the batch (nearly every report) goes to
        `hotpaths.report_succeeded`, one autocommitted statement; everything else (failures,
        stale or repeated reports, cancellation requested, unknown jobs, a success that
        statement did not commit) is then judged by the engine, in the order given."""
        if not reports:
            return []
        results: list[ReportResult | None] = [None] * len(reports)
        fast = plans.first_successes(reports)
        if fast:
            firsts = [reports[i] for i in fast]
            applied = self._run(
                lambda conn: hotpaths.report_succeeded(conn, firsts),
                transaction=False,
                single_write=True,
            )
            for i in fast:
                if reports[i].ref.job_id in applied:
                    results[i] = ReportResult(
                        ref=reports[i].ref, status=ReportStatus.APPLIED, state=JobState.SUCCEEDED
                    )
        rest = [i for i, result in enumerate(results) if result is None]
        if rest:
            for i, result in zip(rest, super().report([reports[i] for i in rest]), strict=True):
                results[i] = result
        return [result for result in results if result is not None]
