"""Queues, workers, schedulers, stats, health, readiness, metrics, the landing page, auth,
and what happens when the store or the coordinator is unreachable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskyard.adapters.memory import InMemoryCoordinator, InMemoryJobStore
from taskyard.domain.errors import CoordinatorUnavailable, StoreUnavailable
from taskyard.domain.ports import ClaimRequest, SchedulerInfo, WorkerInfo
from tests import factories as f
from tests.api.conftest import START, TOKENS, Api, assert_problem, make_api


class Unplugged:
    """A real adapter behind a switch: while `down`, every call raises `error`, as an
    adapter does when its server is unreachable."""

    def __init__(self, inner: Any, error: Callable[[], Exception]) -> None:
        self._inner = inner
        self._error = error
        self.down = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise self._error()
            return target(*args, **kwargs)

        return call


def unpluggable_api() -> tuple[Api, Unplugged]:
    """The API with its store behind a switch."""
    holder: list[Unplugged] = []

    def wrap(store: InMemoryJobStore) -> Any:
        holder.append(Unplugged(store, lambda: StoreUnavailable(message="connection refused")))
        return holder[0]

    return make_api(wrap_store=wrap), holder[0]


def api_with_unpluggable_coordinator() -> tuple[Api, Unplugged]:
    holder: list[Unplugged] = []

    def wrap(coordinator: InMemoryCoordinator) -> Any:
        holder.append(Unplugged(coordinator, lambda: CoordinatorUnavailable(message="no redis")))
        return holder[0]

    return make_api(wrap_coordinator=wrap), holder[0]


# --- queues -------------------------------------------------------------------------------


def test_queues_show_counts_by_state_and_the_oldest_wait(api: Api) -> None:
    api.submit(queue="mail")
    api.clock.advance(12)
    api.submit(queue="mail")
    api.submit(queue="mail", delay_seconds=60)
    api.submit(queue="sms")
    queues = {q["name"]: q for q in api.get("/v1/queues").json["queues"]}
    assert set(queues) == {"mail", "sms"}
    mail = queues["mail"]
    assert mail["paused"] is False
    assert mail["counts"]["queued"] == 2 and mail["counts"]["scheduled"] == 1
    assert mail["counts"]["dead"] == 0
    assert mail["oldest_queued_age_seconds"] == pytest.approx(12)


def test_pause_and_resume_are_kept_and_stop_claims(api: Api) -> None:
    api.submit(queue="mail")
    assert api.post("/v1/queues/mail/pause").json == {"name": "mail", "paused": True}
    assert api.post("/v1/queues/idle/pause").json == {"name": "idle", "paused": True}
    assert api.store.claim(ClaimRequest(worker="w", limit=5, lease_ttl_s=10)) == []
    queues = {q["name"]: q["paused"] for q in api.get("/v1/queues").json["queues"]}
    assert queues == {"mail": True, "idle": True}
    assert api.post("/v1/queues/mail/resume").json == {"name": "mail", "paused": False}
    assert len(api.store.claim(ClaimRequest(worker="w", limit=5, lease_ttl_s=10))) == 1


def test_a_malformed_queue_name_is_not_found(api: Api) -> None:
    assert_problem(api.post("/v1/queues/no%20spaces/pause"), 404)
    assert api.store.state.paused == set()


# --- workers and schedulers ---------------------------------------------------------------


def test_workers_are_listed_until_their_heartbeat_lapses(api: Api) -> None:
    f.enqueue(api.store)
    job = f.claim_one(api.store, worker="host-a:123:w1")
    api.coordinator.register_worker(
        WorkerInfo(
            id="host-a:123:w1",
            host="host-a",
            pid=123,
            queues=("mail",),
            concurrency=4,
            started_at=START,
            last_heartbeat_at=START + timedelta(seconds=1),
            running_job_ids=(job.id,),
        ),
        ttl_s=15,
    )
    [worker] = api.get("/v1/workers").json["workers"]
    assert worker == {
        "id": "host-a:123:w1",
        "host": "host-a",
        "pid": 123,
        "queues": ["mail"],
        "concurrency": 4,
        "started_at": "2026-11-22T10:00:00.000Z",
        "last_heartbeat_at": "2026-11-22T10:00:01.000Z",
        "running_job_ids": [str(job.id)],
    }
    api.clock.advance(16)
    assert api.get("/v1/workers").json == {"workers": []}


def register(
    api: Api, worker_id: str, *, concurrency: int = 4, running: tuple[UUID, ...] = ()
) -> None:
    """A live worker in the coordinator, as a worker registers itself."""
    api.coordinator.register_worker(
        WorkerInfo(
            id=worker_id,
            host="h",
            pid=1,
            queues=(),
            concurrency=concurrency,
            started_at=START,
            last_heartbeat_at=START,
            running_job_ids=running,
        ),
        ttl_s=15,
    )


def test_a_workers_running_jobs_are_the_store_s_not_its_registration(api: Api) -> None:
    for _ in range(3):
        f.enqueue(api.store)
    finished, running = api.store.claim(ClaimRequest(worker="w1", limit=2, lease_ttl_s=30))
    [elsewhere] = api.store.claim(ClaimRequest(worker="w2", limit=1, lease_ttl_s=30))
    api.store.report([f.succeed(finished)])
    register(api, "w1", running=(finished.id,))  # registered before the claim and report
    [worker] = api.get("/v1/workers").json["workers"]
    assert worker["running_job_ids"] == [str(running.id)]
    assert str(elsewhere.id) not in worker["running_job_ids"]


def test_schedulers_show_which_one_leads(api: Api) -> None:
    for name in ("s1", "s2"):
        api.coordinator.register_scheduler(
            SchedulerInfo(id=name, host="h", pid=1, last_heartbeat_at=START), ttl_s=15
        )
    leadership = api.coordinator.campaign(candidate="s2", ttl_s=10)
    assert leadership is not None
    schedulers = {s["id"]: s for s in api.get("/v1/schedulers").json["schedulers"]}
    assert schedulers["s2"]["leader"] is True and schedulers["s2"]["term"] == leadership.term
    assert schedulers["s1"]["leader"] is False and schedulers["s1"]["term"] is None


def test_without_a_coordinator_no_worker_or_scheduler_is_known() -> None:
    api = make_api(with_coordinator=False)
    assert api.get("/v1/workers").json == {"workers": []}
    assert api.get("/v1/schedulers").json == {"schedulers": []}
    assert api.get("/readyz").json == {"status": "ok", "checks": {"store": "ok"}}


# --- stats --------------------------------------------------------------------------------


def test_stats_count_outcomes_over_the_window(api: Api) -> None:
    for _ in range(3):
        f.enqueue(api.store, max_attempts=1)
    a, b, c = api.store.claim(ClaimRequest(worker="w", limit=3, lease_ttl_s=30))
    api.clock.advance(2)
    api.store.report([f.succeed(a), f.succeed(b), f.fail(c)])
    stats = api.get("/v1/stats", params={"window": "60"}).json
    assert stats == {
        "window_seconds": 60,
        "succeeded": 2,
        "dead": 1,
        "failed_attempts": 1,
        "throughput_per_second": pytest.approx(3 / 60),
        "run_seconds_p50": pytest.approx(2.0),
        "run_seconds_p95": pytest.approx(2.0),
    }
    api.clock.advance(120)
    assert api.get("/v1/stats", params={"window": 60}).json["succeeded"] == 0
    assert api.get("/v1/stats").json["window_seconds"] == 3600


@pytest.mark.parametrize("window", ["59", "604801", "1.5", "hour", ""])
def test_a_window_out_of_range_is_a_400(api: Api, window: str) -> None:
    assert_problem(api.get("/v1/stats", params={"window": window}), 400, "window")


# --- health, readiness, 503 ---------------------------------------------------------------


def test_health_and_readiness_answer_ok(api: Api) -> None:
    assert api.get("/healthz").json == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "checks": {"store": "ok", "coordinator": "ok"}}


def test_readiness_names_the_store_when_it_is_down() -> None:
    api, store = unpluggable_api()
    store.down = True
    result = api.get("/readyz")
    assert result.status_code == 503
    assert result.json["status"] == "unavailable"
    assert result.json["checks"] == {"store": "down: connection refused", "coordinator": "ok"}
    assert api.get("/healthz").status_code == 200


def test_readiness_names_the_coordinator_when_it_is_down() -> None:
    api, coordinator = api_with_unpluggable_coordinator()
    coordinator.down = True
    result = api.get("/readyz")
    assert result.status_code == 503
    assert result.json["checks"] == {"store": "ok", "coordinator": "down: no redis"}
    for path in ("/v1/workers", "/v1/schedulers"):
        doc = assert_problem(api.get(path), 503)
        assert doc["type"] == "urn:taskyard:problem:coordinator-unavailable"
    # Submitting still works: the doorbell is best effort, the store is the truth.
    assert api.post("/v1/jobs", {"task": "sleep"}).status_code == 201
    got = samples(api)
    assert got[("taskyard_up", (("component", "coordinator"),))] == 0
    assert got[("taskyard_up", (("component", "store"),))] == 1


def test_an_unavailable_store_is_a_503_with_retry_after_and_nothing_stored() -> None:
    api, store = unpluggable_api()
    job = api.submit()
    store.down = True
    for result in (
        api.post("/v1/jobs", {"task": "sleep"}),
        api.get(f"/v1/jobs/{job['id']}"),
        api.get("/v1/jobs"),
        api.post(f"/v1/jobs/{job['id']}/cancel"),
        api.get("/v1/queues"),
    ):
        doc = assert_problem(result, 503)
        assert doc["type"] == "urn:taskyard:problem:store-unavailable"
        assert result.headers["retry-after"] == "1"
    store.down = False
    assert [str(j.id) for j in api.stored()] == [job["id"]]
    assert api.get(f"/v1/jobs/{job['id']}").json["state"] == "queued"


# --- metrics ------------------------------------------------------------------------------


def samples(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    result = api.get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(result.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_show_jobs_attempts_run_times_workers_and_the_leader(api: Api) -> None:
    f.enqueue_many(api.store, 3, queue="mail", max_attempts=1)
    f.enqueue(api.store, queue="sms", delay_s=60)
    quick, slow, bad = api.store.claim(ClaimRequest(worker="w", limit=3, lease_ttl_s=30))
    api.clock.advance(0.02)
    api.store.report([f.succeed(quick), f.fail(bad)])
    api.clock.advance(3)
    api.store.report([f.succeed(slow)])
    register(api, "w", concurrency=8)
    leadership = api.coordinator.campaign(candidate="s1", ttl_s=10)
    assert leadership is not None

    got = samples(api)
    assert got[("taskyard_up", (("component", "store"),))] == 1
    assert got[("taskyard_up", (("component", "coordinator"),))] == 1
    assert got[("taskyard_jobs", (("queue", "mail"), ("state", "succeeded")))] == 2
    assert got[("taskyard_jobs", (("queue", "mail"), ("state", "dead")))] == 1
    assert got[("taskyard_jobs", (("queue", "sms"), ("state", "scheduled")))] == 1
    assert got[("taskyard_attempts_total", (("outcome", "succeeded"),))] == 2
    assert got[("taskyard_attempts_total", (("outcome", "failed"),))] == 1
    assert got[("taskyard_attempts_total", (("outcome", "worker_lost"),))] == 0
    assert got[("taskyard_attempts_running", ())] == 0
    assert got[("taskyard_attempt_run_seconds_bucket", (("le", "0.025"),))] == 2
    assert got[("taskyard_attempt_run_seconds_bucket", (("le", "2.5"),))] == 2
    assert got[("taskyard_attempt_run_seconds_bucket", (("le", "5.0"),))] == 3
    assert got[("taskyard_attempt_run_seconds_bucket", (("le", "+Inf"),))] == 3
    assert got[("taskyard_attempt_run_seconds_count", ())] == 3
    assert got[("taskyard_attempt_run_seconds_sum", ())] == pytest.approx(3.06)
    assert got[("taskyard_workers_alive", ())] == 1
    assert got[("taskyard_worker_slots", ())] == 8
    assert got[("taskyard_leader_term", ())] == leadership.term
    assert got[("taskyard_claim_lag_seconds", (("queue", "mail"),))] == 0


def test_claim_lag_is_the_wait_of_the_oldest_due_job(api: Api) -> None:
    api.submit(queue="mail")
    api.clock.advance(7)
    api.submit(queue="mail")
    assert samples(api)[("taskyard_claim_lag_seconds", (("queue", "mail"),))] == 7


def test_metrics_say_when_the_store_is_down_and_still_answer() -> None:
    api, store = unpluggable_api()
    api.submit()
    store.down = True
    got = samples(api)
    assert got[("taskyard_up", (("component", "store"),))] == 0
    assert not any(name == "taskyard_jobs" for name, _ in got)


# --- the landing page, unknown routes -----------------------------------------------------


def test_the_landing_page_is_html_with_links(api: Api) -> None:
    result = api.get("/")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/html")
    assert '<a href="/openapi.json">' in result.text and "/v1/jobs" in result.text


def test_unknown_routes_and_methods_are_problem_documents(api: Api) -> None:
    assert_problem(api.get("/v2/jobs"), 404)
    assert_problem(api.get("/v1/jobs/"), 404)
    result = api.call("PUT", "/v1/jobs")
    assert_problem(result, 405)
    assert "GET" in result.headers["allow"] and "POST" in result.headers["allow"]


def test_a_query_parameter_where_none_is_taken_is_a_400(api: Api) -> None:
    for path in ("/v1/queues", "/v1/workers", "/v1/schedulers"):
        assert_problem(api.get(path, params={"x": "1"}), 400, "x")


# --- authentication -----------------------------------------------------------------------


@pytest.fixture
def secured() -> Api:
    return make_api(tokens=TOKENS)


def test_without_a_token_every_v1_request_is_a_401_and_nothing_is_stored(secured: Api) -> None:
    for method, path, body in [
        ("POST", "/v1/jobs", {"task": "sleep"}),
        ("POST", "/v1/jobs/batch", {"jobs": [{"task": "sleep"}]}),
        ("GET", "/v1/jobs", None),
        ("GET", "/v1/queues", None),
        ("POST", "/v1/queues/mail/pause", None),
        ("GET", "/v1/no-such-thing", None),
    ]:
        result = secured.call(method, path, json_body=body, token="")
        doc = assert_problem(result, 401)
        assert doc["type"] == "urn:taskyard:problem:unauthorized"
        assert result.headers["www-authenticate"] == 'Bearer realm="taskyard"'
    assert secured.stored() == [] and secured.store.state.paused == set()


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong", "Bearer s3cret-tokenX", "Bearer s3cret", "Basic czNjcmV0LXRva2Vu", "Bearer"],
)
def test_a_wrong_token_is_a_401(secured: Api, authorization: str) -> None:
    result = secured.client.simulate_post(
        "/v1/jobs", json={"task": "sleep"}, headers={"Authorization": authorization}
    )
    assert_problem(result, 401)
    assert result.headers["www-authenticate"].startswith("Bearer")
    assert secured.stored() == []


def test_a_wrong_token_is_told_it_is_invalid(secured: Api) -> None:
    result = secured.client.simulate_get("/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert result.headers["www-authenticate"] == 'Bearer realm="taskyard", error="invalid_token"'


def test_each_configured_token_is_accepted(secured: Api) -> None:
    for token in TOKENS:
        result = secured.call("POST", "/v1/jobs", json_body={"task": "sleep"}, token=token)
        assert result.status_code == 201
    lower_scheme = secured.client.simulate_get(
        "/v1/jobs", headers={"Authorization": f"bearer {TOKENS[1]}"}
    )
    assert lower_scheme.status_code == 200
    assert len(secured.stored()) == 2


def test_the_open_paths_need_no_token(secured: Api) -> None:
    for path in ("/", "/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert secured.call("GET", path, token="").status_code == 200, path


def test_the_token_is_checked_before_the_body(secured: Api) -> None:
    result = secured.call("POST", "/v1/jobs", body="{broken", token="")
    assert_problem(result, 401)


def test_the_landing_page_says_whether_a_token_is_needed(secured: Api, api: Api) -> None:
    assert "need <code>Authorization: Bearer" in secured.get("/").text
    assert "need no token" in api.get("/").text


def test_the_request_id_is_echoed_on_refusals(secured: Api) -> None:
    result = secured.call("GET", "/v1/jobs", token="", headers={"X-Request-ID": "r-1"})
    assert result.status_code == 401 and result.headers["x-request-id"] == "r-1"
