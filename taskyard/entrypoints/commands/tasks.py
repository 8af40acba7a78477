"""`taskyard tasks`: the task catalog, through the REST API: each task a worker published
when it started, with the defaults a submission that leaves a field out gets, the
arguments it is checked against, and which worker published it when (the last
publication wins). Built-in tasks (sleep, http, shell) are known everywhere and not listed."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from taskyard.entrypoints.apiclient import (
    ApiClient,
    add_client_arguments,
    as_json,
    run_client,
    short_time,
    table,
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "tasks",
        help="the task catalog (what the workers published), through the API",
        description=__doc__,
    )
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def work(client: ApiClient) -> str:
        answer = client.call("GET", "/v1/tasks")
        if args.json:
            return as_json(answer)
        tasks = answer.get("tasks") or []
        return tasks_table(tasks) if tasks else "no task published yet: start a worker with --app"

    return run_client(args, work)


def _arguments(task: Mapping[str, Any]) -> str:
    """`user_id, lang=` (a trailing `=` marks an optional one; `**` any other)."""
    names = [
        f"{p.get('name')}{'=' if p.get('kind') == 'optional' else ''}"
        for p in task.get("params") or ()
    ]
    if task.get("any_other"):
        names.append("**")
    return ", ".join(names) or "-"


def tasks_table(tasks: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["TASK", "QUEUE", "PRIORITY", "ATTEMPTS", "TIMEOUT", "ARGS", "PUBLISHED", "BY"],
        [
            [
                t.get("name"),
                t.get("queue"),
                t.get("priority"),
                t.get("max_attempts"),
                "-" if t.get("timeout_seconds") is None else f"{t['timeout_seconds']:g}s",
                _arguments(t),
                short_time(t.get("published_at")),
                t.get("published_by") or "-",
            ]
            for t in tasks
        ],
    )
