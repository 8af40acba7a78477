"""`taskyard queues`: every queue with jobs (or a pause flag), its counts by state and how
long its oldest due job has waited, through the REST API.

    taskyard queues                  # the table
    taskyard queues pause reports    # workers claim nothing more from it (kept in the store)
    taskyard queues resume reports   # claims go on, and idle workers are woken

Pausing stops new claims only: jobs already running finish. Exit code 1 when the API
refused, 2 for usage errors (a malformed queue name among them).
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from taskyard.entrypoints.apiclient import (
    ApiClient,
    add_client_arguments,
    as_json,
    queue_name,
    queues_table,
    run_client,
)
from taskyard.entrypoints.config import ConfigError

ACTIONS = ("pause", "resume")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "queues",
        help="queues and their jobs by state; pause or resume one; through the API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Positionals rather than sub-commands, so that --url and the other options may come
    # before or after them.
    parser.add_argument(
        "action", nargs="?", choices=ACTIONS, metavar="pause|resume", help="change a queue"
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the queue to pause or resume")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.action is not None:
        return _pause_or_resume(args)
    if args.name is not None:
        raise ConfigError("NAME", "comes after pause or resume")

    def work(client: ApiClient) -> str:
        answer = client.call("GET", "/v1/queues")
        if args.json:
            return as_json(answer)
        queues = answer.get("queues") or []
        return queues_table(queues) if queues else "no queues yet"

    return run_client(args, work)


def _pause_or_resume(args: argparse.Namespace) -> int:
    if args.name is None:
        raise ConfigError(
            "NAME", f"{args.action} which queue? (taskyard queues {args.action} NAME)"
        )
    name = queue_name(args.name, source="NAME")

    def work(client: ApiClient) -> str:
        answer = client.call("POST", f"/v1/queues/{quote(name, safe='')}/{args.action}")
        if args.json:
            return as_json(answer)
        if answer.get("paused"):
            return (
                f"paused queue {name}: workers claim nothing more from it (running jobs "
                f"finish) until `taskyard queues resume {name}`"
            )
        return f"resumed queue {name}"

    return run_client(args, work)
