"""`taskyard queues`: every queue with jobs (or a pause flag), its counts by state and how
long its oldest due job has waited, through the REST API."""

from __future__ import annotations

import argparse
from typing import Any

from taskyard.entrypoints.apiclient import (
    ApiClient,
    add_client_arguments,
    as_json,
    queues_table,
    run_client,
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "queues", help="queues and their jobs by state, through the API", description=__doc__
    )
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def work(client: ApiClient) -> str:
        answer = client.call("GET", "/v1/queues")
        if args.json:
            return as_json(answer)
        queues = answer.get("queues") or []
        return queues_table(queues) if queues else "no queues yet"

    return run_client(args, work)
