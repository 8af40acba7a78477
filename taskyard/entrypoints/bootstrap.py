"""The composition root: the one place that turns URLs and settings into adapters.

Nothing connects at import time: adapters for PostgreSQL, SQLite and Redis are imported
only when a URL asks for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.ports import Clock, Coordinator, JobStore

if TYPE_CHECKING:
    from taskyard.adapters.redis_coordinator import RedisSettings

STORE_SCHEMES = "postgresql://, sqlite:///, memory://"
COORDINATOR_SCHEMES = "redis://, rediss://, unix://, memory://"


class ConfigError(Exception):
    """A setting is wrong: the process stops at start with one line naming it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


def store_scheme(url: str, *, setting: str = "TASKYARD_DATABASE_URL") -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme in ("sqlite", "memory"):
        return scheme
    raise ConfigError(setting, f"unsupported scheme {scheme or url!r} (use {STORE_SCHEMES})")


def sqlite_path(url: str, *, setting: str = "TASKYARD_DATABASE_URL") -> str:
    """The file of a `sqlite:///path` URL: `sqlite:///jobs.db` is `jobs.db` in the working
    directory, `sqlite:////var/lib/taskyard.db` is absolute."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise ConfigError(setting, "a SQLite URL names a file: sqlite:///path/to/file.db")
    if parts.query or parts.fragment:
        raise ConfigError(setting, "a SQLite URL takes no query or fragment")
    return parts.path[1:]


def make_store(url: str, *, clock: Clock, setting: str = "TASKYARD_DATABASE_URL") -> JobStore:
    """A `JobStore` for `url`. The in-memory and SQLite stores take `clock` as their time
    authority; PostgreSQL uses the server's own clock."""
    scheme = store_scheme(url, setting=setting)
    if scheme == "memory":
        return InMemoryJobStore(clock)
    if scheme == "sqlite":
        from taskyard.adapters.sqlite import SqliteJobStore

        return SqliteJobStore(sqlite_path(url, setting=setting), clock=clock)
    from taskyard.adapters.postgres import PostgresJobStore

    try:
        return PostgresJobStore.from_url(url)
    except ValueError as exc:
        raise ConfigError(setting, f"bad connection setting: {exc}") from None


def make_coordinator(
    url: str | None,
    *,
    clock: Clock,
    key_prefix: str | None = None,
    redis_settings: RedisSettings | None = None,
    setting: str = "TASKYARD_REDIS_URL",
) -> Coordinator:
    """The coordinator for `url`: None or `memory://` is in-process; `redis://`, `rediss://`
    and `unix:///path/to/redis.sock` are Redis, every key under `key_prefix` (default
    `taskyard:`). Connection options may ride on the URL
    (`?socket_timeout=0.5&socket_connect_timeout=0.5`); they win over `redis_settings`.
    Nothing connects here: the first call does."""
    scheme = urlsplit(url).scheme.lower() if url is not None else "memory"
    if scheme == "memory":
        return InMemoryCoordinator(clock)
    if scheme in ("redis", "rediss", "unix"):
        import attrs

        from taskyard.adapters.redis_coordinator import RedisCoordinator, RedisSettings

        settings = redis_settings or RedisSettings()
        if key_prefix is not None:
            if not key_prefix:
                raise ConfigError("TASKYARD_REDIS_PREFIX", "a key prefix cannot be empty")
            settings = attrs.evolve(settings, key_prefix=key_prefix)
        assert url is not None
        try:
            return RedisCoordinator(url, settings=settings)
        except ValueError as exc:
            raise ConfigError(setting, str(exc)) from None
    raise ConfigError(setting, f"unsupported scheme {scheme or url!r} (use {COORDINATOR_SCHEMES})")
