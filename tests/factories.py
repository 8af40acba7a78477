"""Test factories: submissions and jobs in any state, built through the real ports."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from taskyard.domain.hooks import Hooks
from taskyard.domain.ids import uuid7
from taskyard.domain.model import Enqueued, ErrorInfo, Job, LeaseRef, NewJob
from taskyard.domain.ports import ClaimRequest, Clock, Executor, JobStore, TaskRegistry
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.submission import Submission
from taskyard.domain.transitions import Report, ReportKind
from taskyard.domain.worker import Worker, WorkerConfig

_rng = random.Random(1234)
_counter = itertools.count()


def new_job(
    store: JobStore,
    *,
    task: str = "work",
    args: dict[str, Any] | None = None,
    queue: str = "default",
    priority: int = 0,
    run_at: datetime | None = None,
    delay_s: float | None = None,
    max_attempts: int = 3,
    backoff: RetryPolicy | None = None,
    timeout_s: float | None = None,
    idempotency_key: str | None = None,
    depends_on: Sequence[UUID] = (),
    correlation_id: str | None = None,
    trace_context: dict[str, str] | None = None,
    concurrency_key: str | None = None,
) -> NewJob:
    submission = Submission(
        task=task,
        args=args if args is not None else {"n": next(_counter)},
        queue=queue,
        priority=priority,
        run_at=run_at,
        delay_s=delay_s,
        max_attempts=max_attempts,
        backoff=backoff or RetryPolicy(jitter=Jitter.NONE),
        timeout_s=timeout_s,
        idempotency_key=idempotency_key,
        depends_on=tuple(depends_on),
        concurrency_key=concurrency_key,
    )
    return submission.to_new_job(
        job_id=uuid7(store.now(), _rng), correlation_id=correlation_id, trace_context=trace_context
    )


def enqueue(store: JobStore, **kwargs: Any) -> Job:
    [result] = store.enqueue([new_job(store, **kwargs)])
    return result.job


def enqueue_many(store: JobStore, count: int, **kwargs: Any) -> list[Enqueued]:
    return store.enqueue([new_job(store, **kwargs) for _ in range(count)])


def claim_one(
    store: JobStore, *, worker: str = "w1", lease_ttl_s: float = 30.0, **kwargs: Any
) -> Job:
    jobs = store.claim(ClaimRequest(worker=worker, limit=1, lease_ttl_s=lease_ttl_s, **kwargs))
    assert len(jobs) == 1, f"expected to claim one job, got {len(jobs)}"
    return jobs[0]


def succeed(job: Job, result: Any = None) -> Report:
    return Report(ref=job.ref(), kind=ReportKind.SUCCEEDED, result=result)


def fail(
    job: Job, *, retryable: bool = True, delay_s: float = 0.0, message: str = "boom"
) -> Report:
    return Report(
        ref=job.ref(),
        kind=ReportKind.FAILED,
        error=ErrorInfo(type="RuntimeError", message=message, traceback="Traceback ..."),
        retryable=retryable,
        retry_delay_s=delay_s,
    )


def ref(job: Job) -> LeaseRef:
    return job.ref()


def worker(
    store: JobStore,
    clock: Clock,
    *,
    registry: TaskRegistry,
    executor: Executor,
    worker_id: str = "w1",
    hooks: Hooks | None = None,
    **config: Any,
) -> Worker:
    """A domain worker with no coordinator and a seeded random source, driven by hand."""
    return Worker(
        store=store,
        coordinator=None,
        clock=clock,
        rng=random.Random(0),
        registry=registry,
        executor=executor,
        config=WorkerConfig(worker_id=worker_id, **config),
        hooks=hooks,
    )
