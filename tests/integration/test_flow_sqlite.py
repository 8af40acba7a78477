"""SQLite's governed claim (its key walk, which stops once it has read enough) takes what
the in-memory store takes, which reads every due job: the same generated limits and
histories played on both, every claim compared."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryJobStore
from taskyard.adapters.sqlite import SqliteJobStore
from taskyard.domain.flow import QueueLimits
from taskyard.domain.ports import ClaimRequest, JobStore
from taskyard.domain.submission import Submission
from taskyard.domain.transitions import Report, ReportKind
from tests.integration.test_hot_paths import FLOW_LIMITS, FLOW_TAIL, START, flow_ops


def play(store: JobStore, clock: ManualClock, ops: list[tuple[Any, ...]]) -> list[list[Any]]:
    claims: list[list[Any]] = []
    running: list[Any] = []
    serial = itertools.count(1)
    for kind, *rest in ops:
        if kind == "limits":
            store.set_queue_limits(rest[0], rest[1])
        elif kind == "enqueue":
            count, queue, key, priority, delay_ms, task = rest
            store.enqueue(
                [
                    Submission(
                        task=task,
                        queue=queue,
                        priority=priority,
                        delay_s=None if delay_ms is None else delay_ms / 1000,
                        concurrency_key=key,
                    ).to_new_job(job_id=UUID(int=next(serial)))
                    for _ in range(count)
                ]
            )
        elif kind == "claim":
            limit, ttl_ms, queues = rest
            request = ClaimRequest(
                worker="w1",
                limit=limit,
                lease_ttl_s=ttl_ms / 1000,
                queues=None if queues is None else frozenset(queues),
            )
            taken = store.claim(request)
            claims.append([(j.id, j.queue, j.concurrency_key) for j in taken])
            running.extend(taken)
        elif kind == "advance":
            clock.advance(rest[0] / 1000)
        elif kind == "finish" and running:
            job = running.pop(rest[0] % len(running))
            store.report([Report(ref=job.ref(), kind=ReportKind.SUCCEEDED)])
        elif kind == "pause":
            store.set_paused(rest[0], paused=rest[1])
        store.promote_due(limit=100)
    return claims


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limits=st.tuples(FLOW_LIMITS, FLOW_LIMITS), ops=flow_ops)
def test_sqlite_claims_in_turns_what_the_memory_store_claims(
    limits: tuple[QueueLimits, QueueLimits], ops: list[tuple[Any, ...]]
) -> None:
    claims = [("claim", n, 3000, q) for n in (1, 3, 5) for q in (None, ("a",))]
    history = [("limits", "a", limits[0]), ("limits", "b", limits[1]), *FLOW_TAIL, *ops]
    history += [*FLOW_TAIL, *claims, ("advance", 600), *claims]
    memory_clock = ManualClock(START)
    expected = play(InMemoryJobStore(memory_clock), memory_clock, history)
    sqlite_clock = ManualClock(START)
    with (
        tempfile.TemporaryDirectory() as tmp,
        SqliteJobStore(Path(tmp) / "flow.db", clock=sqlite_clock) as store,
    ):
        assert play(store, sqlite_clock, history) == expected
