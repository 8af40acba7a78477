"""PostgreSQL upkeep: the leading scheduler vacuums the jobs and attempts tables when
their dead rows pass `vacuum_due`, on a thread of its own, whether autovacuum runs or not
(it is off on the development server); `vacuum_every_s=0` leaves the tables to autovacuum."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskyard.adapters.clock import SystemClock
from taskyard.adapters.postgres import PostgresJobStore
from taskyard.domain.ports import ClaimRequest, Upkeep
from taskyard.domain.retention import VACUUM_DEAD_MIN, vacuum_due
from taskyard.domain.scheduler import SchedulerConfig
from taskyard.entrypoints.runtime import SchedulerRuntime
from tests import factories as f
from tests import services
from tests.eventually import eventually

CHURN = VACUUM_DEAD_MIN // 2 + 500
"""Each job leaves two dead versions of its row (claimed, then finished): enough to be due."""


@pytest.fixture
def store(postgres_admin_url: str) -> Iterator[PostgresJobStore]:
    """A database of its own: the statistics read here are the whole database's."""
    from taskyard.adapters.postgres import migrate

    with services.fresh_database(postgres_admin_url, prefix="taskyard_upkeep") as url:
        migrate(url)
        with PostgresJobStore.from_url(url) as store:
            yield store


def _churn(store: PostgresJobStore) -> None:
    """Jobs enqueued, claimed and finished: each leaves dead row versions behind."""
    f.enqueue_many(store, CHURN)
    while claimed := store.claim(ClaimRequest(worker="w", limit=1000, lease_ttl_s=30.0)):
        store.report([f.succeed(job) for job in claimed])


def test_the_scheduler_vacuums_a_table_whose_dead_rows_are_due_and_0_leaves_it_alone(
    store: PostgresJobStore,
) -> None:
    assert isinstance(store, Upkeep)
    _churn(store)
    eventually(
        lambda: vacuum_due(live=CHURN, dead=store.table_rows()["jobs"][1]),
        timeout_s=10,
        what="the statistics to count the dead rows",
    )
    config = SchedulerConfig(scheduler_id="s1")
    runtime = SchedulerRuntime(
        store=store, coordinator=None, config=config, clock=SystemClock(), vacuum_every_s=0.1
    )
    off = SchedulerRuntime(
        store=store, coordinator=None, config=config, clock=SystemClock(), vacuum_every_s=0
    )
    assert off._upkeep is None  # 0 leaves the tables to autovacuum
    with runtime:
        eventually(
            lambda: not vacuum_due(live=CHURN, dead=store.table_rows()["jobs"][1]),
            timeout_s=20,
            what="the leader to vacuum the jobs table",
        )
    assert runtime.vacuums >= 1
    assert store.table_rows()["jobs"][0] == CHURN
