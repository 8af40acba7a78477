"""`taskyard queues`: every queue with jobs, settings or a pause flag, its counts by state,
its limits and what it uses of them now; show or change one queue's settings; pause or
resume it; through the REST API.

    taskyard queues                  # the table
    taskyard queues show reports     # one queue's settings (limits, weight, retention)
    taskyard queues set reports --concurrency-limit 2 --rate-limit 100/60
    taskyard queues set reports --key-concurrency-limit 1 --weight 3 --retain succeeded=3600
    taskyard queues set reports --rate-limit none        # that limit goes; the rest stay
    taskyard queues set reports --reset                  # no settings at all
    taskyard queues pause reports    # workers claim nothing more from it (kept in the store)
    taskyard queues resume reports   # claims go on, and idle workers are woken

`set` changes only the settings it names: it reads the queue's settings, changes those,
and writes the whole back (`PUT /v1/queues/NAME`); with `--reset` it starts from none
(no limit, weight 1, the default retention). Two people changing one queue at the same
moment may overwrite each other's change. The values:

    --concurrency-limit N|none       at most N of the queue's jobs running at once
    --key-concurrency-limit N|none   at most N running at once per concurrency key
    --rate-limit COUNT/SECONDS|none  at most COUNT starts in any SECONDS (100/60, 5/0.5)
    --key-rate-limit COUNT/SECONDS|none   the same per concurrency key
    --weight N                       the queue's share when several have due jobs (1-1000)
    --retain STATE=SECONDS|none      keep the queue's finished jobs of STATE (succeeded,
                                     dead, cancelled) this long (0: forever; none: the
                                     scheduler's setting); repeatable

Pausing stops new claims only: jobs already running finish. Exit code 1 when the API
refused (a limit out of range, named), 2 for usage errors (a malformed queue name or
value among them).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
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
from taskyard.entrypoints.numbers import ascii_float, ascii_int

ACTIONS = ("show", "set", "pause", "resume")
NONE = "none"
FINISHED = ("succeeded", "dead", "cancelled")


class _Unset:
    def __repr__(self) -> str:
        return "unset"


UNSET: Any = _Unset()
"""A flag that was not given (`none` is given, and means no limit)."""

SETTINGS = (
    ("--concurrency-limit", "N|none", "running at once"),
    ("--key-concurrency-limit", "N|none", "running at once per concurrency key"),
    ("--rate-limit", "COUNT/SECONDS|none", "starts in any period of SECONDS"),
    ("--key-rate-limit", "COUNT/SECONDS|none", "the same per concurrency key"),
    ("--weight", "N", "the queue's share between queues (1 to 1000)"),
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "queues",
        help="queues: their jobs by state, limits and usage; show, set, pause or resume one; "
        "through the API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Positionals rather than sub-commands, so that --url and the other options may come
    # before or after them.
    parser.add_argument(
        "action", nargs="?", choices=ACTIONS, metavar="show|set|pause|resume", help="one queue"
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the queue")
    group = parser.add_argument_group("set's values (the others stay as they are)")
    kinds = {"N|none": _limit, "COUNT/SECONDS|none": _rate, "N": _whole}
    for flag, metavar, text in SETTINGS:
        group.add_argument(flag, type=kinds[metavar], default=UNSET, metavar=metavar, help=text)
    group.add_argument(
        "--retain",
        type=_retain,
        action="append",
        default=[],
        metavar="STATE=SECONDS|none",
        help="keep finished jobs of STATE this long (0: forever; none: the scheduler's "
        "setting); repeatable",
    )
    group.add_argument("--reset", action="store_true", help="start from no settings at all")
    add_client_arguments(parser)
    parser.set_defaults(run=run)


# --- the values a person types ---------------------------------------------------------------


def _whole(text: str) -> int:
    value = ascii_int(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number")
    return value


def _limit(text: str) -> int | None:
    return None if text == NONE else _whole(text)


def _rate(text: str) -> dict[str, Any] | None:
    """`COUNT/SECONDS` (`100/60`: 100 starts in any 60 s), or `none`."""
    if text == NONE:
        return None
    count_text, slash, seconds_text = text.partition("/")
    count, seconds = ascii_int(count_text), ascii_float(seconds_text)
    if not slash or count is None or seconds is None:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not COUNT/SECONDS (100/60: 100 starts in any 60 seconds) or none"
        )
    return {"count": count, "period_seconds": seconds}


def _retain(text: str) -> tuple[str, int | None]:
    """`STATE=SECONDS` or `STATE=none`."""
    state, equals, seconds = text.partition("=")
    if not equals or state not in FINISHED:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not STATE=SECONDS with STATE one of {', '.join(FINISHED)}"
        )
    return state, _limit(seconds)


def _attr(flag: str) -> str:
    return flag[2:].replace("-", "_")


def given(args: argparse.Namespace) -> list[str]:
    """The flags of `set` on the command line, in the order of `SETTINGS`."""
    out = [flag for flag, _, _ in SETTINGS if getattr(args, _attr(flag)) is not UNSET]
    return out + (["--retain"] if args.retain else []) + (["--reset"] if args.reset else [])


def changed(current: Mapping[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The settings to PUT: `current` (none with --reset) changed by the flags given."""
    body = {} if args.reset else {k: v for k, v in current.items() if k != "name"}
    for flag, _, _ in SETTINGS:
        value = getattr(args, _attr(flag))
        if value is not UNSET:
            body[_attr(flag)] = value
    if args.retain:
        retention = dict(body.get("retention_seconds") or {})
        retention.update(args.retain)
        kept = {state: seconds for state, seconds in retention.items() if seconds is not None}
        body["retention_seconds"] = kept or None
    return body


