"""`taskyard submit TASK`: submit one job through the REST API.

    taskyard submit sleep --args '{"seconds": 2}'
    taskyard submit billing.send_invoice --args '{"invoice_id": 42}' --queue billing \\
        --priority 5 --delay 60 --max-attempts 5 --idempotency-key invoice-42 \\
        --concurrency-key customer-7
    taskyard submit report --depends-on 0192... --depends-on 0192...

A field left out gets the task's default as its workers published it (`taskyard tasks`),
and the args are checked against the task's arguments. Prints the job (or the API's JSON
with --json), and on standard error any warning (a task no worker has published). Exit
code 0 when the API accepted it (201, or 200 for an idempotent replay), 1 when it refused
(the problem is printed), 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from taskyard.entrypoints.apiclient import (
    ApiClient,
    add_client_arguments,
    as_json,
    job_view,
    run_client,
)
from taskyard.entrypoints.config import ConfigError
from taskyard.entrypoints.numbers import ascii_float


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "submit",
        help="submit a job through the API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", metavar="TASK", help="the task name (sleep, http, shell or yours)")
    parser.add_argument("--args", metavar="JSON", help="the job's arguments, a JSON object")
    parser.add_argument("--queue", metavar="NAME", help="queue (default: the task's)")
    parser.add_argument("--priority", type=int, metavar="N", help="-100 to 100, higher first")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--delay", type=_seconds, metavar="SECONDS", help="run no sooner than this")
    when.add_argument("--run-at", metavar="RFC3339", help="run no sooner than this time")
    parser.add_argument(
        "--max-attempts", type=int, metavar="N", help="1 to 1000 (default: the task's)"
    )
    parser.add_argument("--idempotency-key", metavar="KEY", help="submit at most once per key")
    parser.add_argument(
        "--concurrency-key",
        metavar="KEY",
        help="what the queue's per-key limits count by (a tenant, an account)",
    )
    parser.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="ID",
        help="a job that must succeed first (repeatable)",
    )
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def _seconds(text: str) -> float:
    """A finite number of seconds in ASCII (JSON has no NaN or infinity to send)."""
    value = ascii_float(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def submission(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"task": args.task}
    if args.args is not None:
        try:
            body["args"] = json.loads(args.args, parse_constant=_no_constant)
        except ValueError as exc:
            raise ConfigError("--args", f"not valid JSON: {exc}") from None
    options = {
        "queue": args.queue,
        "priority": args.priority,
        "delay_seconds": args.delay,
        "run_at": args.run_at,
        "max_attempts": args.max_attempts,
        "idempotency_key": args.idempotency_key,
        "concurrency_key": args.concurrency_key,
    }
    body.update({name: value for name, value in options.items() if value is not None})
    if args.depends_on:
        body["depends_on"] = list(args.depends_on)
    return body


def run(args: argparse.Namespace) -> int:
    body = submission(args)

    def work(client: ApiClient) -> str:
        job = client.call("POST", "/v1/jobs", body=body)
        for warning in job.get("warnings") or ():
            print(
                f"taskyard: warning: {warning.get('field')}: {warning.get('message')}",
                file=sys.stderr,
            )
        return as_json(job) if args.json else job_view(job)

    return run_client(args, work)
