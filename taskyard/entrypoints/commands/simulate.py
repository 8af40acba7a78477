"""`taskyard simulate`: run the deterministic fault-injection simulator.

    taskyard simulate --seed 7 [--trace] [--profile default]
    taskyard simulate --seeds 1..500 [--jobs 2] [--profile default]

One seed prints a summary (and with --trace the whole trace); the same seed prints the
same bytes every time. A sweep shows its progress on a terminal, prints every failing
seed with the command that replays it, and exits 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taskyard.entrypoints.config import ConfigError
from taskyard.entrypoints.numbers import ascii_int


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "simulate",
        help="run the fault-injection simulator on one seed or a range of seeds",
        description="Run the deterministic simulator: a world of workers, schedulers and "
        "clients under injected faults, checked against every guarantee.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run one seed")
    which.add_argument("--seeds", metavar="A..B", help="run seeds A to B inclusive")
    parser.add_argument("--profile", default="default", help="fault profile (default: default)")
    parser.add_argument("--trace", action="store_true", help="print the readable event trace")
    parser.add_argument("--jobs", type=int, default=1, help="processes for a sweep (default 1)")
    parser.add_argument(
        "--shrink",
        action="store_true",
        help="when the seed fails, shrink its fault plan and workload to a small failing one",
    )
    parser.set_defaults(run=run)


def commit_id() -> str:
    """The commit the code was built from: $TASKYARD_COMMIT, else git, else 'unknown'."""
    given = os.environ.get("TASKYARD_COMMIT")
    if given:
        return given
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def parse_range(text: str) -> range:
    first, sep, last = text.partition("..")
    low, high = ascii_int(first), ascii_int(last)
    if low is None or high is None:
        raise ConfigError("--seeds", f"expected A..B with integers, got {text!r}")
    if not sep or high < low:
        raise ConfigError("--seeds", f"expected A..B with A <= B, got {text!r}")
    return range(low, high + 1)


def run(args: argparse.Namespace) -> int:
    from taskyard.simulation.profiles import PROFILES

    if args.profile not in PROFILES:
        raise ConfigError(
            "--profile", f"unknown profile {args.profile!r} (one of {', '.join(sorted(PROFILES))})"
        )
    if args.jobs < 1:
        raise ConfigError("--jobs", "must be at least 1")
    if args.seed is not None:
        return _one(args.seed, args.profile, trace=args.trace, shrink=args.shrink)
    return _sweep(parse_range(args.seeds), args.profile, jobs=args.jobs)


def _one(seed: int, profile: str, *, trace: bool, shrink: bool) -> int:
    from taskyard.simulation.profiles import draw
    from taskyard.simulation.run import simulate, summary

    print(f"SEED={seed} PROFILE={profile} COMMIT={commit_id()}", flush=True)
    result = simulate(seed, profile)
    lines = summary(result, commit="", with_trace=trace)[1:]
    sys.stdout.write("\n".join(lines) + "\n")
    if result.ok:
        return 0
    if shrink:
        from taskyard.simulation.shrink import describe
        from taskyard.simulation.shrink import shrink as shrink_run

        shrunk = shrink_run(draw(seed, profile))
        print("--- shrunk ---")
        print("\n".join(describe(shrunk)))
        if trace:
            print("--- trace of the shrunk run ---")
            print("\n".join(shrunk.result.trace))
    return 1


def _sweep(seeds: range, profile: str, *, jobs: int) -> int:
    from taskyard.simulation.run import EXERCISED, replay_command
    from taskyard.simulation.sweep import FAULT_NAMES, SeedOutcome, Tally, sweep

    print(
        f"SEEDS={seeds.start}..{seeds.stop - 1} PROFILE={profile} COMMIT={commit_id()} JOBS={jobs}",
        flush=True,
    )
    live = sys.stderr.isatty()
    started = time.monotonic()
    done = 0
    failed = 0

    def progress(batch: Sequence[SeedOutcome]) -> None:
        nonlocal done, failed
        done += len(batch)
        for outcome in batch:
            if not outcome.ok:
                failed += 1
                if live:
                    sys.stderr.write("\r\x1b[K")
                print(f"FAIL seed {outcome.seed}: {', '.join(outcome.broken)}", flush=True)
        if live:
            rate = done / max(time.monotonic() - started, 1e-9)
            sys.stderr.write(f"\r{done}/{len(seeds)} seeds, {failed} failed, {rate:.1f} seeds/s")
            sys.stderr.flush()

    outcomes = sweep(list(seeds), profile, jobs=jobs, on_done=progress)
    elapsed_s = time.monotonic() - started
    if live:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
    bad = [outcome for outcome in outcomes if not outcome.ok]
    print(
        f"{len(outcomes)} seeds, {len(bad)} failed, {elapsed_s:.1f} s, "
        f"{len(outcomes) / max(elapsed_s, 1e-9):.1f} seeds/s ({jobs} process"
        f"{'es' if jobs > 1 else ''})"
    )
    print("faults fired:")
    print("\n".join(Tally.of(o.faults for o in outcomes).lines(FAULT_NAMES)))
    print("paths exercised:")
    print("\n".join(Tally.of(o.exercised for o in outcomes).lines(EXERCISED)))
    for outcome in bad:
        print(
            f"failed seed {outcome.seed} ({', '.join(outcome.broken)}): "
            f"{replay_command(outcome.seed, profile)}"
        )
    return 1 if bad else 0
