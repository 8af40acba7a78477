"""A job's trace context is checked once (`submission.check_trace_context`), wherever it
comes from (a tracing hook, the API's headers): bounded, printable, W3C where it says so,
each bad entry named."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskyard.domain.errors import ValidationError
from taskyard.domain.submission import check_trace_context

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_w3c_context_is_kept_and_an_empty_one_is_none() -> None:
    context = {"traceparent": PARENT, "tracestate": "rojo=00f067aa0ba902b7", "baggage": "a=1"}
    assert check_trace_context(context) == context
    assert check_trace_context({}) is None
    assert check_trace_context(None) is None


@pytest.mark.parametrize(
    ("context", "fields"),
    [
        ({"traceparent": "00-abc"}, ["trace_context.traceparent"]),
        ({"traceparent": PARENT.upper()}, ["trace_context.traceparent"]),
        ({"tracestate": "a=\x00"}, ["trace_context.tracestate"]),
        ({"tracestate": "x" * 513}, ["trace_context.tracestate"]),
        ({"tracestate": 5}, ["trace_context.tracestate"]),
        ({"Traceparent": PARENT}, ["trace_context"]),
        ({"": "x"}, ["trace_context"]),
        ({f"k{i}": "v" for i in range(9)}, ["trace_context"]),
        ("00-abc", ["trace_context"]),
        (
            {"traceparent": "00-abc", "tracestate": "\u00e9"},
            ["trace_context.traceparent", "trace_context.tracestate"],
        ),
    ],
)
def test_a_bad_context_is_refused_naming_each_bad_entry(context: Any, fields: list[str]) -> None:
    with pytest.raises(ValidationError) as refused:
        check_trace_context(context)
    assert [e.field for e in refused.value.errors] == fields


@settings(max_examples=60)
@given(st.dictionaries(st.text(max_size=70), st.text(max_size=600), max_size=10))
def test_any_mapping_of_text_is_kept_whole_or_refused(context: dict[str, str]) -> None:
    try:
        kept = check_trace_context(context)
    except ValidationError:
        return  # the parametrized cases show what a refusal names
    assert kept == (context or None)
    assert all(0x20 <= ord(c) <= 0x7E for value in context.values() for c in value)
