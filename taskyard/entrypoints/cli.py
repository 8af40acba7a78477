"""The `taskyard` command. Exit codes: 0 done, 1 the work failed or the API refused,
2 usage or configuration error."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from taskyard import __version__
from taskyard.entrypoints.bootstrap import ConfigError

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


def run() -> NoReturn:
    """The `taskyard` console script: `main()`, then the end of the process.

    It ends as the interpreter's own exit would (threads that are not daemons are waited
    for, atexit handlers run, which flushes the logs, and stdout and stderr are flushed),
    but without the interpreter's teardown of every module afterwards: with the ~360
    modules a command loads, that teardown took 50-70 ms of CPU on a quiet machine and
    0.15-0.4 s on a busy one, all of it after a process had logged that it exited."""
    try:
        code = main()
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        if exc.code is not None and not isinstance(exc.code, int):
            raise
        code = exc.code or 0
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None:  # not CPython: the ordinary exit
        sys.exit(code)
    shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
