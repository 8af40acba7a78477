"""What the long-running commands (`worker`, `scheduler`, `standalone`) share: process ids,
loading a user's `App` and the settings it lends, the store URL they need, and the
two-stage stop on SIGTERM/SIGINT. Their adapters and runtimes come from the composition
root (`bootstrap`).

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

from taskyard.domain.ports import Coordinator
from taskyard.entrypoints.config import (
    ConfigError,
    Settings,
    required_database_url,
    store_scheme,
)
from taskyard.entrypoints.library import App
from taskyard.entrypoints.runtime import WorkerRuntime

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


LENT_BY_THE_APP = ("database_url", "redis_url", "redis_key_prefix")


def with_app_settings(settings: Settings, app: App | None) -> Settings:
    """Where the command was not told the store, Redis or the key prefix (no flag, variable
    or key of `taskyard.toml`), it uses what its `App` was given, so that
    `App("postgresql://...")` in the project's code is enough."""
    if app is None:
        return settings
    defaults = {field.name: field.default for field in attrs.fields(Settings)}
    sources = dict(settings.sources)
    changes: dict[str, Any] = {}
    for attr in LENT_BY_THE_APP:
        told = attr in settings.sources or getattr(settings, attr) != defaults[attr]
        lent = app.settings.sources.get(attr)
        if told or lent is None:
            continue
        changes[attr] = getattr(app.settings, attr)
        sources[attr] = f"{lent} in {settings.app}"
    if not changes:
        return settings
    return attrs.evolve(settings, sources=sources, **changes)


# --- settings -----------------------------------------------------------------------------


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
    "client_url",
    "close_quietly",
    "describe_coordinator",
    "exit_now",
    "listen_url",
    "load_app",
    "process_id",
    "redact_url",
    "required_store_url",
    "stop_on_signals",
    "stop_worker",
    "url_hint",
    "with_app_settings",
]


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
