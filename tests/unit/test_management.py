"""Validation of changes, bulk filters and batches (pure domain)."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime
from typing import Any

import pytest

from taskyard.domain import management
from taskyard.domain.contract import BATCH_MAX
from taskyard.domain.errors import ValidationError
from taskyard.domain.management import Changes, parse_changes, parse_job_filter
from taskyard.domain.model import JobState
from taskyard.domain.submission import parse_batch


def fields(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [e.field for e in exc.value.errors]


def test_a_change_takes_priority_and_run_at_with_an_offset() -> None:
    change = parse_changes({"priority": -100, "run_at": "2026-11-22T12:00:00+02:00"})
    assert change == Changes(priority=-100, run_at=datetime(2026, 11, 22, 10, tzinfo=UTC))
    assert parse_changes({"run_at": "2026-11-22T10:00:00Z"}).priority is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, [""]),
        ({"queue": "x"}, ["queue"]),
        ({"priority": True}, ["priority"]),
        ({"priority": 1.0}, ["priority"]),
        (
            {"priority": 101, "run_at": "2026-11-22T10:00:00", "task": "t"},
            ["task", "priority", "run_at"],
        ),
        ({"run_at": None}, ["run_at"]),
    ],
)
def test_a_bad_change_names_every_field(data: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_changes(data)
    assert fields(caught) == expected


def test_a_filter_takes_strings_or_lists() -> None:
    job_filter = parse_job_filter(
        {"state": "dead", "queue": ["a", "b"], "task": "t"}, action="retry"
    )
    assert job_filter.states == {JobState.DEAD}
    assert job_filter.queues == {"a", "b"} and job_filter.tasks == {"t"}
    assert parse_job_filter({"state": ["queued", "running"]}, action="cancel").states == {
        JobState.QUEUED,
        JobState.RUNNING,
    }


@pytest.mark.parametrize(
    ("data", "action", "expected"),
    [
        ({}, "retry", [""]),
        ({"state": "queued"}, "retry", ["state"]),
        ({"state": "dead"}, "cancel", ["state"]),
        ({"state": "sleeping"}, "cancel", ["state"]),
        ({"queue": ["ok", "not ok"]}, "cancel", ["queue"]),
        ({"task": ""}, "cancel", ["task"]),
        ({"task": [1]}, "cancel", ["task"]),
        ({"queue": "a", "colour": "red"}, "cancel", ["colour"]),
    ],
)
def test_a_bad_filter_is_refused(data: dict[str, Any], action: str, expected: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_job_filter(data, action=action)
    assert fields(caught) == expected


def test_a_batch_names_the_fields_of_every_bad_item() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_batch({"jobs": [{"task": "a"}, {"task": "b", "priority": "x"}, [], {"queue": "q"}]})
    assert fields(caught) == ["jobs[1].priority", "jobs[2]", "jobs[3].task"]
    assert [s.task for s in parse_batch({"jobs": [{"task": "a"}, {"task": "b"}]})] == ["a", "b"]


@pytest.mark.parametrize(
    "data",
    [{"jobs": []}, {"jobs": [{"task": "a"}] * (BATCH_MAX + 1)}, {"jobs": "a"}, {}, []],
)
def test_a_batch_holds_1_to_1000_submissions(data: Any) -> None:
    with pytest.raises(ValidationError):
        parse_batch(data)


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(management)
    assert result.attempted > 0 and result.failed == 0
