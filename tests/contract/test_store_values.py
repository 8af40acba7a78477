"""Every store gives the same answer to the same submission: a value no store can hold
(NUL, a lone surrogate, NaN) is refused with 422 naming the field, before any store sees
it, through `POST /v1/jobs`, `/v1/jobs/batch`, the bulk filters, the listing and the
Python `App.enqueue`; a value every store can hold comes back unchanged."""

from __future__ import annotations

import math
from typing import Any

import pytest

from taskyard.domain.contract import DURATION_S_MIN
from taskyard.domain.errors import ValidationError
from taskyard.domain.ports import JobQuery, JobStore
from taskyard.domain.submission import parse_submission
from taskyard.entrypoints.library import App
from tests.api.conftest import Api, assert_problem, make_api


@pytest.fixture
def api(store: JobStore) -> Api:
    return make_api(wrap_store=lambda _memory: store)


def assert_nothing_stored(store: JobStore) -> None:
    assert list(store.list_jobs(JobQuery(limit=1000)).jobs) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task": "a\x00b"}, "task"),
        ({"task": "t", "args": {"key": "v\x00"}}, "args.key"),
        ({"task": "t", "args": {"a": [1, 2, "\x00"]}}, "args.a[2]"),
        ({"task": "t", "args": {"k\x00": 1}}, "args.k\\x00"),
        ({"task": "t", "args": {"deep": {"deeper": [{"x": "\x00"}]}}}, "args.deep.deeper[0].x"),
        ({"task": "t", "idempotency_key": "key\x00"}, "idempotency_key"),
        ({"task": "t", "queue": "q\x00"}, "queue"),
    ],
)
def test_a_value_no_store_can_hold_is_refused_naming_the_field(
    api: Api, store: JobStore, body: dict[str, Any], field: str
) -> None:
    assert_problem(api.post("/v1/jobs", body), 422, field)
    batch = {"jobs": [{"task": "fine"}, body]}
    assert_problem(api.post("/v1/jobs/batch", batch), 422, f"jobs[1].{field}")
    assert_nothing_stored(store)


@pytest.mark.parametrize("field", ["idempotency_key", "concurrency_key"])
@pytest.mark.parametrize(
    "char", ["\x01", "\x07", "\t", "\n", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"]
)
def test_a_key_with_a_control_character_is_refused_naming_it(
    api: Api, store: JobStore, field: str, char: str
) -> None:
    """The idempotency and concurrency keys are shown in logs and the dashboard, and a key
    is an identifier, not text: no C0 or C1 control character, nor DEL (a terminal escape
    in a key would reach whoever reads them)."""
    body = {"task": "t", field: f"tenant{char}1"}
    assert_problem(api.post("/v1/jobs", body), 422, field)
    assert_problem(
        api.post("/v1/jobs/batch", {"jobs": [{"task": "ok"}, body]}), 422, f"jobs[1].{field}"
    )
    with pytest.raises(ValidationError) as refused:
        parse_submission(body)
    assert [e.field for e in refused.value.errors] == [field]
    assert_nothing_stored(store)


@pytest.mark.parametrize("field", ["idempotency_key", "concurrency_key"])
def test_a_key_of_printable_characters_outside_ascii_is_kept(
    api: Api, store: JobStore, field: str
) -> None:
    for key in ("tenant 1/ü", "\u00a0\u2028\U0001f600", "~"):
        assert api.post("/v1/jobs", {"task": "t", field: key}).status_code in (200, 201)
    assert len(list(store.list_jobs(JobQuery(limit=10)).jobs)) == 3


def test_the_idempotency_key_header_follows_the_same_rule(api: Api, store: JobStore) -> None:
    result = api.post("/v1/jobs", {"task": "t"}, headers={"Idempotency-Key": "k\x00"})
    assert_problem(result, 422, "Idempotency-Key")
    assert_nothing_stored(store)


def test_filters_with_a_nul_are_refused_as_bad_input(api: Api, store: JobStore) -> None:
    assert api.submit(task="t")["task"] == "t"
    for action in ("cancel", "retry"):
        assert_problem(api.post(f"/v1/jobs/{action}", {"task": ["t", "t\x00"]}), 422, "task")
    assert_problem(api.get("/v1/jobs", params={"task": "t\x00"}), 400, "task")
    assert [job.state.value for job in store.list_jobs(JobQuery()).jobs] == ["queued"]


def test_the_python_enqueue_refuses_what_the_api_refuses(store: JobStore) -> None:
    app = App(include_builtins=False)
    app.use(store=store)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"args": {"a": "\x00"}}, "args.a"),
        ({"args": {"a": ["\ud800"]}}, "args.a[0]"),
        ({"args": {"a": {"b": math.nan}}}, "args.a.b"),
        ({"args": {"when": object()}}, "args.when"),
        ({"idempotency_key": "\x00"}, "idempotency_key"),
        ({"correlation_id": "c\x00"}, "correlation_id"),
    ]
    for options, field in cases:
        with pytest.raises(ValidationError) as refused:
            app.enqueue("t", **options)
        assert [e.field for e in refused.value.errors] == [field]
    assert_nothing_stored(store)


def test_a_value_every_store_can_hold_comes_back_unchanged(api: Api, store: JobStore) -> None:
    args = {
        "control": "\x01\x1f\x7f",
        "lines": "a\nb\r\n\u2028",
        "emoji": "\U0001f600",
        "bom": "\ufeff",
        "nested": [{"": None}, [True, False], -0.5, 2**62],
        "\u00e9t\u00e9": "key outside ASCII",
    }
    job = api.submit(task="t\u2603", args=args, idempotency_key="key \u00e9\u2603")
    assert job["args"] == args
    [stored] = store.list_jobs(JobQuery()).jobs
    assert stored.args == args and stored.task == "t\u2603"
    assert stored.idempotency_key == "key \u00e9\u2603"


@pytest.mark.parametrize("value", [5e-324, 1e-310, 0.000999, 0.001, 31_536_000])
def test_a_duration_gets_the_same_answer_from_every_store(
    api: Api, store: JobStore, value: float
) -> None:
    body = {
        "task": "t",
        "timeout_seconds": value,
        "backoff": {"base_seconds": value, "max_seconds": value},
    }
    delayed = {"task": "t", "delay_seconds": value}
    result = api.post("/v1/jobs/batch", {"jobs": [body, delayed]})
    if value < DURATION_S_MIN:
        assert_problem(
            result,
            422,
            "jobs[0].timeout_seconds",
            "jobs[0].backoff.base_seconds",
            "jobs[1].delay_seconds",
        )
        assert_nothing_stored(store)
        return
    assert result.status_code == 201, result.text
    timed = next(j for j in store.list_jobs(JobQuery()).jobs if j.timeout_s is not None)
    assert timed.timeout_s == value and timed.backoff.base_s == value
