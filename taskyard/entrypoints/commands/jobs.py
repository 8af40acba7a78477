"""`taskyard jobs list|get|cancel|retry`: look at and manage jobs through the REST API.

    taskyard jobs list --state dead --queue billing --limit 20
    taskyard jobs get 0192...            # the job and its attempts
    taskyard jobs cancel 0192...
    taskyard jobs retry 0192...          # a dead or cancelled job runs again

Tables by default, the API's JSON with --json. Exit code 1 when the API refused (the
problem is printed: no such job, a state that does not allow it), 2 for usage errors.
"""

from __future__ import annotations

import argparse
from typing import Any

from taskyard.entrypoints.apiclient import (
    STATES,
    ApiClient,
    add_client_arguments,
    as_json,
    attempts_table,
    job_path,
    job_view,
    jobs_table,
    run_client,
)
from taskyard.entrypoints.numbers import ascii_int


def _count(text: str) -> int:
    value = ascii_int(text, signed=False)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return value


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "jobs",
        help="list, show, cancel or retry jobs through the API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument(
        "--state", action="append", default=[], choices=STATES, help="repeatable: any of"
    )
    listing.add_argument("--queue", action="append", default=[], help="repeatable: any of")
    listing.add_argument("--task", action="append", default=[], help="repeatable: any of")
    listing.add_argument("--limit", type=_count, default=None, help="1 to 1000 (default 100)")
    listing.add_argument("--cursor", help="continue after the page that printed it")
    add_client_arguments(listing)
    listing.set_defaults(run=run_list)

    for action, helptext, handler in (
        ("get", "one job and its attempts", run_get),
        ("cancel", "cancel a job (a running one stops at its next heartbeat)", run_cancel),
        ("retry", "run a dead or cancelled job again", run_retry),
    ):
        one = actions.add_parser(action, help=helptext)
        one.add_argument("job_id", metavar="ID")
        add_client_arguments(one)
        one.set_defaults(run=handler)


def run_list(args: argparse.Namespace) -> int:
    params: list[tuple[str, str]] = []
    params += [("state", s) for s in args.state]
    params += [("queue", q) for q in args.queue]
    params += [("task", t) for t in args.task]
    if args.limit is not None:
        params.append(("limit", str(args.limit)))
    if args.cursor:
        params.append(("cursor", args.cursor))

    def work(client: ApiClient) -> str:
        page = client.call("GET", "/v1/jobs", params=params)
        if args.json:
            return as_json(page)
        jobs = page.get("jobs") or []
        out = jobs_table(jobs) if jobs else "no jobs"
        if page.get("next_cursor"):
            out += f"\nmore: taskyard jobs list --cursor {page['next_cursor']} ..."
        return out

    return run_client(args, work)


def run_get(args: argparse.Namespace) -> int:
    def work(client: ApiClient) -> str:
        job = client.call("GET", job_path(args.job_id))
        if args.json:
            return as_json(job)
        attempts = client.call("GET", job_path(args.job_id, "/attempts")).get("attempts") or []
        out = job_view(job)
        if attempts:
            out += "\n\n" + attempts_table(attempts)
        return out

    return run_client(args, work)


def _change(args: argparse.Namespace, verb: str) -> int:
    def work(client: ApiClient) -> str:
        job = client.call("POST", job_path(args.job_id, f"/{verb}"))
        return as_json(job) if args.json else job_view(job)

    return run_client(args, work)


def run_cancel(args: argparse.Namespace) -> int:
    return _change(args, "cancel")


def run_retry(args: argparse.Namespace) -> int:
    return _change(args, "retry")
