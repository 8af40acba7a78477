"""`POST /v1/jobs` (and the batch) take a W3C `traceparent` (and `tracestate`) header: the
jobs keep it as their trace context, so their attempts' spans join the caller's trace. A
malformed one is ignored with a warning, as W3C Trace Context asks of a receiver: the
job is stored, without a trace context, and nothing of the header is kept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskyard.domain.submission import trace_context_of_headers
from tests.api.conftest import Api, make_api

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


def test_a_traceparent_header_is_kept_as_the_jobs_trace_context(api: Api) -> None:
    one = api.post(
        "/v1/jobs", {"task": "sleep"}, headers={"traceparent": PARENT, "tracestate": STATE}
    )
    assert one.status_code == 201 and "warnings" not in one.json
    batch = api.post(
        "/v1/jobs/batch",
        {"jobs": [{"task": "sleep"}, {"task": "sleep"}]},
        headers={"traceparent": PARENT},
    )
    assert batch.status_code == 201 and "warnings" not in batch.json
    plain = api.post("/v1/jobs", {"task": "sleep"})
    contexts = {str(job.id): job.trace_context for job in api.stored()}
    assert contexts[one.json["id"]] == {"traceparent": PARENT, "tracestate": STATE}
    assert [contexts[j["id"]] for j in batch.json["jobs"]] == [{"traceparent": PARENT}] * 2
    assert contexts[plain.json["id"]] is None
    assert "trace_context" not in one.json, "the API does not show it"


HOSTILE = [
    "",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    PARENT + "\u0000",
    PARENT + "-extra",
    "x" * 10_000,
    PARENT.replace("-", "\t", 1),
]


@pytest.mark.parametrize("header", HOSTILE)
def test_a_malformed_traceparent_is_ignored_with_a_warning_naming_it(header: str) -> None:
    api = make_api()
    answer = api.post(
        "/v1/jobs", {"task": "sleep"}, headers={"traceparent": header, "tracestate": STATE}
    )
    assert answer.status_code == 201, answer.text
    [warning] = answer.json["warnings"]
    assert warning["field"] == "traceparent"
    assert warning["message"].startswith("ignored: must be a W3C traceparent")
    [job] = api.stored()
    assert job.trace_context is None, "nothing of a bad header is kept, tracestate neither"


def test_a_bad_tracestate_is_dropped_and_the_traceparent_kept(api: Api) -> None:
    answer = api.post(
        "/v1/jobs",
        {"task": "sleep"},
        headers={"traceparent": PARENT, "tracestate": "a=\u00e9" * 300},
    )
    assert answer.status_code == 201
    [job] = api.stored()
    assert job.trace_context == {"traceparent": PARENT}


@settings(max_examples=100, deadline=None)
@given(st.text(), st.one_of(st.none(), st.text()))
def test_any_header_text_gives_a_valid_context_or_a_warning(parent: str, state: str | None) -> None:
    context, problem = trace_context_of_headers(parent, state)
    assert (context is None) != (problem is None)
    if context is not None:
        assert context["traceparent"] == parent
        assert all(0x20 <= ord(c) <= 0x7E for value in context.values() for c in value)
