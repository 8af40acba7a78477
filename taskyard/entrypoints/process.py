"""What the long-running commands (`worker`, `scheduler`, `standalone`) share: process ids,
loading a user's `App`, the task registry a worker offers, the store and coordinator from
settings, and the two-stage stop on SIGTERM/SIGINT.

Stopping: the first SIGTERM or SIGINT asks for a graceful stop (`Stop.requested` is set,
and the command's main thread does the rest); a second one ends the process at once with
`os._exit`, whatever the main thread and the handlers are in the middle of. Nothing is
lost either way: a lease that is not handed back expires, and the job runs again
elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from taskyard.adapters.executors import builtin_tasks
from taskyard.domain.builtins import BUILTIN_TASKS, BuiltinPolicy
from taskyard.domain.ports import Clock, Coordinator, JobStore
from taskyard.domain.scheduler import SchedulerConfig
from taskyard.domain.worker import WorkerConfig
from taskyard.entrypoints.app import App, Registry
from taskyard.entrypoints.bootstrap import (
    ConfigError,
    make_coordinator,
    make_store,
    store_scheme,
)
from taskyard.entrypoints.config import Settings, required_database_url
from taskyard.entrypoints.runtime import SchedulerRuntime, WorkerRuntime

log = logging.getLogger("taskyard.process")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def process_id() -> str:
    """`host:pid:random`: unique per process run, stable for its life, and telling a person
    where to look. Workers name themselves on leases and attempts with it."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


# --- the user's tasks ---------------------------------------------------------------------