# --- the command ---------------------------------------------------------------------------


def _path(name: str, suffix: str = "") -> str:
    return f"/v1/queues/{quote(name, safe='')}{suffix}"


def run(args: argparse.Namespace) -> int:
    flags = given(args)
    if args.action != "set" and flags:
        raise ConfigError(flags[0], "comes with set (taskyard queues set NAME ...)")
    if args.action is None:
        if args.name is not None:
            raise ConfigError("NAME", "comes after show, set, pause or resume")
        return _listing(args)
    if args.name is None:
        raise ConfigError(
            "NAME", f"{args.action} which queue? (taskyard queues {args.action} NAME)"
        )
    name = queue_name(args.name, source="NAME")
    if args.action in ("pause", "resume"):
        return _pause_or_resume(args, name)
    if args.action == "set" and not flags:
        raise ConfigError("set", "name at least one setting to change (or --reset)")

    def work(client: ApiClient) -> str:
        one = client.call("GET", _path(name))
        if args.action == "set":
            one = client.call("PUT", _path(name), body=changed(one, args))
        return as_json(one) if args.json else settings_view(one)

    return run_client(args, work)


def _listing(args: argparse.Namespace) -> int:
    def work(client: ApiClient) -> str:
        answer = client.call("GET", "/v1/queues")
        if args.json:
            return as_json(answer)
        queues = answer.get("queues") or []
        return queues_table(queues) if queues else "no queues yet"

    return run_client(args, work)


def _pause_or_resume(args: argparse.Namespace, name: str) -> int:
    def work(client: ApiClient) -> str:
        answer = client.call("POST", _path(name, f"/{args.action}"))
        if args.json:
            return as_json(answer)
        if answer.get("paused"):
            return (
                f"paused queue {name}: workers claim nothing more from it (running jobs "
                f"finish) until `taskyard queues resume {name}`"
            )
        return f"resumed queue {name}"

    return run_client(args, work)


# --- printing ------------------------------------------------------------------------------


def rate_text(rate: Mapping[str, Any] | None) -> str:
    """`100/60s`, or `-` for none."""
    if not rate:
        return "-"
    return f"{rate.get('count')}/{rate.get('period_seconds'):g}s"


def limit_text(value: Any) -> str:
    return "-" if value is None else str(value)


def settings_view(one: Mapping[str, Any]) -> str:
    """A queue's settings as `field  value` lines (`-`: no limit)."""
    retention = one.get("retention_seconds") or {}
    rows: list[tuple[str, str]] = [
        ("queue", str(one.get("name"))),
        ("concurrency_limit", limit_text(one.get("concurrency_limit"))),
        ("key_concurrency_limit", limit_text(one.get("key_concurrency_limit"))),
        ("rate_limit", rate_text(one.get("rate_limit"))),
        ("key_rate_limit", rate_text(one.get("key_rate_limit"))),
        ("weight", str(one.get("weight"))),
    ]
    for state in FINISHED:
        seconds = retention.get(state)
        shown = "default" if seconds is None else ("forever" if seconds == 0 else f"{seconds}s")
        rows.append((f"retain {state}", shown))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
