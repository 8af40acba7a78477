"""Applying the PostgreSQL schema: versioned SQL files, recorded in `taskyard.schema_migrations`.

`migrate(conninfo)` takes a transaction-level advisory lock first, so two processes
migrating at once run one after the other and the second finds nothing to do; every
pending version is applied and recorded in that one transaction, so a failure leaves the
schema as it was. A version already applied whose file has changed since is refused.
"""

from __future__ import annotations

import attrs
import psycopg

from taskyard.adapters.sqlshared import Migration, load_migrations
from taskyard.domain.errors import StoreUnavailable

SCHEMA = "taskyard"
MIGRATE_LOCK_KEY = 0x7461_736B_7961_7264 & 0x7FFF_FFFF_FFFF_FFFF
"""The advisory lock migrations hold ("taskyard" in ASCII): transaction-level, so it can
never outlive the migration, even behind a transaction-pooling PgBouncer."""

_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS taskyard;
CREATE TABLE IF NOT EXISTS taskyard.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


class MigrationError(Exception):
    """The database holds a schema this taskyard cannot upgrade."""


@attrs.frozen(kw_only=True)
class MigrationResult:
    applied: tuple[str, ...]
    """`NNNN_name` of each version applied by this call, in order."""
    version: int
    """The schema version after the call."""


def migrations() -> list[Migration]:
    return load_migrations("postgres")


def latest_version() -> int:
    return migrations()[-1].version


def migrate(conninfo: str, *, connect_timeout_s: int = 10) -> MigrationResult:
    """Create or upgrade the schema. Raises `StoreUnavailable` when the database cannot be
    reached and `MigrationError` when its schema is newer or was changed by hand."""
    known = migrations()
    try:
        with (
            psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout_s) as conn,
            conn.transaction(),
        ):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))
            conn.execute(_BOOKKEEPING)
            rows = conn.execute(
                "SELECT version, name, checksum FROM taskyard.schema_migrations"
            ).fetchall()
            recorded = {version: (name, checksum) for version, name, checksum in rows}
            newest = max(recorded, default=0)
            if newest > known[-1].version:
                raise MigrationError(
                    f"the database is at schema version {newest}; this taskyard knows "
                    f"versions up to {known[-1].version}"
                )
            applied: list[str] = []
            for migration in known:
                if migration.version in recorded:
                    name, checksum = recorded[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(
                            f"version {migration.version} ({name}) was applied from a "
                            "different file than the one shipped"
                        )
                    continue
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO taskyard.schema_migrations (version, name, checksum)"
                    " VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
                applied.append(f"{migration.version:04d}_{migration.name}")
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(message=f"PostgreSQL unavailable: {_first_line(exc)}") from exc
    return MigrationResult(applied=tuple(applied), version=known[-1].version)


def schema_version(conn: psycopg.Connection[tuple[object, ...]]) -> int | None:
    """The recorded version, or None before the first migration."""
    row = conn.execute("SELECT to_regclass('taskyard.schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    version = conn.execute("SELECT max(version) FROM taskyard.schema_migrations").fetchone()
    return None if version is None or version[0] is None else int(str(version[0]))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
