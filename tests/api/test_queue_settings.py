"""`GET`/`PUT /v1/queues/{name}`: a queue's limits, weight and own retention, replaced
whole; hostile bodies are a 422 naming the field (or a 400 for what is not JSON), never a
5xx, and a refusal stores nothing. `/v1/queues` shows limits and usage, `/v1/jobs/{id}`
why a job waits, `/metrics` the limits by queue."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskyard.domain import contract
from taskyard.domain.errors import ValidationError
from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.model import JobState
from taskyard.domain.ports import ClaimRequest
from taskyard.domain.queue_settings import parse_settings
from tests.api.conftest import Api, assert_problem, make_api
from tests.api.test_contract import DOCUMENT, HOSTILE
from tests.api.test_system import samples
from tests.strategies import bodies, junk

S = JobState
NONE = {
    "concurrency_limit": None,
    "key_concurrency_limit": None,
    "rate_limit": None,
    "key_rate_limit": None,
    "weight": 1,
    "retention_seconds": None,
}
FULL = {
    "concurrency_limit": 2,
    "key_concurrency_limit": 1,
    "rate_limit": {"count": 100, "period_seconds": 60},
    "key_rate_limit": {"count": 5, "period_seconds": 0.5},
    "weight": 3,
    "retention_seconds": {"succeeded": 3600, "dead": 0},
}


def put(api: Api, name: str, body: Any, **kwargs: Any) -> Any:
    return api.call("PUT", f"/v1/queues/{name}", body=json.dumps(body), **kwargs)


def stored(api: Api) -> tuple[Any, Any]:
    return api.store.queue_limits(), api.store.retention_overrides()


def test_a_queue_without_settings_has_the_defaults(api: Api) -> None:
    got = api.get("/v1/queues/reports")
    assert got.status_code == 200
    assert got.json == {"name": "reports", **NONE}


def test_put_stores_every_setting_and_get_shows_them_as_put(api: Api) -> None:
    answer = put(api, "reports", FULL)
    assert answer.status_code == 200, answer.text
    expected = {"name": "reports", **FULL}
    expected["key_rate_limit"] = {"count": 5, "period_seconds": 0.5}
    assert answer.json == expected
    assert api.get("/v1/queues/reports").json == expected
    limits, retention = stored(api)
    assert limits == {
        "reports": QueueLimits(
            concurrency_limit=2,
            key_concurrency_limit=1,
            rate_limit=RateLimit(count=100, period_s=60),
            key_rate_limit=RateLimit(count=5, period_s=0.5),
            weight=3,
        )
    }
    assert retention == {"reports": {S.SUCCEEDED: 3600, S.DEAD: 0}}


def test_a_put_replaces_the_settings_whole(api: Api) -> None:
    assert put(api, "reports", FULL).status_code == 200
    answer = put(api, "reports", {"weight": 2})
    assert answer.json == {"name": "reports", **NONE, "weight": 2}
    assert stored(api) == ({"reports": QueueLimits(weight=2)}, {})
    assert put(api, "reports", {}).json == {"name": "reports", **NONE}
    assert stored(api) == ({}, {})
    # The same PUT twice is the same as once.
    assert put(api, "reports", FULL).json == put(api, "reports", FULL).json


def test_null_is_no_limit_and_a_retention_state_left_out_follows_the_default(api: Api) -> None:
    body = {**NONE, "retention_seconds": {"succeeded": None, "cancelled": 60}}
    answer = put(api, "reports", body)
    assert answer.json["retention_seconds"] == {"cancelled": 60}
    assert stored(api) == ({}, {"reports": {S.CANCELLED: 60}})


HOSTILE_BODIES: list[tuple[Any, str]] = [
    ({"concurrency_limit": 0}, "concurrency_limit"),
    ({"concurrency_limit": -1}, "concurrency_limit"),
    ({"concurrency_limit": True}, "concurrency_limit"),
    ({"concurrency_limit": 1.5}, "concurrency_limit"),
    ({"concurrency_limit": 2.0}, "concurrency_limit"),
    ({"concurrency_limit": "2"}, "concurrency_limit"),
    ({"concurrency_limit": 1_000_001}, "concurrency_limit"),
    ({"concurrency_limit": 10**400}, "concurrency_limit"),
    ({"concurrency_limit": -(10**400)}, "concurrency_limit"),
    ({"key_concurrency_limit": []}, "key_concurrency_limit"),
    ({"key_concurrency_limit": {"n": 1}}, "key_concurrency_limit"),
    ({"key_concurrency_limit": False}, "key_concurrency_limit"),
    ({"rate_limit": {"count": 0, "period_seconds": 1}}, "rate_limit.count"),
    ({"rate_limit": {"count": 1, "period_seconds": 0}}, "rate_limit.period_seconds"),
    ({"rate_limit": {"count": 1, "period_seconds": -1}}, "rate_limit.period_seconds"),
    ({"rate_limit": {"count": 1, "period_seconds": 1e-4}}, "rate_limit.period_seconds"),
    ({"rate_limit": {"count": 1, "period_seconds": 5e-324}}, "rate_limit.period_seconds"),
    ({"rate_limit": {"count": 1, "period_seconds": 86_401}}, "rate_limit.period_seconds"),
    ({"rate_limit": {"count": 1, "period_seconds": 1e308}}, "rate_limit.period_seconds"),
    ({"rate_limit": {"count": 1, "period_seconds": 10**400}}, "rate_limit.period_seconds"),
    ({"rate_limit": {"count": 1, "period_seconds": "60"}}, "rate_limit.period_seconds"),
    ({"rate_limit": {"count": 1, "period_seconds": True}}, "rate_limit.period_seconds"),
    ({"rate_limit": {"count": True, "period_seconds": 1}}, "rate_limit.count"),
    ({"rate_limit": {"count": 1.0, "period_seconds": 1}}, "rate_limit.count"),
    ({"rate_limit": {"count": 1_000_001, "period_seconds": 1}}, "rate_limit.count"),
    ({"rate_limit": {"count": {"a": [1, {"b": None}]}, "period_seconds": 1}}, "rate_limit.count"),
    ({"rate_limit": {"count": json.loads('{"a": ' * 300 + "1" + "}" * 300)}}, "rate_limit"),
    ({"rate_limit": {"count": "1\x00", "period_seconds": "\u202e"}}, "rate_limit.count"),
    ({"rate_limit": {"count": 1}}, "rate_limit"),
    ({"rate_limit": {}}, "rate_limit"),
    ({"rate_limit": {"count": 1, "period_seconds": 1, "burst": 2}}, "rate_limit.burst"),
    ({"rate_limit": "100/60"}, "rate_limit"),
    ({"rate_limit": [100, 60]}, "rate_limit"),
    ({"rate_limit": 100}, "rate_limit"),
    ({"key_rate_limit": {"count": -5, "period_seconds": 1}}, "key_rate_limit.count"),
    ({"key_rate_limit": True}, "key_rate_limit"),
    ({"weight": 0}, "weight"),
    ({"weight": None}, "weight"),
    ({"weight": 1001}, "weight"),
    ({"weight": False}, "weight"),
    ({"weight": "3"}, "weight"),
    ({"weight": [3]}, "weight"),
    ({"retention_seconds": {"succeeded": -1}}, "retention_seconds.succeeded"),
    ({"retention_seconds": {"dead": True}}, "retention_seconds.dead"),
    ({"retention_seconds": {"dead": 1.5}}, "retention_seconds.dead"),
    ({"retention_seconds": {"dead": 10**12}}, "retention_seconds.dead"),
    ({"retention_seconds": {"cancelled": "60"}}, "retention_seconds.cancelled"),
    ({"retention_seconds": {"running": 1}}, "retention_seconds.running"),
    ({"retention_seconds": {"\x00": 1}}, "retention_seconds.\x00"),
    ({"retention_seconds": 60}, "retention_seconds"),
    ({"retention_seconds": [60]}, "retention_seconds"),
    ({"colour": "red"}, "colour"),
    ({"Weight": 2}, "Weight"),
    ({"\x00": 1}, "\x00"),
    ({"name": "other"}, "name"),
]


@pytest.mark.parametrize(("body", "field"), HOSTILE_BODIES, ids=repr)
def test_a_bad_value_is_a_422_naming_its_field_and_stores_nothing(
    api: Api, body: Any, field: str
) -> None:
    assert put(api, "reports", FULL).status_code == 200
    before = stored(api)
    assert_problem(put(api, "reports", body), 422, field)
    assert stored(api) == before


def test_every_problem_is_named_at_once_and_a_good_part_is_not_stored(api: Api) -> None:
    body = {"concurrency_limit": 3, "weight": 0, "retention_seconds": {"dead": -1}}
    problem = assert_problem(put(api, "reports", body), 422, "weight", "retention_seconds.dead")
    assert len(problem["errors"]) == 2
    assert stored(api) == ({}, {})
    unknown = assert_problem(put(api, "reports", {"burst": 1, "weight": 2}), 422, "burst")
    assert unknown["errors"] == [{"field": "burst", "message": "not a field of queue settings"}]
    assert stored(api) == ({}, {})


@pytest.mark.parametrize(
    "raw",
    [
        '{"weight": NaN}',
        '{"rate_limit": {"count": 1, "period_seconds": Infinity}}',
        '{"rate_limit": {"count": 1, "period_seconds": 1e999}}',
        '{"weight": 1, "weight": 2}',
        "[]",
        '"x"',
        "null",
        "",
        '{"weight": 1',
        '{"rate_limit": {"count": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}}",
    ],
)
def test_what_is_not_a_json_object_is_a_400(api: Api, raw: str) -> None:
    assert_problem(api.call("PUT", "/v1/queues/reports", body=raw), 400)
    assert stored(api) == ({}, {})


def test_a_body_that_is_not_json_is_a_415_and_a_huge_one_a_413(api: Api) -> None:
    refused = api.call("PUT", "/v1/queues/reports", body="weight=2", content_type="text/plain")
    assert_problem(refused, 415)
    huge = json.dumps({"colour": "x" * (1024 * 1024)})
    assert_problem(api.call("PUT", "/v1/queues/reports", body=huge), 413)
    assert stored(api) == ({}, {})


@pytest.mark.parametrize("name", ["no%20spaces", "a%00b", "x" * 101, "nl%0A", "%C3%A9t%C3%A9"])
def test_a_malformed_queue_name_is_not_found(api: Api, name: str) -> None:
    assert_problem(api.get(f"/v1/queues/{name}"), 404)
    assert_problem(put(api, name, {"weight": 2}), 404)
    assert stored(api) == ({}, {})


def test_settings_need_the_token_when_one_is_configured() -> None:
    secured = make_api(tokens=("s3cret-token",))
    assert_problem(put(secured, "reports", FULL, token=""), 401)
    assert_problem(secured.get("/v1/queues/reports", token=""), 401)
    assert stored(secured) == ({}, {})
    assert put(secured, "reports", FULL).status_code == 200


@HOSTILE
@given(body=st.one_of(bodies(contract.QUEUE_SETTINGS_INPUT), junk))
def test_a_put_drawn_from_the_declaration_is_a_4xx_or_stored_as_sent(body: Any) -> None:
    api = make_api()
    result = put(api, "drawn", body)
    assert result.status_code < 500, result.text
    if result.status_code >= 400:
        assert stored(api) == ({}, {})
        return
    assert result.status_code == 200
    assert api.get("/v1/queues/drawn").json == result.json
    for name, default in NONE.items():
        if name == "retention_seconds":
            sent = {k: v for k, v in (body.get(name) or {}).items() if v is not None}
            assert result.json[name] == (sent or None)
        else:
            sent_value = body.get(name, default)
            assert result.json[name] == (default if sent_value is None else sent_value), name


def _conforms(value: Any) -> bool:
    schema = {
        "$ref": f"#/components/schemas/{contract.QUEUE_SETTINGS_INPUT.name}",
        "components": DOCUMENT["components"],
    }
    try:
        jsonschema.Draft202012Validator(schema).validate(value)
    except jsonschema.ValidationError:
        return False
    return True


def _integral_float(value: Any) -> bool:
    """JSON Schema takes 2.0 for an integer; the API does not (a float is no count)."""
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_integral_float(v) for v in value.values())
    return False


@settings(max_examples=300, deadline=None)
@given(body=bodies(contract.QUEUE_SETTINGS_INPUT))
def test_the_settings_parser_accepts_exactly_what_the_openapi_schema_allows(body: Any) -> None:
    """The declaration (`contract.QUEUE_SETTINGS_INPUT`, rendered into the OpenAPI
    document) and the rules the API applies (`flow.parse_limits`,
    `retention.parse_periods`) agree, but for a float where an integer belongs, and text
    a store cannot hold."""
    try:
        parse_settings(body)
        accepted = True
    except ValidationError:
        accepted = False
    if _integral_float(body) or "\x00" in json.dumps(body):
        assert not accepted or _conforms(body)
        return
    assert accepted == _conforms(body), body


# --- listing, waiting reasons, metrics -------------------------------------------------------


def test_queues_show_limits_and_usage(api: Api) -> None:
    put(api, "mail", {"concurrency_limit": 2, "rate_limit": {"count": 3, "period_seconds": 60}})
    for _ in range(4):
        api.submit(queue="mail")
    api.submit(queue="sms")
    claimed = api.store.claim(ClaimRequest(worker="w", limit=10, lease_ttl_s=30))
    assert sorted(j.queue for j in claimed) == ["mail", "mail", "sms"]
    queues = {q["name"]: q for q in api.get("/v1/queues").json["queues"]}
    assert queues["mail"]["limits"] == {
        "concurrency_limit": 2,
        "key_concurrency_limit": None,
        "rate_limit": {"count": 3, "period_seconds": 60},
        "key_rate_limit": None,
        "weight": 1,
    }
    assert queues["mail"]["usage"] == {"running": 2, "started_in_window": 2}
    assert queues["sms"]["limits"] == QueueLimits().to_json()
    assert queues["sms"]["usage"] == {"running": 1, "started_in_window": None}
    # A lease that lapsed gives its place back before any reaper has run.
    api.clock.advance(31)
    mail = next(q for q in api.get("/v1/queues").json["queues"] if q["name"] == "mail")
    assert mail["counts"]["running"] == 2
    assert mail["usage"] == {"running": 0, "started_in_window": 2}


def test_a_queue_with_limits_and_no_job_is_listed(api: Api) -> None:
    put(api, "idle", {"weight": 2})
    put(api, "kept", {"retention_seconds": {"dead": 5}})
    [idle] = api.get("/v1/queues").json["queues"]
    assert idle["name"] == "idle" and idle["limits"]["weight"] == 2
    assert idle["usage"] == {"running": 0, "started_in_window": None}


def test_a_job_says_why_it_waits_and_null_once_it_runs(api: Api) -> None:
    put(api, "mail", {"concurrency_limit": 1})
    first, second = api.submit(queue="mail"), api.submit(queue="mail")
    later = api.submit(queue="mail", delay_seconds=60)

    def reason(job: dict[str, Any]) -> Any:
        answer = api.get(f"/v1/jobs/{job['id']}").json
        assert list(answer) == [f.name for f in contract.JOB_DETAIL.fields]
        return answer["waiting_reason"]

    assert reason(first) == "no_free_worker"
    assert reason(later) == "run_at"
    [running] = api.store.claim(ClaimRequest(worker="w", limit=5, lease_ttl_s=30))
    assert str(running.id) == first["id"]
    assert reason(first) is None
    assert reason(second) == "concurrency_limit"
    api.post("/v1/queues/mail/pause")
    assert reason(second) == "queue_paused"


def test_metrics_show_limits_and_usage_by_queue_and_never_a_key(api: Api) -> None:
    put(api, "mail", {**FULL, "retention_seconds": None})
    api.submit(queue="mail", concurrency_key="tenant-1")
    api.submit(queue="sms", concurrency_key="tenant-2")
    api.store.claim(ClaimRequest(worker="w", limit=5, lease_ttl_s=30))
    got = samples(api)
    mail, sms = (("queue", "mail"),), (("queue", "sms"),)
    assert got[("taskyard_queue_running", mail)] == 1
    assert got[("taskyard_queue_running", sms)] == 1
    assert got[("taskyard_queue_started_in_window", mail)] == 1
    assert ("taskyard_queue_started_in_window", sms) not in got
    assert got[("taskyard_queue_concurrency_limit", mail)] == 2
    assert ("taskyard_queue_concurrency_limit", sms) not in got
    assert got[("taskyard_queue_key_concurrency_limit", mail)] == 1
    assert got[("taskyard_queue_rate_limit_starts", mail)] == 100
    assert got[("taskyard_queue_rate_limit_period_seconds", mail)] == 60
    assert got[("taskyard_queue_key_rate_limit_starts", mail)] == 5
    assert got[("taskyard_queue_key_rate_limit_period_seconds", mail)] == 0.5
    assert got[("taskyard_queue_weight", mail)] == 3
    assert got[("taskyard_queue_weight", sms)] == 1
    text = api.get("/metrics").text
    assert "tenant-" not in text
    for name, labels in got:
        if name.startswith("taskyard_queue_"):
            assert [k for k, _ in labels] == ["queue"], name
