"""Celery, as its documentation shows it: an app on the Redis broker with two tasks,
workers started with `celery -A peers_celery worker`, jobs sent with `Task.delay` (one)
and a `group` of signatures (many, in one `apply_async`).

No result backend (Celery's default), so whether the long job's success was recorded
cannot be asked of Celery: its outcome is reported as unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import peers_common
from celery import Celery, group

app = Celery("peers", broker=peers_common.redis_url())


@app.task(name="probe")
def probe(i: int, t: float) -> None:
    peers_common.started(i, t)


@app.task(name="long")
def long(i: int, seconds: float) -> None:
    peers_common.long_job(i, seconds)


class Driver:
    def setup(self) -> None:
        return None

    def enqueue(self, indexes: Sequence[int], enqueued_at: float) -> None:
        if len(indexes) == 1:
            probe.delay(indexes[0], enqueued_at)
            return
        group(probe.s(i, enqueued_at) for i in indexes).apply_async()

    def enqueue_long(self, index: int, seconds: float) -> str:
        return str(long.delay(index, seconds).id)

    def outcome(self, job_id: str) -> dict[str, Any]:
        return {"committed": None, "detail": "no result backend (the default)"}

    def close(self) -> None:
        app.close()
