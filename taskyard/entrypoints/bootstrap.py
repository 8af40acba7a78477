"""The composition root: the one place that turns resolved settings into a wired system.

Every shell builds what it runs on here, and nowhere else:

    system = bootstrap(settings)                          # from config.resolve(...)
    runtime = system.worker_runtime(system.task_registry(app.tasks), worker_id=...)
    scheduler = system.scheduler_runtime(scheduler_id=...)
    services = system.services()                          # what the REST API runs on
    system.close()                                        # what bootstrap opened

`taskyard api`, `worker`, `scheduler`, `standalone` and `bench` call it at start; the
Python `App` calls it on first use; `taskyard.testing.TestRunner` calls it with a manual
clock and a seeded random source. Tests hand in their own parts the same way (a manual
clock, a store wrapped so that it can be disconnected), so fakes are wired exactly as
production's adapters are:

    bootstrap(Settings(database_url="memory://"), clock=ManualClock(), rng=random.Random(7))

Which adapter a URL means is decided here: `memory://`, `sqlite:///path` and
`postgresql://...` for the store; none, `memory://` (in this process), `redis://`,
`rediss://` and `unix://` for the coordinator. Adapter modules are imported only when a URL
asks for them. Nothing connects to PostgreSQL or Redis here: the adapters connect on first
use and retry on their own. A SQLite store opens (and creates or upgrades) its file when
it is built.
"""

from __future__ import annotations

import importlib
import os
import random
import socket
from typing import TYPE_CHECKING, Any

import attrs

from taskyard.adapters.clock import MonotonicClock, SystemClock
from taskyard.adapters.executors import builtin_tasks
from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.builtins import BUILTIN_TASKS, BuiltinPolicy
from taskyard.domain.catalog import UnknownTask
from taskyard.domain.client import Client
from taskyard.domain.context import Registry
from taskyard.domain.hooks import Hooks
from taskyard.domain.ports import Clock, Coordinator, JobStore, Random, TaskRegistry
from taskyard.domain.scheduler import SchedulerConfig
from taskyard.domain.worker import REPORT_LINGER_S_DEFAULT, WorkerConfig
from taskyard.entrypoints.config import (
    ConfigError,
    Settings,
    coordinator_scheme,
    required_database_url,
    sqlite_path,
    store_scheme,
)
from taskyard.entrypoints.runtime import DOORBELL_BLOCK_S, SchedulerRuntime, WorkerRuntime

if TYPE_CHECKING:
    from taskyard.entrypoints.api.services import Services


def wall_clock() -> Clock:
    """The clock of the stores that keep none of their own (memory, SQLite), of job ids and
    of the client."""
    return SystemClock()


def system_random() -> Random:
    """Chance in production: job ids, retry jitter."""
    return random.SystemRandom()


def builtin_policy(settings: Settings) -> BuiltinPolicy:
    """What the built-in tasks may do: the http task's hosts, whether shell runs at all."""
    return BuiltinPolicy(
        http_allowed_hosts=settings.http_allowed_hosts, shell_enabled=settings.shell_enabled
    )


# --- adapters from URLs -------------------------------------------------------------------


def _store(settings: Settings, clock: Clock) -> JobStore:
    """The store of `settings.database_url`. The in-memory and SQLite stores take `clock`
    as their time authority; PostgreSQL uses the server's own clock."""
    url = required_database_url(settings)
    source = settings.source("database_url")
    scheme = store_scheme(url, setting=source)
    if scheme == "memory":
        return InMemoryJobStore(clock)
    if scheme == "sqlite":
        from taskyard.adapters.sqlite import SqliteJobStore

        return SqliteJobStore(sqlite_path(url, setting=source), clock=clock)
    from taskyard.adapters.postgres import PostgresJobStore

    try:
        return PostgresJobStore.from_url(url)
    except ValueError as exc:
        raise ConfigError(source, f"bad connection setting: {exc}") from None


