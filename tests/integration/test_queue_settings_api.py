"""`PUT`/`GET /v1/queues/{name}`, `/v1/queues` and a job's `waiting_reason` through the
real API on SQLite and PostgreSQL: what is put comes back as put (a period of 0.5 s and one
of 60 s included), a refusal stores nothing, and a limited queue's usage and waiting jobs
are what its claims left."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.model import JobState
from taskyard.domain.ports import ClaimRequest
from taskyard.entrypoints.api import create_app
from taskyard.entrypoints.bootstrap import System, bootstrap
from taskyard.entrypoints.config import Settings
from tests import services
from tests.api.test_queue_settings import FULL

SETTINGS = FULL
"""Every setting, a period of 60 s and one of 0.5 s among them."""


@pytest.fixture(params=["sqlite", "postgres"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'settings.db'}"
    else:
        url = request.getfixturevalue("migrated_postgres_url")
        services.truncate_taskyard(url)
    built = bootstrap(Settings(database_url=url))
    try:
        yield built
    finally:
        built.close()


def _call(client: falcon.testing.TestClient, method: str, path: str, body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    raw = json.dumps(body) if body is not None else None
    return client.simulate_request(method, path, body=raw, headers=headers)


def test_settings_round_trip_and_a_refusal_stores_nothing(system: System) -> None:
    client = falcon.testing.TestClient(create_app(system.services()))
    put = _call(client, "PUT", "/v1/queues/reports", SETTINGS)
    assert put.status_code == 200, put.text
    assert put.json == {"name": "reports", **SETTINGS}
    assert _call(client, "GET", "/v1/queues/reports").json == put.json
    store = system.store
    expected = QueueLimits(
        concurrency_limit=2,
        key_concurrency_limit=1,
        rate_limit=RateLimit(count=100, period_s=60),
        key_rate_limit=RateLimit(count=5, period_s=0.5),
        weight=3,
    )
    assert store.queue_limits() == {"reports": expected}
    assert store.retention_overrides() == {"reports": {JobState.SUCCEEDED: 3600, JobState.DEAD: 0}}

    refused = _call(client, "PUT", "/v1/queues/reports", {"weight": 2, "rate_limit": {"count": 0}})
    assert refused.status_code == 422
    assert {e["field"] for e in refused.json["errors"]} == {"rate_limit"}
    assert store.queue_limits() == {"reports": expected}

    cleared = _call(client, "PUT", "/v1/queues/reports", {})
    assert cleared.json["weight"] == 1 and cleared.json["retention_seconds"] is None
    assert store.queue_limits() == {} and store.retention_overrides() == {}


def test_usage_and_waiting_reasons_follow_the_claims(system: System) -> None:
    client = falcon.testing.TestClient(create_app(system.services()))
    _call(client, "PUT", "/v1/queues/limited", {"concurrency_limit": 2})
    ids = [
        _call(client, "POST", "/v1/jobs", {"task": "sleep", "queue": "limited"}).json["id"]
        for _ in range(3)
    ]
    assert _call(client, "GET", f"/v1/jobs/{ids[0]}").json["waiting_reason"] == "no_free_worker"
    claimed = system.store.claim(ClaimRequest(worker="w1", limit=10, lease_ttl_s=60))
    assert [str(job.id) for job in claimed] == ids[:2]
    assert _call(client, "GET", f"/v1/jobs/{ids[0]}").json["waiting_reason"] is None
    assert _call(client, "GET", f"/v1/jobs/{ids[2]}").json["waiting_reason"] == (
        "concurrency_limit"
    )
    _call(client, "PUT", "/v1/queues/idle", {"weight": 2})
    idle, queue = _call(client, "GET", "/v1/queues").json["queues"]  # by name
    assert queue["limits"]["concurrency_limit"] == 2
    assert queue["usage"] == {"running": 2, "started_in_window": None}
    assert (idle["name"], idle["limits"]["weight"]) == ("idle", 2)  # no job, still listed
