"""taskyard, as a user writes it: an `App` with two tasks, workers started with
`taskyard worker --app peers_taskyard:app`, jobs enqueued through `App.enqueue` (one) and
`App.enqueue_many` (many).

`PEERS_HANDLERS=async` registers the same handlers as `async def` functions: the `async`
config's column, where the worker awaits them on its event loop (`--async-concurrency`,
100 by default) instead of running them on its threads (16 by default).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import peers_common

import taskyard

PROBE = "peers.probe"
LONG = "peers.long"

app = taskyard.App(peers_common.database_url(), coordinator_url=peers_common.redis_url())

if os.environ.get("PEERS_HANDLERS", "sync") == "async":

    @app.task(PROBE)
    async def probe_async(i: int, t: float) -> None:
        peers_common.started(i, t)

    @app.task(LONG)
    async def long_async(i: int, seconds: float) -> None:
        await peers_common.long_job_async(i, seconds)

else:

    @app.task(PROBE)
    def probe(i: int, t: float) -> None:
        peers_common.started(i, t)

    @app.task(LONG)
    def long(i: int, seconds: float) -> None:
        peers_common.long_job(i, seconds)


class Driver:
    def setup(self) -> None:
        from taskyard.adapters.postgres import migrate

        migrate(peers_common.database_url())

    def enqueue(self, indexes: Sequence[int], enqueued_at: float) -> None:
        if len(indexes) == 1:
            app.enqueue(PROBE, args={"i": indexes[0], "t": enqueued_at})
            return
        app.enqueue_many([app.submission(PROBE, args={"i": i, "t": enqueued_at}) for i in indexes])

    def enqueue_long(self, index: int, seconds: float) -> str:
        return str(app.enqueue(LONG, args={"i": index, "seconds": seconds}).id)

    def outcome(self, job_id: str) -> dict[str, Any]:
        job = app.get(job_id)
        outcomes = [a.outcome.value for a in app.attempts(job_id)]
        return {
            "committed": outcomes.count("succeeded"),
            "detail": f"{job.state.value}; attempts {', '.join(outcomes)}",
        }

    def close(self) -> None:
        app.close()
