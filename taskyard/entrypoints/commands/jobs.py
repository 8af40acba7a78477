"""`taskyard jobs list|get|cancel|retry`: look at and manage jobs through the REST API.

    taskyard jobs list --state dead --queue billing --limit 20
    taskyard jobs get 0192...            # the job and its attempts
    taskyard jobs cancel 0192...
    taskyard jobs retry 0192...          # a dead or cancelled job runs again

    taskyard jobs retry --state dead --queue billing      # every job the filter matches
    taskyard jobs cancel --queue reports --task nightly --yes

Tables by default, the API's JSON with --json. A retry or cancel by filter first counts
the jobs it will touch and asks before it goes on (--yes does not ask; without a terminal
to ask on it refuses). Exit code 1 when the API refused (the problem is printed: no such
job, a state that does not allow it) or the question was answered no, 2 for usage errors.
"""

from __future__ import annotations

import argparse
from typing import Any

from taskyard.domain.management import BULK_STATES, BulkAction
from taskyard.entrypoints.apiclient import (
    STATES,
    ApiClient,
    add_client_arguments,
    as_json,
    attempts_table,
    confirm,
    job_path,
    job_view,
    jobs_table,
    queue_name,
    run_client,
    shown,
    task_name,
)
from taskyard.entrypoints.config import ConfigError
from taskyard.entrypoints.numbers import ascii_int


def _count(text: str) -> int:
    value = ascii_int(text, signed=False)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return value


VERBS: dict[BulkAction, tuple[str, str]] = {
    "retry": ("retry", "retried"),
    "cancel": ("cancel", "cancelled (or, running, asked to stop)"),
}
"""A bulk action's verb, and what its result line says was done."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "jobs",
        help="list, show, cancel or retry jobs through the API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="jobs, newest first")
    _add_filters(listing, list(STATES))
    listing.add_argument("--limit", type=_count, default=None, help="1 to 1000 (default 100)")
    listing.add_argument("--cursor", help="continue after the page that printed it")
    add_client_arguments(listing)
    listing.set_defaults(run=run_list)

    one = actions.add_parser("get", help="one job and its attempts")
    one.add_argument("job_id", metavar="ID")
    add_client_arguments(one)
    one.set_defaults(run=run_get)

    changes: list[tuple[BulkAction, str]] = [
        (
            "cancel",
            "cancel a job (a running one stops at its next heartbeat), or every unfinished "
            "job a filter matches",
        ),
        ("retry", "run a dead or cancelled job again, or every one a filter matches"),
    ]
    for action, helptext in changes:
        change = actions.add_parser(action, help=helptext, description=helptext)
        change.add_argument("job_id", metavar="ID", nargs="?", help="one job")
        states = [state for state in STATES if state in BULK_STATES[action]]
        _add_filters(change, states, bulk=True)
        change.add_argument(
            "--yes", "-y", action="store_true", help="do not ask before changing many jobs"
        )
        add_client_arguments(change)
        change.set_defaults(run=run_cancel if action == "cancel" else run_retry)


def _add_filters(parser: argparse.ArgumentParser, states: list[str], *, bulk: bool = False) -> None:
    """`--state`, `--queue`, `--task`: each repeatable (any of), together "and"."""
    every = " (every job they match)" if bulk else ""
    group = parser.add_argument_group(f"filters{every}: each repeatable (any of), together and")
    group.add_argument(
        "--state", action="append", default=[], choices=states, metavar="STATE",
        help=", ".join(states),
    )  # fmt: skip
    for flag, what in (("--queue", "a queue"), ("--task", "a task")):
        group.add_argument(flag, action="append", default=[], metavar="NAME", help=what)


def _checked_filters(args: argparse.Namespace) -> None:
    for name in args.queue:
        queue_name(name, source="--queue")
    for name in args.task:
        task_name(name, source="--task")


def run_list(args: argparse.Namespace) -> int:
    _checked_filters(args)
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


def _change(args: argparse.Namespace, action: BulkAction) -> int:
    filtered = bool(args.state or args.queue or args.task)
    if args.job_id is not None and filtered:
        raise ConfigError("ID", "give a job ID or --state/--queue/--task, not both")
    if args.job_id is None and not filtered:
        raise ConfigError("ID", "give a job ID, or --state/--queue/--task for every job they match")
    if filtered:
        return _bulk(args, action)

    def work(client: ApiClient) -> str:
        job = client.call("POST", job_path(args.job_id, f"/{action}"))
        return as_json(job) if args.json else job_view(job)

    return run_client(args, work)


def _bulk(args: argparse.Namespace, action: BulkAction) -> int:
    """Count what the filter matches (a dry run of the API), ask, then act."""
    _checked_filters(args)
    body: dict[str, list[str]] = {}
    for field, values in (("state", args.state), ("queue", args.queue), ("task", args.task)):
        if values:
            body[field] = sorted(set(values))
    verb, done = VERBS[action]
    matching = _described(body, action)
    path = f"/v1/jobs/{action}"

    def work(client: ApiClient) -> str:
        counted = client.call("POST", path, body=body, params=[("dry_run", "true")])
        count: int = counted["count"]
        if count == 0 and counted["exact"]:
            return as_json({"count": 0}) if args.json else f"no {matching}: nothing to {verb}"
        some = f"{count:,}" if counted["exact"] else f"at least {count:,}"
        jobs = "job" if count == 1 and counted["exact"] else "jobs"
        confirm(
            f"{verb.capitalize()} {some} {jobs} ({matching})? Counted just now: jobs that start "
            f"or stop matching before the {verb} runs change that number.",
            yes=args.yes,
            declined=f"no job was {done.split()[0]}",
        )
        answer = client.call("POST", path, body=body)
        if args.json:
            return as_json(answer)
        changed: int = answer["count"]
        return f"{done} {changed:,} job{'' if changed == 1 else 's'}"

    return run_client(args, work)


def _described(body: dict[str, list[str]], action: BulkAction) -> str:
    """The jobs a filter matches, in words: `dead jobs in queue mail of task report`."""
    default = "unfinished" if action == "cancel" else "dead or cancelled"
    words = f"{' or '.join(body['state']) if 'state' in body else default} jobs"
    if "queue" in body:
        words += f" in queue {' or '.join(body['queue'])}"
    if "task" in body:
        tasks = [task if task.isprintable() else shown(task) for task in body["task"]]
        words += f" of task {' or '.join(tasks)}"
    return words


def run_cancel(args: argparse.Namespace) -> int:
    return _change(args, "cancel")


def run_retry(args: argparse.Namespace) -> int:
    return _change(args, "retry")
