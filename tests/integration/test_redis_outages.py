"""Losing Redis loses nothing: FLUSHALL, a real restart, and Redis down at start, each on a
throwaway `redis-server` of the test's own (never the shared one)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from taskyard.adapters.redis_coordinator import RedisCoordinator, RedisSettings
from taskyard.domain.client import Client
from taskyard.domain.model import Job
from taskyard.domain.ports import JobStore
from taskyard.entrypoints.bootstrap import System, bootstrap
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.runtime import WorkerRuntime
from tests import services
from tests.eventually import eventually
from tests.runs import (
    Runs,
    assert_each_succeeded_once,
    counting_task,
    registry_with,
    submit,
    wait_terminal,
)

WAIT_S = 30.0
QUICK_REDIS = "socket_timeout=0.5&socket_connect_timeout=0.5"
"""Redis connection options on the URL: a restarted server is noticed in half a second."""
SETTINGS = RedisSettings(key_prefix="ty:", socket_timeout_s=0.5, connect_timeout_s=0.5)
"""The same, for the tests of the adapter itself."""


class Stack:
    """A scheduler, workers and a client, each a system of its own from the composition
    root, with its own Redis connections (as separate processes would have), on one store."""

    def __init__(self, store: JobStore, redis_url: str) -> None:
        self.store = store
        self.settings = Settings(redis_url=f"{redis_url}?{QUICK_REDIS}", redis_key_prefix="ty:")
        self.runs = Runs()
        self.registry = registry_with(counting_task(self.runs))
        self.systems: list[System] = []
        self.workers: list[WorkerRuntime] = []
        self.scheduler = self.system().scheduler_runtime(
            scheduler_id="s1", leader_ttl_s=2.0, tick_interval_s=0.1
        )
        self.client: Client = self.system().client
        observer = self.system().coordinator
        assert observer is not None
        self.observer = observer

    def system(self) -> System:
        system = bootstrap(self.settings, store=self.store, rng=random.Random(7))
        self.systems.append(system)
        return system

    def add_worker(self, **config: Any) -> WorkerRuntime:
        config.setdefault("worker_id", f"w{len(self.workers) + 1}")
        config.setdefault("concurrency", 4)
        config.setdefault("poll_interval_s", 0.2)
        runtime = self.system().worker_runtime(self.registry, doorbell_block_s=0.5, **config)
        self.workers.append(runtime)
        return runtime

    def start(self, workers: int = 2, **config: object) -> Stack:
        for _ in range(workers):
            self.add_worker(**config)
        self.scheduler.start()
        for worker in self.workers:
            worker.start()
        return self

    def submit(self, first: int, count: int, pause_s: float = 0.0) -> list[Job]:
        args = [
            {"n": n, "fail_first": n % 10 == 0, "pause_s": pause_s}
            for n in range(first, first + count)
        ]
        return submit(self.client, "count", args)

    def rings(self) -> int:
        return sum(worker.rings_received for worker in self.workers)

    def leader_term(self) -> int | None:
        try:
            lead = self.observer.leader()
        except Exception:
            return None
        return lead.term if lead is not None else None

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(grace_s=1.0)
        self.scheduler.stop()
        for system in self.systems:
            system.close()


def _failed_first(job: Job) -> bool:
    return bool(job.args["fail_first"])


@pytest.fixture
def memory_store() -> JobStore:
    return bootstrap(Settings(database_url="memory://")).store


@pytest.fixture
def stack(memory_store: JobStore, throwaway_redis: services.ThrowawayRedis) -> Iterator[Stack]:
    built = Stack(memory_store, throwaway_redis.url)
    yield built
    built.close()


def test_terms_keep_growing_across_a_flushall_and_a_restart(
    throwaway_redis: services.ThrowawayRedis,
) -> None:
    first = RedisCoordinator(throwaway_redis.url, settings=SETTINGS)
    lead = first.campaign(candidate="s1", ttl_s=30)
    assert lead is not None
    throwaway_redis.flushall()
    # A coordinator that remembers no term (a new process) still gets a greater one.
    second = RedisCoordinator(throwaway_redis.url, settings=SETTINGS)
    after_flush = second.campaign(candidate="s2", ttl_s=30)
    assert after_flush is not None and after_flush.term > lead.term
    # The old holder finds another's lease where its own was.
    assert first.campaign(candidate="s1", ttl_s=30) is None
    throwaway_redis.stop()
    throwaway_redis.start()
    third = RedisCoordinator(throwaway_redis.url, settings=SETTINGS)
    after_restart = third.campaign(candidate="s3", ttl_s=30)
    assert after_restart is not None and after_restart.term > after_flush.term
    for coordinator in (first, second, third):
        coordinator.close()


def test_a_flushall_mid_run_loses_no_job_and_everything_rebuilds_itself(
    stack: Stack, throwaway_redis: services.ThrowawayRedis
) -> None:
    stack.start()
    eventually(lambda: stack.leader_term() is not None, timeout_s=WAIT_S, what="a leader")
    term_before = stack.leader_term()
    assert term_before is not None
    jobs = stack.submit(0, 150)
    eventually(lambda: stack.runs.count() >= 50, timeout_s=WAIT_S, what="50 handlers ran")
    throwaway_redis.flushall()
    jobs += stack.submit(150, 150)
    wait_terminal(stack.store, jobs, timeout_s=WAIT_S)
    assert_each_succeeded_once(stack.store, jobs, failed_first=_failed_first)
    # Leader, registries and doorbells are back without anyone's help.
    eventually(
        lambda: (term := stack.leader_term()) is not None and term > term_before,
        timeout_s=WAIT_S,
        what="a leader with a greater term",
    )
    eventually(
        lambda: {w.id for w in stack.observer.workers()} == {"w1", "w2"},
        timeout_s=WAIT_S,
        what="both workers registered again",
    )
    rings = stack.rings()
    jobs = stack.submit(1000, 1)
    wait_terminal(stack.store, jobs, timeout_s=WAIT_S)
    eventually(lambda: stack.rings() > rings, timeout_s=WAIT_S, what="a ring got through")


def test_after_a_flushall_an_idle_worker_is_still_woken_by_the_doorbell(
    stack: Stack, throwaway_redis: services.ThrowawayRedis
) -> None:
    # Polling every 60 s: a job that runs within the deadline below came by the doorbell.
    stack.start(workers=1, poll_interval_s=60.0)
    [worker] = stack.workers
    # The doorbell is waited on only after the first tick, whose claim found nothing.
    eventually(lambda: worker.doorbell_ok, timeout_s=WAIT_S, what="the doorbell is waited on")
    throwaway_redis.flushall()
    jobs = stack.submit(1, 1)
    wait_terminal(stack.store, jobs, timeout_s=15.0)
    assert worker.rings_received >= 1


@pytest.mark.parametrize("store_kind", ["memory", "postgresql"])
def test_a_redis_restart_in_the_middle_of_1000_jobs_loses_none_and_commits_each_once(
    store_kind: str, request: pytest.FixtureRequest, throwaway_redis: services.ThrowawayRedis
) -> None:
    url = (
        "memory://" if store_kind == "memory" else request.getfixturevalue("migrated_postgres_url")
    )
    owner = bootstrap(Settings(database_url=url), coordinator=None)
    stack = Stack(owner.store, throwaway_redis.url).start()
    try:
        eventually(lambda: stack.leader_term() is not None, timeout_s=WAIT_S, what="a leader")
        term_before = stack.leader_term()
        assert term_before is not None
        jobs: list[Job] = []
        # Each handler takes a few ms, so that work is under way when Redis goes.
        for first in range(0, 400, 100):
            jobs += stack.submit(first, 100, pause_s=0.005)
        eventually(lambda: stack.runs.count() >= 300, timeout_s=WAIT_S, what="300 handlers ran")

        throwaway_redis.stop()
        for first in range(400, 700, 100):
            # The rings fail; the jobs are stored all the same.
            jobs += stack.submit(first, 100, pause_s=0.005)
        eventually(
            lambda: stack.runs.count() >= 650,
            timeout_s=WAIT_S,
            what="work goes on by polling while Redis is down",
        )
        assert all(worker.running for worker in stack.workers)

        throwaway_redis.start()
        rings_at_restart = stack.rings()
        for first in range(700, 1000, 100):
            jobs += stack.submit(first, 100, pause_s=0.005)
        assert len(jobs) == 1000
        wait_terminal(stack.store, jobs, timeout_s=120.0)
        assert_each_succeeded_once(stack.store, jobs, failed_first=_failed_first)

        # Back to the doorbell and to a single leader, by themselves.
        eventually(
            lambda: all(worker.doorbell_ok for worker in stack.workers),
            timeout_s=WAIT_S,
            what="every worker waits on the doorbell again",
        )
        eventually(
            lambda: stack.rings() > rings_at_restart,
            timeout_s=WAIT_S,
            what="rings reach the workers after the restart",
        )
        eventually(
            lambda: (term := stack.leader_term()) is not None and term > term_before,
            timeout_s=WAIT_S,
            what="one leader again, with a greater term",
        )
    finally:
        stack.close()
        owner.close()


def test_with_redis_down_at_start_jobs_still_run_by_polling(memory_store: JobStore) -> None:
    with services.throwaway_redis(start=False) as server:
        stack = Stack(memory_store, server.url).start()
        try:
            jobs = stack.submit(0, 50)
            wait_terminal(stack.store, jobs, timeout_s=WAIT_S)
            assert_each_succeeded_once(stack.store, jobs, failed_first=_failed_first)
            assert all(worker.doorbell_ok is False for worker in stack.workers)
            assert stack.rings() == 0

            server.start()
            eventually(
                lambda: all(worker.doorbell_ok for worker in stack.workers),
                timeout_s=WAIT_S,
                what="the workers find the doorbell once Redis is up",
            )
            eventually(lambda: stack.leader_term() is not None, timeout_s=WAIT_S, what="a leader")
            more = stack.submit(100, 1)
            wait_terminal(stack.store, more, timeout_s=WAIT_S)
            eventually(lambda: stack.rings() > 0, timeout_s=WAIT_S, what="a ring got through")
        finally:
            stack.close()
