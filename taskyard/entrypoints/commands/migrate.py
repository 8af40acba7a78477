"""`taskyard migrate`: create or upgrade the store's schema.

    taskyard migrate --db postgresql://taskyard@db/taskyard
    TASKYARD_DATABASE_URL=postgresql://... taskyard migrate
    taskyard migrate                       # database_url from ./taskyard.toml

The store URL is resolved like every other command's: `--db` (or its older spelling
`--database-url`), else `TASKYARD_DATABASE_URL`, else `database_url` in `taskyard.toml`.

PostgreSQL: applies the versioned SQL files shipped in the package and records each in
`taskyard.schema_migrations`; running it again, or from several processes at once, is
harmless. SQLite: opens the file, which creates or upgrades its schema. Memory: nothing
to do.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from taskyard.entrypoints import config


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "migrate",
        help="create or upgrade the store's schema",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_arguments(
        parser, config.MIGRATE_SETTINGS, aliases={"database_url": ["--database-url"]}
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from taskyard.domain.errors import StoreUnavailable
    from taskyard.entrypoints.config import sqlite_path, store_scheme

    settings = config.resolve(args, config.MIGRATE_SETTINGS)
    url = config.required_database_url(settings)
    source = settings.source("database_url")
    scheme = store_scheme(url, setting=source)
    from taskyard.entrypoints.process import banner, redact_url

    banner(f"taskyard migrate {redact_url(url)}")
    try:
        if scheme == "memory":
            print("memory:// keeps no schema: nothing to migrate")
            return 0
        if scheme == "sqlite":
            return _sqlite(sqlite_path(url, setting=source))
        return _postgres(url, source=source)
    except StoreUnavailable as exc:
        print(f"taskyard: cannot migrate: {exc}", file=sys.stderr)
        return 1


def _postgres(url: str, *, source: str) -> int:
    from taskyard.adapters.postgres.schema import MigrationError, migrate
    from taskyard.adapters.postgres.store import split_url
    from taskyard.entrypoints.config import ConfigError

    try:
        conninfo, _settings = split_url(url)
    except ValueError as exc:
        raise ConfigError(source, f"bad connection setting: {exc}") from None
    try:
        result = migrate(conninfo)
    except MigrationError as exc:
        print(f"taskyard: cannot migrate: {exc}", file=sys.stderr)
        return 1
    for name in result.applied:
        print(f"applied {name}")
    state = "" if result.applied else " (up to date)"
    print(f"taskyard schema at version {result.version}{state}")
    return 0


def _sqlite(path: str) -> int:
    from taskyard.entrypoints.bootstrap import sqlite_schema_version

    print(f"{path}: taskyard schema at version {sqlite_schema_version(path)}")
    return 0
