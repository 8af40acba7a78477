"""`taskyard workers`: the live workers (and, with --schedulers, the schedulers and which
one leads), through the REST API. Workers and schedulers register in the coordinator; an
API without one (no TASKYARD_REDIS_URL) lists none."""

from __future__ import annotations

import argparse
from typing import Any

from taskyard.entrypoints.apiclient import (
    ApiClient,
    add_client_arguments,
    as_json,
    run_client,
    schedulers_table,
    workers_table,
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "workers", help="live workers (and schedulers), through the API", description=__doc__
    )
    parser.add_argument(
        "--schedulers", action="store_true", help="list the schedulers and the leader instead"
    )
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def work(client: ApiClient) -> str:
        if args.schedulers:
            answer = client.call("GET", "/v1/schedulers")
            if args.json:
                return as_json(answer)
            found = answer.get("schedulers") or []
            return schedulers_table(found) if found else "no live schedulers"
        answer = client.call("GET", "/v1/workers")
        if args.json:
            return as_json(answer)
        workers = answer.get("workers") or []
        return workers_table(workers) if workers else "no live workers"

    return run_client(args, work)
