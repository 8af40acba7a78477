"""`taskyard api`: the REST API under gunicorn.

gunicorn's master only resolves settings and listens; each worker process builds its
own adapters (`get_app`) after the fork, so nothing connected is shared across a fork.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from taskyard.entrypoints import config
from taskyard.entrypoints.bootstrap import ConfigError, store_scheme

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
    memory = store_scheme(settings.database_url) == "memory"
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
    }


def run(args: argparse.Namespace) -> int:
    settings = config.resolve(args, config.API_SETTINGS)
    if settings.database_url is None:
        raise ConfigError(
            "TASKYARD_DATABASE_URL",
            "not set (use --db or TASKYARD_DATABASE_URL: postgresql://..., sqlite:///path, "
            "memory://)",
        )
    options = gunicorn_options(settings)

    from taskyard.entrypoints.logs import configure_logging

    configure_logging(log_format=settings.log_format, level=settings.log_level)
    logging.getLogger("taskyard.api").info(
        "starting",
        extra={
            "bind": settings.bind,
            "workers": options["workers"],
            "threads": options["threads"],
            "store": store_scheme(settings.database_url),
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