def _coordinator(settings: Settings, clock: Clock) -> Coordinator | None:
    """The coordinator of `settings.redis_url`: none without one, in this process for
    `memory://`, else Redis with every key under `settings.redis_key_prefix`. Connection
    options may ride on the URL (`?socket_timeout=0.5&socket_connect_timeout=0.5`)."""
    url = settings.redis_url
    if url is None:
        return None
    source = settings.source("redis_url")
    if coordinator_scheme(url, setting=source) == "memory":
        return InMemoryCoordinator(clock)
    from taskyard.adapters.redis_coordinator import RedisCoordinator, RedisSettings

    try:
        return RedisCoordinator(
            url,
            settings=RedisSettings(key_prefix=settings.redis_key_prefix, bells_in_background=True),
        )
    except ValueError as exc:
        raise ConfigError(source, str(exc)) from None


def sqlite_schema_version(path: str) -> int:
    """Open the SQLite store at `path`, which creates or upgrades its schema, and close it
    again: the schema version it is at (`taskyard migrate`, the bench's own file)."""
    from taskyard.adapters.sqlite import SqliteJobStore

    with SqliteJobStore(path, clock=wall_clock()) as store:
        return store.schema_version


# --- the wired system ---------------------------------------------------------------------


_FROM_SETTINGS: Any = object()


