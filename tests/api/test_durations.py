"""Every duration field takes any finite number without a 5xx: it is either refused with a
422 naming the field, or accepted, returned as sent, and honoured (a delay moves run_at
by exactly that much; a backoff's delays can be computed for every attempt)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskyard.domain.builtins import SLEEP_S_MAX, TASK_TIMEOUT_S_MAX, BuiltinPolicy
from taskyard.domain.contract import DELAY_S_MAX, DURATION_S_MIN, SECONDS_MAX
from taskyard.domain.errors import ValidationError
from taskyard.domain.submission import parse_submission
from tests.api.conftest import START, assert_problem, make_api

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True),
    st.sampled_from([5e-324, -5e-324, 2.2250738585072014e-308, 1e-310, 0.000999, 0.001]),
    st.integers(min_value=-(10**20), max_value=10**20),
)


def within(low: float, high: float, *, zero: bool = False) -> Any:
    return lambda v: (zero and v == 0) or low <= v <= high


@attrs.frozen
class Field:
    """How to send a value in this field, the field the API names, where the job shows
    it, and whether the value is one the API documents as accepted."""

    body: Any
    named: str
    shown: tuple[str, ...]
    accepted: Any


BASE_FOR_CAP = 2.5
FIELDS: dict[str, Field] = {
    "timeout_seconds": Field(
        lambda v: {"task": "t", "timeout_seconds": v},
        "timeout_seconds",
        ("timeout_seconds",),
        within(DURATION_S_MIN, SECONDS_MAX),
    ),
    "delay_seconds": Field(
        lambda v: {"task": "t", "delay_seconds": v},
        "delay_seconds",
        (),
        within(DURATION_S_MIN, DELAY_S_MAX, zero=True),
    ),
    "backoff.base_seconds": Field(
        lambda v: {"task": "t", "backoff": {"base_seconds": v, "max_seconds": SECONDS_MAX}},
        "backoff.base_seconds",
        ("backoff", "base_seconds"),
        within(DURATION_S_MIN, SECONDS_MAX),
    ),
    "backoff.max_seconds": Field(
        lambda v: {"task": "t", "backoff": {"base_seconds": BASE_FOR_CAP, "max_seconds": v}},
        "backoff.max_seconds",
        ("backoff", "max_seconds"),
        within(BASE_FOR_CAP, SECONDS_MAX),
    ),
    "sleep args.seconds": Field(
        lambda v: {"task": "sleep", "args": {"seconds": v}},
        "args.seconds",
        ("args", "seconds"),
        within(DURATION_S_MIN, SLEEP_S_MAX, zero=True),
    ),
    "http args.timeout_seconds": Field(
        lambda v: {"task": "http", "args": {"url": "http://127.0.0.1:9000/", "timeout_seconds": v}},
        "args.timeout_seconds",
        ("args", "timeout_seconds"),
        within(DURATION_S_MIN, TASK_TIMEOUT_S_MAX),
    ),
    "shell args.timeout_seconds": Field(
        lambda v: {"task": "shell", "args": {"argv": ["true"], "timeout_seconds": v}},
        "args.timeout_seconds",
        ("args", "timeout_seconds"),
        within(DURATION_S_MIN, TASK_TIMEOUT_S_MAX),
    ),
}
POLICY = BuiltinPolicy(http_allowed_hosts=frozenset({"127.0.0.1:9000"}), shell_enabled=True)


@pytest.mark.parametrize("name", sorted(FIELDS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=numbers)
def test_a_duration_is_refused_with_422_or_kept_and_honoured(name: str, value: float) -> None:
    field = FIELDS[name]
    api = make_api(builtins=POLICY)
    body = field.body(value)
    for path, payload, prefix in (
        ("/v1/jobs", body, ""),
        ("/v1/jobs/batch", {"jobs": [body]}, "jobs[0]."),
    ):
        result = api.post(path, payload)
        if not field.accepted(value):
            assert_problem(result, 422, prefix + field.named)
            continue
        assert result.status_code == 201, (path, result.text)
        job = result.json if not prefix else result.json["jobs"][0]
        shown: Any = job
        for part in field.shown:
            shown = shown[part]
        assert not field.shown or shown == value
        if name == "delay_seconds":
            [stored] = [j for j in api.stored() if str(j.id) == job["id"]]
            assert stored.run_at == START + timedelta(seconds=value)
    assert len(api.stored()) == (2 if field.accepted(value) else 0)


@settings(max_examples=300, deadline=None)
@given(
    base=numbers,
    factor=st.one_of(st.floats(min_value=1, allow_infinity=False), st.integers(1, 10**6)),
    cap=numbers,
)
def test_an_accepted_backoff_gives_a_delay_for_every_attempt(
    base: float, factor: float, cap: float
) -> None:
    try:
        submission = parse_submission(
            {"task": "t", "backoff": {"base_seconds": base, "factor": factor, "max_seconds": cap}}
        )
    except ValidationError:
        return
    policy = submission.backoff
    for attempt in (1, 2, 3, 10, 100, 1000, 10**6):
        ceiling = policy.ceiling_s(attempt=attempt)
        assert math.isfinite(ceiling) and policy.base_s <= ceiling <= policy.max_s
