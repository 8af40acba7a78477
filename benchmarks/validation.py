"""How long validating a submission takes: `parse_submission` per call, and a batch.

    python benchmarks/validation.py                  # 5 rounds of 20,000 calls each
    python benchmarks/validation.py --calls 50000 --rounds 7

It sits on the enqueue hot path (every `POST /v1/jobs`, every `App.enqueue`), so it is
measured in process, without a store: a minimal submission (what most callers send), a
full one (every field), one with the built-in `sleep` task's args checked, and a batch of
100 minimal ones through `parse_batch`. It prints the median and the best round in
microseconds per submission. Nothing is timed in the tests; run it before and after a
change to validation, on the same box, and compare.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable
from typing import Any

from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.submission import parse_batch, parse_submission

MINIMAL = {"task": "report", "args": {"customer": 42}}
FULL = {
    "task": "report",
    "args": {"customer": 42, "items": [1, 2, 3], "note": "x" * 100},
    "queue": "reports",
    "priority": 5,
    "delay_seconds": 30,
    "max_attempts": 5,
    "backoff": {"base_seconds": 0.5, "factor": 3, "max_seconds": 60, "jitter": "equal"},
    "timeout_seconds": 120,
    "idempotency_key": "invoice-42",
    "depends_on": ["0190c2d4-1111-7000-8000-000000000001"],
}
SLEEP = {"task": "sleep", "args": {"seconds": 0.1}}
BATCH = {"jobs": [MINIMAL] * 100}


def cases() -> dict[str, tuple[Callable[[], Any], int]]:
    """name: (one call, how many submissions it validates)."""
    check = BuiltinPolicy().check
    return {
        "minimal": (lambda: parse_submission(MINIMAL, check_args=check), 1),
        "full": (lambda: parse_submission(FULL, check_args=check), 1),
        "sleep args": (lambda: parse_submission(SLEEP, check_args=check), 1),
        "batch of 100": (lambda: parse_batch(BATCH, check_args=check), 100),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="submissions per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    assert 1 <= args.calls <= 10_000_000 and 1 <= args.rounds <= 100
    print(f"{'case':<14} {'median us':>10} {'best us':>10}   ({args.rounds} rounds)")
    for name, (call, per_call) in cases().items():
        number = max(1, args.calls // per_call)
        rounds = timeit.repeat(call, number=number, repeat=args.rounds)
        each = [seconds / (number * per_call) * 1e6 for seconds in rounds]
        print(f"{name:<14} {statistics.median(each):>10.2f} {min(each):>10.2f}")


if __name__ == "__main__":
    main()
