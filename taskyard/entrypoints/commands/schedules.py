"""`taskyard schedules`: the schedules, through the REST API.

taskyard schedules                 every schedule, a table (--json: the API's JSON)
taskyard schedules show NAME       one schedule with its recent fires
taskyard schedules pause NAME      no fires until resumed
taskyard schedules resume NAME     fires again from the next fire time after now
taskyard schedules delete NAME     the schedule goes; the jobs it fired stay
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from taskyard.entrypoints.apiclient import (
    ApiClient,
    add_client_arguments,
    as_json,
    run_client,
    short_time,
    table,
)

ACTIONS = ("list", "show", "pause", "resume", "delete")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "schedules",
        help="list, show, pause, resume or delete schedules, through the API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", nargs="?", choices=ACTIONS, default="list")
    parser.add_argument("name", nargs="?", help="the schedule (all but list)")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


def _path(name: str, suffix: str = "") -> str:
    return f"/v1/schedules/{quote(name, safe='')}{suffix}"


def run(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        print(f"taskyard schedules {args.action}: name the schedule", file=sys.stderr)
        return 2

    def work(client: ApiClient) -> str:
        if args.action == "list":
            answer = client.call("GET", "/v1/schedules")
            schedules = answer.get("schedules") or []
            if args.json:
                return as_json(answer)
            return schedules_table(schedules) if schedules else "no schedule"
        if args.action == "show":
            one = client.call("GET", _path(args.name))
        elif args.action == "delete":
            one = client.call("DELETE", _path(args.name))
        else:
            one = client.call("POST", _path(args.name, f"/{args.action}"))
        return as_json(one) if args.json else shown(one)

    return run_client(args, work)


def _timing(s: Mapping[str, Any]) -> str:
    if s.get("cron") is not None:
        return f"cron {s['cron']} ({s.get('timezone')})"
    return f"every {s.get('every_seconds'):g}s"


def schedules_table(schedules: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["SCHEDULE", "TASK", "WHEN", "NEXT", "LAST", "PAUSED", "FIRED", "MISSED", "SKIPPED"],
        [
            [
                s.get("name"),
                s.get("task"),
                _timing(s),
                "-" if s.get("paused") else short_time(s.get("next_fire_at")),
                short_time(s.get("last_fire_at")) if s.get("last_fire_at") else "-",
                "yes" if s.get("paused") else "no",
                (s.get("fires") or {}).get("enqueued", 0),
                (s.get("fires") or {}).get("missed", 0),
                (s.get("fires") or {}).get("overlap_skipped", 0),
            ]
            for s in schedules
        ],
    )


def shown(s: Mapping[str, Any]) -> str:
    """One schedule: its table row, its policies, then its recent fires."""
    lines = [
        schedules_table([s]),
        "",
        f"catch-up {s.get('catch_up')} within {s.get('catch_up_window_seconds'):g}s, "
        f"overlap {s.get('overlap')}, queue {s.get('queue')}",
    ]
    fires = s.get("recent_fires") or []
    if fires:
        lines += [
            "",
            table(
                ["FIRE", "OUTCOME", "JOB"],
                [[f.get("fire_at"), f.get("outcome"), f.get("job_id") or "-"] for f in fires],
            ),
        ]
    return "\n".join(lines)
