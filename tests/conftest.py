"""Shared fixtures: service discovery (see tests/services.py) and tier markers by folder."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

TIERS = {
    "unit",
    "service",
    "contract",
    "integration",
    "api",
    "cli",
    "e2e",
    "browser",
    "simulation",
    "chaos",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.path)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with services.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A database of this test session's own, dropped at the end."""
    with services.fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    """The session's database with the taskyard schema applied (`taskyard migrate`)."""
    from taskyard.adapters.postgres import migrate

    migrate(postgres_url)
    return postgres_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with services.redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_session_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test session's own; every key under it is deleted at the end."""
    prefix = f"taskyard-test-{secrets.token_hex(4)}:"
    yield prefix
    services.delete_prefix(redis_url, prefix)


@pytest.fixture
def redis_prefix(redis_session_prefix: str) -> str:
    """A key prefix of this test's own, under the session's."""
    return f"{redis_session_prefix}{secrets.token_hex(3)}:"


@pytest.fixture
def throwaway_redis() -> Iterator[services.ThrowawayRedis]:
    """A redis-server of this test's own (free port, no persistence), stopped at the end."""
    with services.throwaway_redis() as server:
        yield server
