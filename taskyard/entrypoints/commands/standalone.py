"""`taskyard standalone`: the REST API, a scheduler and a worker pool in one process.

    taskyard standalone                      # SQLite at ./taskyard.db, http://127.0.0.1:8000
    taskyard standalone --port 9000 --concurrency 8 --app myproject.jobs:app
    taskyard standalone --db postgresql://... --redis redis://...

Nothing else needs to be installed or running. It prints where it listens. Ctrl-C (or
SIGTERM) stops it gracefully: no new requests, running jobs finish within the grace
period, what is left is handed back and runs at the next start; a second Ctrl-C exits at
once (the jobs it held run again once their leases expire).
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
from typing import Any

from taskyard.entrypoints import config

HELP = "API + scheduler + workers in one process (SQLite by default)"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "standalone",
        help=HELP,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_arguments(parser, config.STANDALONE_SETTINGS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from taskyard.domain.errors import StoreUnavailable
    from taskyard.entrypoints import process
    from taskyard.entrypoints.config import ConfigError
    from taskyard.entrypoints.logs import configure_logging, log_context
    from taskyard.entrypoints.standalone import DATABASE_URL_DEFAULT, Standalone

    settings = config.resolve(
        args, config.STANDALONE_SETTINGS, defaults={"database_url": DATABASE_URL_DEFAULT}
    )
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    app = process.load_app(settings.app, source=settings.source("app")) if settings.app else None
    try:
        system = Standalone(settings, app=app)
    except StoreUnavailable as exc:
        # PostgreSQL that does not answer yet is no reason to stop (its pool retries); a
        # store that cannot be opened at all here (a SQLite file in a missing folder) is.
        raise ConfigError(
            settings.source("database_url"), f"cannot open the store: {exc}"
        ) from None
    except OSError as exc:
        raise ConfigError(
            _listen_setting(settings, exc),
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}",
        ) from None
    log = logging.getLogger("taskyard.standalone")
    with log_context(worker_id=system.worker_id), process.stop_on_signals("standalone") as stop:
        system.start()
        store = process.redact_url(system.database_url)
        queues = ",".join(sorted(settings.queues)) if settings.queues else "*"
        log.info(
            "standalone started",
            extra={
                "url": system.url,
                "store": store,
                "coordinator": process.describe_coordinator(settings, system.coordinator),
                "queues": queues,
                "concurrency": settings.concurrency,
                "tasks": sorted(system.registry.names()),
            },
        )
        process.banner(
            f"taskyard standalone listening on {system.url} "
            f"(store {store}, worker {system.worker_id}, "
            f"concurrency {settings.concurrency}); Ctrl-C stops it"
            f"{process.url_hint(system.client_url)}"
        )
        stop.wait()
        stubborn = system.stop()
        process.close_quietly(app)
        if stubborn:
            log.warning(
                "handlers ignored the request to stop; exiting without them",
                extra={"handlers": stubborn},
            )
            process.exit_now(0)
        log.info("standalone exited")
    return 0


def _listen_setting(settings: config.Settings, exc: OSError) -> str:
    """The setting to blame when the socket cannot be bound: the host when it does not
    resolve or is not an address of this machine, else the port (in use, or privileged)."""
    host_problem = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
    attr = "host" if host_problem else "port"
    return settings.sources.get(attr, f"--{attr}")
