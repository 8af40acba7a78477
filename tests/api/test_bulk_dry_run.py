"""`POST /v1/jobs/retry?dry_run=true` and `/v1/jobs/cancel?dry_run=true`: how many jobs the
action would change, counted by the action's own rule, with nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from taskyard.domain import management
from taskyard.domain.model import JobState
from taskyard.domain.ports import ClaimRequest
from tests import factories as f
from tests.api.conftest import Api, assert_problem
from tests.api.test_jobs import _claim, dead_job, succeeded_job


def _states(api: Api) -> list[tuple[str, str, bool]]:
    return sorted((j.id.hex, j.state.value, j.cancel_requested) for j in api.stored())


def test_a_dry_run_counts_what_the_action_then_changes_and_writes_nothing(api: Api) -> None:
    for _ in range(2):
        dead_job(api, queue="mail")
    dead_job(api, queue="sms")
    asked = _claim(api, f.enqueue(api.store, queue="mail", task="long"))
    api.store.cancel(asked.id)  # running, asked to stop already: a cancel leaves it alone
    _claim(api, f.enqueue(api.store, queue="mail", task="long"))
    api.submit(queue="mail", delay_seconds=60)
    succeeded_job(api)
    before = _states(api)

    for path, body, count in [
        ("/v1/jobs/retry", {"queue": "mail"}, 2),
        ("/v1/jobs/retry", {"state": ["dead", "cancelled"]}, 3),
        ("/v1/jobs/cancel", {"queue": "mail"}, 2),
        ("/v1/jobs/cancel", {"state": "running"}, 1),
        ("/v1/jobs/cancel", {"task": "nothing-like-it"}, 0),
    ]:
        dry = api.post(path, body, params={"dry_run": "true"})
        assert dry.status_code == 200
        assert dry.json == {"count": count, "exact": True, "dry_run": True}, (path, body)
        assert _states(api) == before, "a dry run writes nothing"

    assert api.post("/v1/jobs/cancel", {"queue": "mail"}, params={"dry_run": "0"}).json == {
        "count": 2
    }
    assert api.post("/v1/jobs/retry", {"queue": "mail"}).json == {"count": 3}  # 2 dead, 1 now


def test_a_count_past_its_bound_says_it_is_a_lower_bound(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(management, "BULK_COUNT_SCAN_MAX", 3)
    # Running jobs are looked at one by one (a cancel leaves one already asked to stop
    # alone): five of them are past the bound of three.
    f.enqueue_many(api.store, 5, queue="big")
    running = api.store.claim(
        ClaimRequest(worker="w1", limit=5, lease_ttl_s=60, queues=frozenset({"big"}))
    )
    assert len(running) == 5
    dry = api.post("/v1/jobs/cancel", {"queue": "big"}, params={"dry_run": "1"})
    assert dry.json == {"count": 3, "exact": False, "dry_run": True}
    # Waiting jobs are counted whole, past any bound.
    f.enqueue_many(api.store, 5, queue="later", delay_s=60)
    dry = api.post("/v1/jobs/cancel", {"queue": "later"}, params={"dry_run": "1"})
    assert dry.json == {"count": 5, "exact": True, "dry_run": True}
    f.enqueue_many(api.store, 1, queue="small", delay_s=60)
    dry = api.post("/v1/jobs/cancel", {"queue": "small"}, params={"dry_run": "1"})
    assert dry.json == {"count": 1, "exact": True, "dry_run": True}


@pytest.mark.parametrize(
    "value", ["yes", "TRUE", "", "true\x00", "1" * 10_000, ["true", "true"]], ids=repr
)
@pytest.mark.parametrize("path", ["/v1/jobs/retry", "/v1/jobs/cancel"])
def test_a_bad_dry_run_value_is_a_400_and_nothing_changes(api: Api, path: str, value: Any) -> None:
    job = dead_job(api)
    waiting = api.submit(delay_seconds=60)
    before = _states(api)
    body = {"state": "dead"} if path.endswith("retry") else {"state": "scheduled"}
    assert_problem(api.post(path, body, params={"dry_run": value}), 400, "dry_run")
    assert _states(api) == before
    assert api.store.get(job.id).state is JobState.DEAD and waiting["state"] == "scheduled"


def test_a_dry_run_validates_the_filter_as_the_action_does(api: Api) -> None:
    assert_problem(
        api.post("/v1/jobs/retry", {"state": "queued"}, params={"dry_run": "true"}), 422, "state"
    )
    assert_problem(
        api.post("/v1/jobs/cancel", {"queue": "a\x00b"}, params={"dry_run": "true"}), 422, "queue"
    )
    assert_problem(api.post("/v1/jobs/cancel", {}, params={"dry_run": "true"}), 422, "")
