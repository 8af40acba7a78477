"""Where a bench runs: a store of its own and, with Redis, a key prefix of its own.

* PostgreSQL: a new database `taskyard_bench_<hex>` on the server of the URL given (the
  URL's own database is only used to create and drop it), migrated, emptied between
  phases, dropped at the end. Nothing else on the server is read or written.
* SQLite: a new file in a temporary directory, removed at the end.
* Redis: every key under a fresh `taskyard-bench-<hex>:` prefix, deleted at the end (the
  server is never flushed).

Loopback only, unless the caller allows otherwise: a bench puts real load on what it talks to.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import attrs

from taskyard.entrypoints.config import ConfigError, Settings, sqlite_path, store_scheme

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str | None) -> bool:
    """True for a loopback name or address, and for no host at all (a Unix socket)."""
    if not host or host.startswith("/"):
        return True
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_hosts(url: str) -> list[str]:
    """Every host a URL names: in its netloc (libpq allows several, comma separated, and
    bracketed IPv6) and in `host=` / `hostaddr=` query parameters.

    >>> url_hosts("postgresql://u:p@[::1]:5432,db.example:5433/x?hostaddr=127.0.0.1")
    ['::1', 'db.example', '127.0.0.1']
    >>> url_hosts("postgresql:///x?host=/var/run/postgresql")
    ['', '/var/run/postgresql']
    """
    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        if item.startswith("["):
            hosts.append(item[1 : item.index("]")])
        else:
            hosts.append(item.split(":")[0])
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("host", "hostaddr"):
            hosts.extend(value.split(","))
    return hosts


def check_loopback(url: str, *, setting: str) -> None:
    for host in url_hosts(url):
        if not is_loopback(host):
            raise ConfigError(
                setting, f"{host!r} is not a loopback address (pass --allow-remote to bench it)"
            )


@attrs.frozen(kw_only=True)
class Target:
    store_url: str
    """The bench's own store."""
    scheme: str
    redis_url: str | None
    redis_prefix: str | None
    label: str
    """What the report names: the server and the database, never a password."""

    def settings(self) -> Settings:
        """The bench's store and Redis keys, as the settings the composition root takes."""
        settings = Settings(database_url=self.store_url, redis_url=self.redis_url)
        if self.redis_prefix is None:
            return settings
        return attrs.evolve(settings, redis_key_prefix=self.redis_prefix)

    def empty(self) -> None:
        """Remove every job, attempt and pause flag (the bench's own store only)."""
        if self.scheme == "postgresql":
            import psycopg

            from taskyard.adapters.postgres.store import split_url

            conninfo, _ = split_url(self.store_url)
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(
                    "TRUNCATE taskyard.jobs, taskyard.attempts, taskyard.dependencies,"
                    " taskyard.paused_queues"
                )
        else:
            import sqlite3

            with contextlib.closing(
                sqlite3.connect(sqlite_path(self.store_url, setting="--store"))
            ) as conn:
                conn.executescript(
                    "DELETE FROM jobs; DELETE FROM attempts; DELETE FROM dependencies;"
                    " DELETE FROM paused_queues; DELETE FROM attempt_counts;"
                )


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _safe_label(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@contextlib.contextmanager
def own_postgres(url: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql

    from taskyard.adapters.postgres.schema import migrate
    from taskyard.adapters.postgres.store import split_url

    conninfo, _settings = split_url(url)
    name = f"taskyard_bench_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise ConfigError("--store", f"cannot create a database to bench in: {exc}") from None
    bench_url = _with_database(url, name)
    try:
        migrate(split_url(bench_url)[0])
        yield bench_url
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def own_sqlite() -> Iterator[str]:
    from taskyard.entrypoints.bootstrap import sqlite_schema_version

    folder = Path(tempfile.mkdtemp(prefix="taskyard-bench-"))
    try:
        path = folder / "bench.db"
        sqlite_schema_version(str(path))  # creates the schema
        yield f"sqlite:///{path}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def own_prefix(redis_url: str) -> Iterator[str]:
    import redis

    prefix = f"taskyard-bench-{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        client: Any = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
                client.delete(key)
        except redis.RedisError:
            pass  # best effort: the keys expire by their own TTLs anyway
        finally:
            client.close()


@contextlib.contextmanager
def bench_target(
    store_url: str, redis_url: str | None, *, allow_remote: bool = False
) -> Iterator[Target]:
    scheme = store_scheme(store_url, setting="--store")
    if scheme == "memory":
        raise ConfigError(
            "--store", "memory:// lives inside one process; bench a postgresql:// or sqlite:/// URL"
        )
    if not allow_remote:
        if scheme == "postgresql":
            check_loopback(store_url, setting="--store")
        if redis_url is not None:
            check_loopback(redis_url, setting="--redis")
    if scheme == "sqlite":
        sqlite_path(store_url, setting="--store")  # a well-formed URL, though it is not used
    with contextlib.ExitStack() as stack:
        own = stack.enter_context(
            own_postgres(store_url) if scheme == "postgresql" else own_sqlite()
        )
        prefix = stack.enter_context(own_prefix(redis_url)) if redis_url else None
        yield Target(
            store_url=own,
            scheme=scheme,
            redis_url=redis_url,
            redis_prefix=prefix,
            label=_safe_label(own) if scheme == "postgresql" else "sqlite (a temporary file)",
        )
