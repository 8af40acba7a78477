"""Huey, as its documentation shows it: a `RedisHuey` with two tasks, consumers started
with `huey_consumer peers_huey.huey`, jobs enqueued by calling the task (one) and with
`Task.map` (many: Huey has no bulk enqueue, `map` enqueues them one by one).

Huey keeps jobs in Redis only: nothing here is durable in the PostgreSQL sense.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import peers_common
from huey import RedisHuey

huey = RedisHuey(url=peers_common.redis_url())


@huey.task()
def probe(i: int, t: float) -> None:
    peers_common.started(i, t)


@huey.task()
def long(i: int, seconds: float) -> bool:
    peers_common.long_job(i, seconds)
    return True


class Driver:
    def setup(self) -> None:
        return None

    def enqueue(self, indexes: Sequence[int], enqueued_at: float) -> None:
        if len(indexes) == 1:
            probe(indexes[0], enqueued_at)
            return
        probe.map([(i, enqueued_at) for i in indexes])

    def enqueue_long(self, index: int, seconds: float) -> str:
        return str(long(index, seconds).id)

    def outcome(self, job_id: str) -> dict[str, Any]:
        result = huey.result(job_id, preserve=True)
        return {
            "committed": 1 if result is True else 0,
            "detail": "result stored" if result is True else "no result stored",
        }

    def close(self) -> None:
        huey.storage.conn.close()
