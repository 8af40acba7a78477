"""Procrastinate, as its documentation shows it: an `App` on a `PsycopgConnector` with two
`async def` tasks (its worker is asyncio), workers started with
`procrastinate --app=peers_procrastinate.app worker`, jobs deferred with
`Task.defer_async` (one) and `Task.batch_defer_async` (many).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import peers_common
import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=peers_common.database_url())
)


@app.task(name="probe")
async def probe(i: int, t: float) -> None:
    peers_common.started(i, t)


@app.task(name="long")
async def long(i: int, seconds: float) -> None:
    await peers_common.long_job_async(i, seconds)


class Driver:
    async def open(self) -> None:
        await app.open_async()

    async def setup(self) -> None:
        await app.schema_manager.apply_schema_async()

    async def enqueue(self, indexes: Sequence[int], enqueued_at: float) -> None:
        if len(indexes) == 1:
            await probe.defer_async(i=indexes[0], t=enqueued_at)
            return
        await probe.batch_defer_async(*({"i": i, "t": enqueued_at} for i in indexes))

    async def enqueue_long(self, index: int, seconds: float) -> str:
        return str(await long.defer_async(i=index, seconds=seconds))

    async def outcome(self, job_id: str) -> dict[str, Any]:
        jobs = list(await app.job_manager.list_jobs_async(id=int(job_id)))
        if not jobs:
            return {"committed": 0, "detail": "no such job"}
        job = jobs[0]
        return {
            "committed": 1 if job.status == "succeeded" else 0,
            "detail": f"{job.status}; attempts {job.attempts}",
        }

    async def close(self) -> None:
        await app.close_async()
