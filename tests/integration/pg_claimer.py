"""A claimer in a process of its own: `python -m tests.integration.pg_claimer URL QUEUE`.

Prints `ready`, waits for a line on stdin (so that every claimer starts at once), then
claims batches until the queue is empty and prints each claimed job id on a line."""

from __future__ import annotations

import os
import sys

from taskyard.adapters.postgres import PostgresJobStore
from taskyard.domain.ports import ClaimRequest

BATCH = 25


def main(url: str, queue: str) -> int:
    worker = f"proc-{os.getpid()}"
    with PostgresJobStore.from_url(url) as store:
        store.now()  # connected before the start signal
        print("ready", flush=True)
        sys.stdin.readline()
        claimed: list[str] = []
        while True:
            request = ClaimRequest(
                worker=worker, limit=BATCH, lease_ttl_s=300, queues=frozenset({queue})
            )
            jobs = store.claim(request)
            if not jobs:
                break
            claimed.extend(str(job.id) for job in jobs)
        print("\n".join(claimed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
