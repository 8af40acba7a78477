"""`taskyard worker`: a pool of handler threads that claims and runs jobs.

    taskyard worker --db postgresql://... --redis redis://... --queues emails,reports \\
        --concurrency 8 --app myproject.jobs:app

Plain handlers run on `--concurrency` threads, or with `--pool process` each in a child
process that is killed at its timeout or on cancel; `async def` handlers run on one event
loop, `--async-concurrency` (100) at once.

It prints its id (`host:pid:random`, the name on its leases and attempts) and runs until
SIGTERM or SIGINT: then it claims nothing more, lets running jobs finish within the grace
period, hands back what is left so it runs elsewhere at once, and exits 0. A second
signal exits at once; the leases it held expire and those jobs run again. It never exits
because PostgreSQL or Redis cannot be reached: it retries with backoff meanwhile.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from taskyard.entrypoints import config

HELP = "run jobs: a pool of handler threads"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "worker",
        help=HELP,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_arguments(parser, config.WORKER_SETTINGS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from taskyard.adapters.processes import ChildFailed
    from taskyard.entrypoints import process
    from taskyard.entrypoints.bootstrap import bootstrap
    from taskyard.entrypoints.logs import configure_logging, log_context

    settings = config.resolve(args, config.WORKER_SETTINGS)
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    app = process.load_app(settings.app, source=settings.source("app")) if settings.app else None
    settings = process.with_app_settings(settings, app)
    url = process.required_store_url(settings, command="worker")
    system = bootstrap(settings)
    registry = system.task_registry(app.tasks if app is not None else None)
    coordinator = system.coordinator
    worker_id = process.process_id()
    runtime = system.worker_runtime(
        registry, worker_id=worker_id, hooks=app.hooks if app is not None else None
    )
    log = logging.getLogger("taskyard.worker")
    queues = ",".join(sorted(settings.queues)) if settings.queues else "*"
    with log_context(worker_id=worker_id), process.stop_on_signals("worker") as stop:
        try:
            runtime.start()
        except ChildFailed as exc:  # --pool process: a child could not import the app
            process.close_quietly(system, app)
            raise config.ConfigError(settings.source("pool"), str(exc)) from None
        log.info(
            "worker started",
            extra={
                "queues": queues,
                "concurrency": settings.concurrency,
                "pool": settings.pool,
                "async_concurrency": settings.async_concurrency,
                "tasks": sorted(registry.names()),
                "coordinator": process.describe_coordinator(settings, coordinator),
            },
        )
        process.banner(
            f"taskyard worker {worker_id}: queues {queues}, concurrency {settings.concurrency}, "
            f"store {process.redact_url(url)}, tasks {', '.join(sorted(registry.names()))}"
        )
        stop.wait()
        stubborn = process.stop_worker(runtime, grace_s=settings.grace_period_s)
        process.close_quietly(system, app)
        if stubborn:
            log.warning(
                "handlers ignored the request to stop; exiting without them",
                extra={"handlers": stubborn},
            )
            process.exit_now(0)
        log.info("worker exited")
    return 0
