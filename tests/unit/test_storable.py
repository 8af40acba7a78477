"""The one rule of what a store can hold: NUL, surrogates, non-finite numbers and non-JSON
values are named by path; everything else passes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskyard.domain.errors import ValidationError
from taskyard.domain.management import parse_job_filter
from taskyard.domain.storable import INT_DIGITS_MAX, escape_text, json_problems, text_problem
from taskyard.domain.submission import check_correlation_id, parse_batch, parse_submission
from tests.strategies import json_values


def every_store_can_write(value: Any) -> bool:
    """The oracle: what the stores themselves do with a value (strict JSON text, written as
    UTF-8, and no NUL, which PostgreSQL's jsonb refuses even escaped)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (TypeError, ValueError):
        return False
    return "\x00" not in text and "\\u0000" not in text


@given(json_values)
def test_a_value_is_named_unstorable_exactly_when_a_store_could_not_write_it(value: Any) -> None:
    assert (json_problems(value, "args") == []) == every_store_can_write(value)


@given(st.text())
def test_escaped_text_is_always_storable_and_storable_text_is_left_alone(text: str) -> None:
    escaped = escape_text(text)
    assert text_problem(escaped) is None
    assert (escaped == text) == (text_problem(text) is None)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"key": "v\x00"}, "args.key"),
        ({"a": [1, 2, "\x00"]}, "args.a[2]"),
        ({"deep": {"deeper": [{"x": "\ud800"}]}}, "args.deep.deeper[0].x"),
        ({"k\x00": 1}, "args.k\\x00"),
        ({"n": math.nan}, "args.n"),
        ({"n": [math.inf]}, "args.n[0]"),
        ({"big": 10**INT_DIGITS_MAX}, "args.big"),
        ({"when": {1, 2}}, "args.when"),
        ({1: "x"}, "args"),
    ],
)
def test_the_problem_is_named_by_its_path(value: Any, field: str) -> None:
    assert [e.field for e in json_problems(value, "args")] == [field]


def test_a_deep_value_is_walked_without_recursion() -> None:
    value: Any = "\x00"
    for _ in range(100_000):
        value = [value]
    [problem] = json_problems({"a": value}, "args")
    assert problem.field.endswith("[0][0]")


def test_a_submission_names_each_unstorable_field_and_the_batch_names_the_item() -> None:
    with pytest.raises(ValidationError) as refused:
        parse_submission(
            {"task": "t\x00", "args": {"a": "\x00"}, "idempotency_key": "k\x00"},
            idempotency_key_header="h\x00",
        )
    assert {e.field for e in refused.value.errors} == {
        "task",
        "args.a",
        "idempotency_key",
        "Idempotency-Key",
    }
    with pytest.raises(ValidationError) as batch:
        parse_batch({"jobs": [{"task": "ok"}, {"task": "t", "args": {"x": ["\x00"]}}]})
    assert [e.field for e in batch.value.errors] == ["jobs[1].args.x[0]"]


def test_a_bulk_filter_and_a_correlation_id_follow_the_same_rule() -> None:
    with pytest.raises(ValidationError) as refused:
        parse_job_filter({"task": ["ok", "t\x00"]}, action="cancel")
    assert [e.field for e in refused.value.errors] == ["task"]
    for bad in ("c\x00", "\udfff", "", "x" * 201):
        with pytest.raises(ValidationError) as wrong:
            check_correlation_id(bad)
        assert [e.field for e in wrong.value.errors] == ["correlation_id"]
    check_correlation_id("order:42 \u2603")
