"""Fixtures of the chaos tier: the processes a test starts (tests/e2e/harness.py) and a
PostgreSQL database of the test's own, since the nemesis terminates its backends. The
Redis it restarts and flushes is the `throwaway_redis` fixture (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.e2e.harness import Procs


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Processes this test starts; any still running (or stopped) at the end are killed."""
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def chaos_database_url(postgres_admin_url: str) -> Iterator[str]:
    """A database of this test's own, dropped at the end: terminating its backends touches
    no other test's connections."""
    with services.fresh_database(postgres_admin_url, prefix="taskyard_chaos") as url:
        yield url
