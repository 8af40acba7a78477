"""Adapters under contract. To put a new adapter under a port's suite, add a factory here.

A factory yields a `Harness`: the adapter, fresh for the test, and `pass_time(seconds)`,
which lets that much of the adapter's own time go by (a manual clock moves; a database's
clock is simply waited for). Tests keep durations short so real clocks cost little.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import attrs
import pytest

from taskyard.adapters.clock import ManualClock
from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.ports import Coordinator, JobStore
from tests import services

T = TypeVar("T")


@attrs.define
class Harness(Generic[T]):
    name: str
    adapter: T
    pass_time: Callable[[float], object]
    real_time: bool
    """True when time passes by waiting (database clocks): tests allow for slack."""


def _real_pass_time(seconds: float) -> None:
    time.sleep(seconds)


# --- JobStore -----------------------------------------------------------------------------


def memory_store(request: pytest.FixtureRequest) -> Iterator[Harness[JobStore]]:
    clock = ManualClock()
    store: JobStore = InMemoryJobStore(clock)
    yield Harness("memory", store, clock.advance, real_time=False)


def sqlite_store(request: pytest.FixtureRequest) -> Iterator[Harness[JobStore]]:
    """A new file per test, on a manual clock (the SQLite store's clock is injected)."""
    from taskyard.adapters.sqlite import SqliteJobStore

    tmp_path: Path = request.getfixturevalue("tmp_path")
    clock = ManualClock()
    with SqliteJobStore(tmp_path / "contract.db", clock=clock) as store:
        yield Harness("sqlite", store, clock.advance, real_time=False)


@pytest.fixture(scope="session")
def postgres_session_store(migrated_postgres_url: str) -> Iterator[JobStore]:
    """One pool for the session's contract tests, on the session's migrated database."""
    from taskyard.adapters.postgres import PostgresJobStore

    with PostgresJobStore.from_url(migrated_postgres_url) as store:
        yield store


def postgres_store(request: pytest.FixtureRequest) -> Iterator[Harness[JobStore]]:
    """The session's database, emptied before each test; time is the server's own."""
    url: str = request.getfixturevalue("migrated_postgres_url")
    store: JobStore = request.getfixturevalue("postgres_session_store")
    services.truncate_taskyard(url)
    yield Harness("postgres", store, _real_pass_time, real_time=True)


STORE_FACTORIES: dict[str, Callable[[pytest.FixtureRequest], Iterator[Harness[JobStore]]]] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "postgres": postgres_store,
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_harness(request: pytest.FixtureRequest) -> Iterator[Harness[JobStore]]:
    yield from STORE_FACTORIES[request.param](request)


@pytest.fixture
def store(store_harness: Harness[JobStore]) -> JobStore:
    return store_harness.adapter


# --- Coordinator --------------------------------------------------------------------------


def memory_coordinator(request: pytest.FixtureRequest) -> Iterator[Harness[Coordinator]]:
    clock = ManualClock()
    coordinator: Coordinator = InMemoryCoordinator(clock)
    yield Harness("memory", coordinator, clock.advance, real_time=False)


def redis_coordinator(request: pytest.FixtureRequest) -> Iterator[Harness[Coordinator]]:
    """Redis (found as DEVELOPERS.md says), under a key prefix of this test's own."""
    from taskyard.adapters.redis_coordinator import RedisCoordinator, RedisSettings

    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    adapter = RedisCoordinator(url, settings=RedisSettings(key_prefix=prefix))
    coordinator: Coordinator = adapter
    yield Harness("redis", coordinator, _real_pass_time, real_time=True)
    adapter.close()


COORDINATOR_FACTORIES: dict[
    str, Callable[[pytest.FixtureRequest], Iterator[Harness[Coordinator]]]
] = {
    "memory": memory_coordinator,
    "redis": redis_coordinator,
}


@pytest.fixture(params=sorted(COORDINATOR_FACTORIES))
def coordinator_harness(request: pytest.FixtureRequest) -> Iterator[Harness[Coordinator]]:
    yield from COORDINATOR_FACTORIES[request.param](request)


@pytest.fixture
def coordinator(coordinator_harness: Harness[Coordinator]) -> Coordinator:
    return coordinator_harness.adapter


__all__: list[Any] = ["Harness"]
