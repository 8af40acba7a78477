"""Patterns match the whole string and numbers are ASCII digits: `"default\\n"` is not a
queue name, Arabic-Indic digits are not a limit, wherever a client or an operator writes them."""

from __future__ import annotations

import base64
import doctest
from uuid import UUID

import pytest

from taskyard.entrypoints import numbers
from tests.api.conftest import Api, assert_problem

ARABIC_TEN = "\u0661\u0660"


def test_a_queue_name_with_a_trailing_newline_is_refused_everywhere(api: Api) -> None:
    assert_problem(api.post("/v1/jobs", {"task": "t", "queue": "default\n"}), 422, "queue")
    assert_problem(api.post("/v1/jobs/cancel", {"queue": "default\n"}), 422, "queue")
    assert_problem(api.get("/v1/jobs", params={"queue": "default\n"}), 400, "queue")
    for action in ("pause", "resume"):
        assert_problem(api.post(f"/v1/queues/nlq%0A/{action}"), 404)
    assert api.stored() == []
    assert api.store.queues() == []


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/v1/jobs", "limit", ARABIC_TEN),
        ("/v1/jobs", "limit", "1_0"),
        ("/v1/jobs", "limit", "+10"),
        ("/v1/jobs", "limit", " 10"),
        ("/v1/stats", "window", "\u0663\u0666\u0660\u0660"),
        ("/v1/stats", "window", "\uff13\uff16\uff10\uff10"),  # full-width digits
    ],
)
def test_a_number_in_a_query_string_is_ascii_digits_only(
    api: Api, path: str, name: str, value: str
) -> None:
    assert_problem(api.get(path, params={name: value}), 400, name)


def test_a_cursor_and_a_run_at_must_match_as_a_whole(api: Api) -> None:
    job = api.submit()
    text = f"1.{UUID(job['id']).hex}\n"  # a cursor this API makes, plus a newline
    cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    assert_problem(api.get("/v1/jobs", params={"cursor": cursor}), 400, "cursor")
    for run_at in ("2026-11-22T10:00:00Z\n", "\u0662\u0660\u0662\u0667-11-22T10:00:00Z"):
        assert_problem(api.post("/v1/jobs", {"task": "t", "run_at": run_at}), 422, "run_at")
    assert len(api.stored()) == 1


def test_the_number_reader_doctests_hold() -> None:
    failures, attempted = doctest.testmod(numbers)
    assert failures == 0 and attempted > 0
