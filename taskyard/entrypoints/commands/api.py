"""`taskyard api`: the REST API under gunicorn.

gunicorn's master only resolves settings and listens; each worker process builds its
own adapters (`get_app`) after the fork, so nothing connected is shared across a fork.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from taskyard.entrypoints import config
from taskyard.entrypoints.config import ConfigError, store_scheme
from taskyard.entrypoints.exposure import check_exposure

HELP = "serve the REST API under gunicorn"
DESCRIPTION = """\
Serve the REST API (api.md) under gunicorn: WORKERS processes of THREADS threads each.

The store comes from --db / TASKYARD_DATABASE_URL, which must be set: postgresql://...
in production (run `taskyard migrate` first), or sqlite:///path. memory:// keeps its
jobs inside one process, so it runs with exactly one worker and nothing else can run its
jobs: `taskyard standalone` is the way to try everything in one process.
"""

WORKERS_DEFAULT = 2
APP_LOAD_ERROR = 4
"""gunicorn's exit status when a worker could not load the app (a ConfigError in it)."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "api",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_arguments(parser, config.API_SETTINGS)
    parser.set_defaults(run=run)


def worker_count(settings: config.Settings) -> int:
    """`--workers`, or the default for the store; memory:// allows only one."""
    assert settings.database_url is not None
    memory = (
        store_scheme(settings.database_url, setting=settings.source("database_url")) == "memory"
    )
    if settings.api_workers is None:
        return 1 if memory else WORKERS_DEFAULT
    if memory and settings.api_workers > 1:
        raise ConfigError(
            settings.source("api_workers"),
            f"{settings.api_workers} workers on memory:// would each keep jobs of their own: "
            "use 1, or a database URL",
        )
    return settings.api_workers


def gunicorn_options(settings: config.Settings) -> dict[str, Any]:
    from taskyard.entrypoints.commands.gunicorn_logging import TaskyardGunicornLogger

    return {
        "bind": [settings.bind],
        "workers": worker_count(settings),
        "threads": settings.api_threads,
        "worker_class": "gthread",
        "timeout": settings.api_timeout_s,
        "graceful_timeout": settings.api_graceful_timeout_s,
        "keepalive": settings.api_keepalive_s,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level,
        "logger_class": TaskyardGunicornLogger,
        "proc_name": "taskyard-api",
        "preload_app": False,
        "control_socket_disable": True,
        # Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads
        # new connections over them; on one shared socket, whichever worker wakes first
        # accepts a burst of keep-alive connections and the others idle (measured: one of
        # two workers at 100% CPU, the other at 0%, half the throughput). Not for unix:
        # sockets, nor port 0 (each worker would pick a port of its own).
        "reuse_port": _reuse_port(settings.bind),
        "when_ready": _announce(settings),
    }


def _announce(settings: config.Settings) -> Callable[[Any], None]:
    """gunicorn's `when_ready` hook: the master's start-up line, once it listens."""

    def when_ready(arbiter: Any) -> None:
        from taskyard.entrypoints.process import banner

        banner(start_up_line(settings, arbiter.LISTENERS, arbiter.cfg.workers))

    return when_ready


def start_up_line(settings: config.Settings, listeners: Sequence[Any], workers: int) -> str:
    """`taskyard api listening on URL (...)`. The address is the master's socket where it
    has one (port 0 is resolved there), else the bind (each worker binds its own)."""
    from taskyard.entrypoints import process

    assert settings.database_url is not None
    address = tcp_address(settings.bind)
    if address is None:
        where, url = settings.bind, None
    else:
        host, port = address
        for listener in listeners:
            bound = listener.getsockname()
            if isinstance(bound, tuple):
                port = bound[1]
                break
        where, url = process.listen_url(host, port), process.client_url(host, port)
    coordinator = f", redis {settings.redis_key_prefix}" if settings.redis_url else ""
    return (
        f"taskyard api listening on {where} ({workers} x {settings.api_threads} threads, "
        f"store {process.redact_url(settings.database_url)}{coordinator})"
        f"{process.url_hint(url)}"
    )


def tcp_address(bind: str) -> tuple[str, int] | None:
    """`(host, port)` of a `HOST:PORT` or `[v6]:PORT` bind; None for `unix:PATH`.

    >>> tcp_address("127.0.0.1:8000"), tcp_address("[::1]:0"), tcp_address("unix:/run/t.sock")
    (('127.0.0.1', 8000), ('::1', 0), None)
    """
    if bind.startswith("unix:"):
        return None
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def _reuse_port(bind: str) -> bool:
    address = tcp_address(bind)
    return address is not None and address[1] != 0


def check_bind(settings: config.Settings) -> None:
    """Fail at start, with one line naming the setting, when the address cannot be listened
    on (in use, not this machine's, privileged). The workers bind for themselves later,
    with SO_REUSEPORT, which would otherwise retry for ever; this probe binds without it,
    so a second `taskyard api` on the same port is refused too."""
    address = tcp_address(settings.bind)
    if address is None:
        return
    host, port = address
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(
            settings.source("bind"), f"cannot listen on {settings.bind}: {exc.strerror or exc}"
        ) from None


def run(args: argparse.Namespace) -> int:
    settings = config.resolve(args, config.API_SETTINGS)
    if settings.database_url is None:
        raise ConfigError(
            "TASKYARD_DATABASE_URL",
            "not set (use --db or TASKYARD_DATABASE_URL: postgresql://..., sqlite:///path, "
            "memory://)",
        )
    options = gunicorn_options(settings)
    check_bind(settings)

    from taskyard.entrypoints.logs import configure_logging

    configure_logging(log_format=settings.log_format, level=settings.log_level)
    address = tcp_address(settings.bind)
    check_exposure(
        settings,
        host=address[0] if address is not None else None,
        listening=f"{settings.bind} ({settings.source('bind')})",
    )
    logging.getLogger("taskyard.api").info(
        "starting",
        extra={
            "bind": settings.bind,
            "workers": options["workers"],
            "threads": options["threads"],
            "store": store_scheme(settings.database_url, setting=settings.source("database_url")),
            "auth": bool(settings.api_tokens),
        },
    )
    from taskyard.entrypoints.commands.gunicorn_app import ApiServer

    master_pid = os.getpid()
    try:
        ApiServer(settings, options).run()
    except SystemExit as exc:
        # Worker processes are forks of this one and unwind through here too: only the
        # master's own exit is translated.
        if os.getpid() == master_pid and exc.code == APP_LOAD_ERROR:
            return 2
        raise
    return 0
