"""The `taskyard` command. Exit codes: 0 done, 1 the work failed or the API refused,
2 usage or configuration error."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from taskyard import __version__
from taskyard.entrypoints.config import ConfigError

COMMANDS: tuple[str, ...] = (
    # Each module adds one subcommand (see taskyard/entrypoints/commands/__init__.py).
    "standalone",
    "api",
    "worker",
    "scheduler",
    "bench",
    "migrate",
    "submit",
    "jobs",
    "queues",
    "workers",
    "tasks",
    "schedules",
    "simulate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskyard",
        description="A fault-tolerant distributed job scheduler.",
    )
    parser.add_argument("--version", action="version", version=f"taskyard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"taskyard.entrypoints.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = run(args)
    except ConfigError as exc:
        print(f"taskyard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
