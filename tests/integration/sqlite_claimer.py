"""A claimer in a process of its own on a SQLite file: `python -m
tests.integration.sqlite_claimer PATH`. Prints `ready`, waits for a line on stdin, then
claims and reports success in batches until nothing is left, printing the ids of each
batch as soon as it is committed, then `done`."""

from __future__ import annotations

import os
import sys

from taskyard.adapters.clock import SystemClock
from taskyard.adapters.sqlite import SqliteJobStore
from taskyard.domain.ports import ClaimRequest
from taskyard.domain.transitions import Report, ReportKind


def main(path: str) -> int:
    worker = f"proc-{os.getpid()}"
    with SqliteJobStore(path, clock=SystemClock()) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        while True:
            jobs = store.claim(ClaimRequest(worker=worker, limit=5, lease_ttl_s=300))
            if not jobs:
                break
            store.report([Report(ref=j.ref(), kind=ReportKind.SUCCEEDED) for j in jobs])
            print("\n".join(str(job.id) for job in jobs), flush=True)
        print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
