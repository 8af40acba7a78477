"""`taskyard scheduler`: promote due jobs, reap expired leases, resolve dependencies.

    taskyard scheduler --db postgresql://... --redis redis://...

Run two or more: they elect one leader through the coordinator (Redis), and a standby
takes over about one leader TTL after the leader dies. Every change a scheduler makes is a
compare-and-set in the store, so two acting at once (Redis unreachable, say) are harmless.
SIGTERM or SIGINT stops it after its current pass and gives the leadership up, so a
standby takes over at once; a second signal exits at once. Without a coordinator the
scheduler simply acts (one is enough then). It never exits because PostgreSQL or Redis
cannot be reached: it retries with backoff meanwhile.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from taskyard.entrypoints import config

HELP = "promote due jobs, reap lost leases, resolve dependencies (one leader at a time)"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "scheduler",
        help=HELP,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_arguments(parser, config.SCHEDULER_SETTINGS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from taskyard.entrypoints import process
    from taskyard.entrypoints.bootstrap import bootstrap
    from taskyard.entrypoints.logs import configure_logging, log_context

    settings = config.resolve(args, config.SCHEDULER_SETTINGS)
    url = process.required_store_url(settings, command="scheduler")
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    system = bootstrap(settings)
    coordinator = system.coordinator
    scheduler_id = process.process_id()
    runtime = system.scheduler_runtime(scheduler_id=scheduler_id)
    log = logging.getLogger("taskyard.scheduler")
    with log_context(scheduler_id=scheduler_id), process.stop_on_signals("scheduler") as stop:
        runtime.start()
        log.info(
            "scheduler started",
            extra={
                "leader_ttl_s": settings.leader_ttl_s,
                "retention_s": {
                    state.value: seconds for state, seconds in settings.retention.periods().items()
                },
                "coordinator": process.describe_coordinator(settings, coordinator),
            },
        )
        process.banner(
            f"taskyard scheduler {scheduler_id}: leader TTL {settings.leader_ttl_s:g} s, "
            f"store {process.redact_url(url)}"
        )
        stop.wait()
        runtime.stop()
        process.close_quietly(system)
        log.info("scheduler exited")
    return 0
