"""PgQueuer, as its documentation shows it: a factory for `pgq run peers_pgqueuer:main`
(an async context manager, as 1.6 asks) that builds a `PgQueuer` on an asyncpg connection
with two entrypoints, and jobs enqueued with `Queries.enqueue` (one entrypoint and
payload; or lists of them for many).

The connection comes from `PGDSN` (what `pgq` itself reads). Payloads are ASCII:
`b"<index> <enqueued_at>"` for a probe, `b"<index> <seconds>"` for a long job.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import peers_common
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.models import Job

PROBE = "probe"
LONG = "long"


@contextlib.asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["PGDSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint(PROBE)
    async def probe(job: Job) -> None:
        index, enqueued_at = (job.payload or b"").split()
        peers_common.started(int(index), float(enqueued_at))

    @pgq.entrypoint(LONG)
    async def long(job: Job) -> None:
        index, seconds = (job.payload or b"").split()
        await peers_common.long_job_async(int(index), float(seconds))

    try:
        yield pgq
    finally:
        await connection.close()


class Driver:
    def __init__(self) -> None:
        self.connection: Any = None
        self.queries: Any = None

    async def open(self) -> None:
        self.connection = await asyncpg.connect(os.environ["PGDSN"])
        self.queries = Queries(AsyncpgDriver(self.connection))

    async def setup(self) -> None:
        await self.queries.install()

    async def enqueue(self, indexes: Sequence[int], enqueued_at: float) -> None:
        if len(indexes) == 1:
            await self.queries.enqueue(PROBE, f"{indexes[0]} {enqueued_at!r}".encode())
            return
        await self.queries.enqueue(
            [PROBE] * len(indexes),
            [f"{i} {enqueued_at!r}".encode() for i in indexes],
            [0] * len(indexes),
        )

    async def enqueue_long(self, index: int, seconds: float) -> str:
        (job_id,) = await self.queries.enqueue(LONG, f"{index} {seconds!r}".encode())
        return str(job_id)

    async def outcome(self, job_id: str) -> dict[str, Any]:
        rows = await self.connection.fetch(
            "SELECT status::text AS status, count(*) AS n FROM pgqueuer_log "
            "WHERE job_id = $1 GROUP BY status ORDER BY status",
            int(job_id),
        )
        statuses = {row["status"]: row["n"] for row in rows}
        waiting = await self.connection.fetchval(
            "SELECT status::text FROM pgqueuer WHERE id = $1", int(job_id)
        )
        detail = ", ".join(f"{status} x{n}" for status, n in statuses.items())
        return {
            "committed": statuses.get("successful", 0),
            "detail": f"log: {detail or 'nothing'}; queue row: {waiting or 'gone'}",
        }

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