def load_app(spec: str, *, source: str = "--app") -> App:
    """Import `module:attribute` and return the `App` it names. The working directory is
    importable, as it is for `python -m`, so `--app jobs:app` finds ./jobs.py."""
    module_name, _, attr_path = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(source, f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise ConfigError(
            source, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(source, f"{module_name!r} has no attribute {attr_path!r}") from None
    if not isinstance(target, App):
        raise ConfigError(source, f"{spec!r} is a {type(target).__name__}, not a taskyard.App")
    return target


def with_app_urls(settings: Settings, app: App | None) -> Settings:
    """Without `--db` (or `--redis`), a worker uses the URLs its `App` was made with, so
    `App("postgresql://...")` in the project's code is enough."""
    if app is None:
        return settings
    sources = dict(settings.sources)
    changes: dict[str, Any] = {}
    if settings.database_url is None and app.url != "memory://":
        changes["database_url"] = app.url
        sources["database_url"] = f"the URL of {settings.app}"
    if settings.redis_url is None and app.coordinator_url is not None:
        changes["redis_url"] = app.coordinator_url
        sources["redis_url"] = f"the coordinator URL of {settings.app}"
    if not changes:
        return settings
    return attrs.evolve(settings, sources=sources, **changes)


def builtin_policy(settings: Settings) -> BuiltinPolicy:
    return BuiltinPolicy(
        http_allowed_hosts=settings.http_allowed_hosts, shell_enabled=settings.shell_enabled
    )


def task_registry(app: App | None, policy: BuiltinPolicy) -> Registry:
    """The tasks a worker offers: the app's own, plus the built-ins under the operator's
    policy. `shell` is offered only when enabled, so a worker without it never claims a
    shell job another worker could run."""
    registry = Registry()
    if app is not None:
        for name in sorted(app.tasks.names() - BUILTIN_TASKS):
            spec = app.tasks.get(name)
            assert spec is not None
            registry.add(spec)
    for name, spec in builtin_tasks(policy).items():
        if name != "shell" or policy.shell_enabled:
            registry.add(spec)
    return registry


# --- adapters -----------------------------------------------------------------------------


def required_store_url(settings: Settings, *, command: str) -> str:
    """The store URL of a process that shares its store with others: set, and not
    `memory://` (whose jobs live in one process)."""
    url = required_database_url(settings)
    if store_scheme(url, setting=settings.source("database_url")) == "memory":
        raise ConfigError(
            settings.source("database_url"),
            f"memory:// keeps jobs inside one process, so a {command} cannot share it: use "
            "postgresql:// or sqlite:/// (or `taskyard standalone`, which runs it all in one)",
        )
    return url


def open_store(url: str, settings: Settings, clock: Clock) -> JobStore:
    return make_store(url, clock=clock, setting=settings.source("database_url"))


def open_coordinator(
    settings: Settings, clock: Clock, *, default_memory: bool
) -> Coordinator | None:
    """The coordinator of `settings.redis_url`; without one, an in-process coordinator
    when `default_memory` (standalone), else none (workers then only poll)."""
    if settings.redis_url is None:
        return make_coordinator(None, clock=clock) if default_memory else None
    return make_coordinator(
        settings.redis_url,
        clock=clock,
        key_prefix=settings.redis_key_prefix,
        setting=settings.source("redis_url"),
    )


def redact_url(url: str) -> str:
    """A URL fit for a log line: no password, no query."""
    bare = url.split("?", 1)[0].split("#", 1)[0]
    parts = urlsplit(bare)
    user, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in user:
        return bare
    netloc = f"{user.split(':', 1)[0]}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def describe_coordinator(settings: Settings, coordinator: Coordinator | None) -> str:
    if coordinator is None:
        return "none (polling only)"
    if settings.redis_url is None or settings.redis_url.startswith("memory"):
        return "in-process"
    return f"redis (prefix {settings.redis_key_prefix})"


def close_quietly(*things: object) -> None:
    """Close adapters at exit; an error while closing is logged, never raised."""
    for thing in things:
        close: Callable[[], None] | None = getattr(thing, "close", None)
        if close is None:
            continue
        try:
            close()
        except Exception:
            log.warning("closing %s failed", type(thing).__name__, exc_info=True)


# --- stopping -----------------------------------------------------------------------------


class Stop:
    """The two-stage stop. `install()` takes SIGTERM and SIGINT (main thread only); the
    first sets `requested`, a second exits the process at once with 128 + the signal
    number. `request()` asks for the graceful stop from code (tests, the server)."""

    def __init__(self, *, name: str) -> None:
        self.name = name
        self.requested = threading.Event()
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> Stop:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def request(self) -> None:
        self.requested.set()

    def wait(self) -> None:
        """Block the main thread until a stop is asked for (signals still get through)."""
        while not self.requested.wait(0.5):
            pass

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            # Logging takes locks a signal may have interrupted: write the line directly.
            with contextlib.suppress(OSError):
                os.write(2, f"taskyard {self.name}: {name} again: exiting now\n".encode())
            os._exit(128 + signum)
        self.signal_name = name
        log.info(
            "stopping gracefully (send the signal again to exit at once)",
            extra={"signal": name},
        )
        self.requested.set()


@contextlib.contextmanager
def stop_on_signals(name: str) -> Iterator[Stop]:
    stop = Stop(name=name).install()
    try:
        yield stop
    finally:
        stop.uninstall()


def exit_now(code: int) -> None:
    """End the process without waiting for threads (handlers that ignored the stop)."""
    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def banner(line: str) -> None:
    """The one line a process prints on stdout when it is up (ids, where it listens)."""
    print(line, flush=True)


WILDCARD_HOSTS: Mapping[str, str] = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
"""A server bound to every address is reached on this machine through the loopback."""


def listen_url(host: str, port: int) -> str:
    """Where a server listens, as a URL (an IPv6 address in brackets)."""
    bare = host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    return f"http://{shown}:{port}"


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses to reach a server listening on `host:port`.

    >>> client_url("0.0.0.0", 9000), client_url("::", 8000), client_url("[::1]", 80)
    ('http://127.0.0.1:9000', 'http://[::1]:8000', 'http://[::1]:80')
    """
    bare = host.strip("[]")
    return listen_url(WILDCARD_HOSTS.get(bare, bare), port)


def url_hint(url: str | None) -> str:
    """What a server's start-up line adds so that the client commands find it: nothing
    when they would anyway (`TASKYARD_URL`'s default), else the variable to export."""
    if url is None or url == attrs.fields(Settings).url.default:
        return ""
    return f"; export TASKYARD_URL={url} for the client commands"


__all__ = [
    "Stop",
    "banner",
    "builtin_policy",
    "client_url",
    "close_quietly",
    "describe_coordinator",
    "exit_now",
    "listen_url",
    "load_app",
    "open_coordinator",
    "open_store",
    "process_id",
    "redact_url",
    "required_store_url",
    "scheduler_runtime",
    "stop_on_signals",
    "stop_worker",
    "task_registry",
    "url_hint",
    "with_app_urls",
    "worker_runtime",
]


# --- runtimes from settings ---------------------------------------------------------------


def worker_runtime(
    settings: Settings,
    *,
    store: JobStore,
    coordinator: Coordinator | None,
    registry: Registry,
    worker_id: str,
) -> WorkerRuntime:
    config = WorkerConfig(
        worker_id=worker_id,
        queues=settings.queues,
        concurrency=settings.concurrency,
        lease_ttl_s=settings.lease_ttl_s,
        poll_interval_s=settings.poll_interval_s,
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    return WorkerRuntime(store=store, coordinator=coordinator, registry=registry, config=config)


def scheduler_runtime(
    settings: Settings, *, store: JobStore, coordinator: Coordinator | None, scheduler_id: str
) -> SchedulerRuntime:
    config = SchedulerConfig(
        scheduler_id=scheduler_id,
        leader_ttl_s=settings.leader_ttl_s,
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    return SchedulerRuntime(store=store, coordinator=coordinator, config=config)


HANDLERS_EXIT_WAIT_S = 2.0
"""After a graceful stop, how long handlers told to stop get to return before the process
exits without them."""


def stop_worker(runtime: WorkerRuntime, *, grace_s: float) -> int:
    """Stop claiming, let running jobs finish within `grace_s`, hand back the rest. Returns
    how many handlers are still running afterwards (they ignored the request to stop)."""
    runtime.stop(grace_s=grace_s)
    deadline = time.monotonic() + HANDLERS_EXIT_WAIT_S
    while runtime.executor.running and time.monotonic() < deadline:
        time.sleep(0.05)
    return runtime.executor.running
