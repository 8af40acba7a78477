"""Helpers for tests that run real worker and scheduler runtimes (threads, real clocks)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from taskyard.domain.client import Client
from taskyard.domain.context import Registry, TaskSpec
from taskyard.domain.model import COMMITTED_OUTCOMES, Job, JobState, Outcome
from taskyard.domain.ports import Coordinator, JobStore
from taskyard.domain.retry import Jitter, RetryPolicy
from taskyard.domain.submission import Submission
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings
from tests.eventually import eventually

QUICK_RETRY = RetryPolicy(base_s=0.05, factor=1.0, max_s=0.05, jitter=Jitter.NONE)


class Runs:
    """Records every handler start, thread-safely: `(job_id, attempt)` in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started: list[tuple[UUID, int]] = []

    def record(self, job_id: str, attempt: int) -> None:
        with self._lock:
            self.started.append((UUID(job_id), attempt))

    def count(self) -> int:
        with self._lock:
            return len(self.started)

    def per_job(self) -> Counter[UUID]:
        with self._lock:
            return Counter(job_id for job_id, _ in self.started)


def registry_with(*specs: TaskSpec) -> Registry:
    registry = Registry()
    for spec in specs:
        registry.add(spec)
    return registry


def counting_task(runs: Runs, name: str = "count") -> TaskSpec:
    """Succeeds (after `pause_s`), or fails its first attempt when its args say `fail_first`."""

    def handler(ctx: Any, n: int, fail_first: bool = False, pause_s: float = 0) -> dict[str, int]:
        runs.record(ctx.job_id, ctx.attempt)
        if pause_s:
            ctx.wait(pause_s)
        if fail_first and ctx.attempt == 1:
            raise RuntimeError("failing the first attempt on purpose")
        return {"n": n}

    return TaskSpec(name=name, handler=handler, backoff=QUICK_RETRY)


def client_for(store: JobStore, coordinator: Coordinator | None, seed: int = 7) -> Client:
    """A client on these adapters, wired by the composition root, with a seeded source."""
    return bootstrap(
        Settings(), store=store, coordinator=coordinator, rng=random.Random(seed)
    ).client


def submit(
    client: Client, task: str, args_list: Sequence[dict[str, Any]], **options: Any
) -> list[Job]:
    options.setdefault("backoff", QUICK_RETRY)
    submissions = [Submission(task=task, args=args, **options) for args in args_list]
    return [e.job for e in client.submit(submissions)]


def wait_terminal(
    store: JobStore, jobs: Sequence[Job], *, timeout_s: float, batch: int = 200
) -> list[Job]:
    """Wait until every job is terminal; return them as they ended."""
    pending = {job.id for job in jobs}

    def settled() -> bool:
        for job_id in sorted(pending)[:batch]:
            if store.get(job_id).state.is_terminal:
                pending.discard(job_id)
        return not pending

    eventually(settled, timeout_s=timeout_s, what=f"{len(pending)} jobs still not terminal")
    return [store.get(job.id) for job in jobs]


def committed_outcomes(store: JobStore, job_id: UUID) -> list[Outcome]:
    return [a.outcome for a in store.attempts(job_id) if a.outcome in COMMITTED_OUTCOMES]


def assert_each_succeeded_once(
    store: JobStore, jobs: Sequence[Job], *, failed_first: Callable[[Job], bool]
) -> None:
    """Every job succeeded, and its committed outcomes are exactly the expected ones: one
    success, after one failure for the jobs made to fail their first attempt."""
    problems = []
    for job in jobs:
        done = store.get(job.id)
        expected = [Outcome.FAILED, Outcome.SUCCEEDED] if failed_first(job) else [Outcome.SUCCEEDED]
        got = committed_outcomes(store, job.id)
        if done.state is not JobState.SUCCEEDED or got != expected:
            problems.append((str(job.id), done.state.value, [o.value for o in got]))
    assert not problems, f"{len(problems)} jobs went wrong, e.g. {problems[:5]}"