@attrs.define(eq=False)
class System:
    """What one shell runs on: the adapters, wired, and the runtimes and services built
    over them. `close()` closes what `bootstrap` opened, never what was handed in."""

    settings: Settings
    store: JobStore
    coordinator: Coordinator | None
    clock: Clock
    """The wall clock: the memory and SQLite stores' time authority, job ids, the client."""
    node_clock: Clock
    """A node's own schedule (heartbeats, handler timeouts, polls); never for anything
    stored."""
    rng: Random
    builtins: BuiltinPolicy
    owned: list[object] = attrs.field(factory=list)
    _client: Client | None = None

    @property
    def client(self) -> Client:
        """Validation and submission: the same for the API and the Python library."""
        if self._client is None:
            self._client = Client(
                store=self.store,
                coordinator=self.coordinator,
                clock=self.clock,
                rng=self.rng,
                builtins=self.builtins,
                unknown_task=UnknownTask(self.settings.unknown_task),
            )
        return self._client

    def services(self) -> Services:
        """What the REST API runs on."""
        from taskyard.entrypoints.api.services import Services

        return Services(
            store=self.store,
            client=self.client,
            coordinator=self.coordinator,
            tokens=self.settings.api_tokens,
        )

    def task_registry(self, tasks: TaskRegistry | None = None) -> Registry:
        """The tasks a worker offers: `tasks` (an app's own), plus the built-ins under this
        system's policy. `shell` is offered only when enabled, so a worker without it
        never claims a shell job another worker could run."""
        return task_registry(tasks, self.builtins)

    def worker_runtime(
        self,
        registry: TaskRegistry,
        *,
        worker_id: str,
        doorbell_block_s: float = DOORBELL_BLOCK_S,
        hooks: Hooks | None = None,
        **config: Any,
    ) -> WorkerRuntime:
        """A worker pool over this system, configured from the settings; `config` sets
        other `WorkerConfig` fields (batch sizes, a bench's concurrency); `hooks` are an
        app's lifecycle hooks."""
        settings = self.settings
        loader = TaskLoader(app=settings.app, builtins=self.builtins)
        worker_config = WorkerConfig(
            worker_id=worker_id,
            queues=settings.queues,
            concurrency=settings.concurrency,
            async_concurrency=settings.async_concurrency,
            prefetch=settings.prefetch,
            lease_ttl_s=settings.lease_ttl_s,
            poll_interval_s=settings.poll_interval_s,
            report_linger_s=REPORT_LINGER_S_DEFAULT,
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        return WorkerRuntime(
            store=self.store,
            coordinator=self.coordinator,
            registry=registry,
            config=attrs.evolve(worker_config, **config),
            clock=self.node_clock,
            rng=self.rng,
            doorbell_block_s=doorbell_block_s,
            hooks=hooks,
            pool=settings.pool,
            load_registry=loader,
            preload=loader.modules(),
        )

    def scheduler_runtime(self, *, scheduler_id: str, **config: Any) -> SchedulerRuntime:
        """A scheduler over this system; `config` sets other `SchedulerConfig` fields."""
        scheduler_config = SchedulerConfig(
            scheduler_id=scheduler_id,
            leader_ttl_s=self.settings.leader_ttl_s,
            retention=self.settings.retention,
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        return SchedulerRuntime(
            store=self.store,
            coordinator=self.coordinator,
            config=attrs.evolve(scheduler_config, **config),
            clock=self.node_clock,
            vacuum_every_s=self.settings.vacuum_every_s,
        )

    def close(self) -> None:
        """Close what `bootstrap` built (a PostgreSQL pool, Redis connections, a SQLite
        file), coordinator first. Closing twice is harmless."""
        owned, self.owned = self.owned, []
        _close_all(owned)


def task_registry(tasks: TaskRegistry | None, builtins: BuiltinPolicy) -> Registry:
    """`tasks` (an app's own) and the built-ins under `builtins`: see `System.task_registry`."""
    registry = Registry()
    if tasks is not None:
        for name in sorted(tasks.names() - BUILTIN_TASKS):
            spec = tasks.get(name)
            assert spec is not None
            registry.add(spec)
    if isinstance(tasks, Registry):
        for schedule in tasks.schedules():
            registry.add_schedule(schedule)
    for name, spec in builtin_tasks(builtins).items():
        if name != "shell" or builtins.shell_enabled:
            registry.add(spec)
    return registry


@attrs.frozen(kw_only=True)
class TaskLoader:
    """How a child process of `--pool process` builds the worker's tasks: the app by its
    import path (`module:attribute`), the built-ins under the same policy. It pickles."""

    app: str | None
    builtins: BuiltinPolicy

    def modules(self) -> tuple[str, ...]:
        """What it imports: a process pool's fork server imports them once, ahead."""
        app_module = () if self.app is None else (self.app.partition(":")[0],)
        return ("taskyard.entrypoints.bootstrap", *app_module)

    def __call__(self) -> Registry:
        """In the child: the worker found the app already (`process.load_app`, which
        checked it), and the child has the worker's import path, so it is imported here
        without those checks."""
        if self.app is None:
            return task_registry(None, self.builtins)
        module_name, _, attr_path = self.app.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            target = getattr(target, part)
        return task_registry(target.tasks, self.builtins)


def _close_all(adapters: list[object]) -> None:
    """Close each adapter, last built first; the first error is raised after all tried."""
    errors: list[Exception] = []
    for adapter in reversed(adapters):
        close = getattr(adapter, "close", None)
        if close is None:
            continue
        try:
            close()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def bootstrap(
    settings: Settings,
    *,
    store: JobStore | None = None,
    coordinator: Coordinator | None = _FROM_SETTINGS,
    clock: Clock | None = None,
    node_clock: Clock | None = None,
    rng: Random | None = None,
    builtins: BuiltinPolicy | None = None,
) -> System:
    """The system for `settings`. Each part not handed in is built from the settings:
    the store from `database_url`, the coordinator from `redis_url` (pass None for none),
    the wall clock and the random source for production, the node clock monotonic (or,
    when a clock is handed in, that same clock: a test's manual clock drives both), the
    built-in tasks' policy from `http_allowed_hosts` and `shell_enabled`."""
    wall = clock if clock is not None else wall_clock()
    owned: list[object] = []
    if store is None:
        store = _store(settings, wall)
        owned.append(store)
    if coordinator is _FROM_SETTINGS:
        try:
            coordinator = _coordinator(settings, wall)
        except BaseException:
            _close_all(owned)
            raise
        if coordinator is not None:
            owned.append(coordinator)
    return System(
        settings=settings,
        store=store,
        coordinator=coordinator,
        clock=wall,
        node_clock=node_clock or (clock if clock is not None else MonotonicClock()),
        rng=rng if rng is not None else system_random(),
        builtins=builtins if builtins is not None else builtin_policy(settings),
        owned=owned,
    )


__all__ = [
    "System",
    "bootstrap",
    "builtin_policy",
    "sqlite_schema_version",
    "system_random",
    "wall_clock",
]
