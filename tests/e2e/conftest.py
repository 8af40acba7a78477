"""Fixtures of the end-to-end tier: real taskyard processes (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Procs


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Processes this test starts; any still running at the end are killed."""
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.close()
