"""The task catalog's rules: a task's defaults fill exactly what a submission leaves out,
and a process reads the catalog at most once a `CATALOG_READ_EVERY_S`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskyard.domain.arguments import Parameters
from taskyard.domain.catalog import CATALOG_READ_EVERY_S, TaskCatalog, TaskInfo, with_defaults
from taskyard.domain.errors import StoreUnavailable
from taskyard.domain.retry import RetryPolicy
from taskyard.domain.submission import parse_submission
from tests.strategies import jitters, priorities, queue_names

DEFAULTED = ("queue", "priority", "max_attempts", "backoff", "timeout_seconds")


@st.composite
def declarable_policies(draw: st.DrawFn) -> RetryPolicy:
    """Retry policies a task may declare (within the contract's bounds)."""
    base = draw(st.floats(min_value=0.001, max_value=1000))
    return RetryPolicy(
        base_s=base,
        factor=draw(st.floats(min_value=1, max_value=10)),
        max_s=draw(st.floats(min_value=base, max_value=31_536_000)),
        jitter=draw(jitters),
    )


@st.composite
def task_infos(draw: st.DrawFn) -> TaskInfo:
    return TaskInfo(
        name="t",
        queue=draw(queue_names),
        priority=draw(priorities),
        max_attempts=draw(st.integers(min_value=1, max_value=1000)),
        backoff=draw(declarable_policies()),
        timeout_s=draw(st.one_of(st.none(), st.floats(min_value=0.001, max_value=86_400))),
        params=Parameters(any_other=True),
    )


@st.composite
def sent_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Some of the defaulted fields, as a client may send them."""
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["queue"] = draw(queue_names)
    if draw(st.booleans()):
        fields["priority"] = draw(priorities)
    if draw(st.booleans()):
        fields["max_attempts"] = draw(st.integers(min_value=1, max_value=1000))
    if draw(st.booleans()):
        fields["timeout_seconds"] = draw(st.one_of(st.none(), st.just(2.5)))
    if draw(st.booleans()):
        fields["backoff"] = draw(
            st.dictionaries(
                st.sampled_from(["base_seconds", "factor", "jitter"]),
                st.just(None),
                max_size=3,
            ).map(
                lambda d: {k: {"base_seconds": 3.0, "factor": 2.5, "jitter": "none"}[k] for k in d}
            )
        )
    return fields


@given(task_infos(), sent_fields())
def test_a_task_fills_what_a_submission_leaves_out_and_nothing_else(
    task: TaskInfo, sent: dict[str, Any]
) -> None:
    submission = parse_submission(with_defaults({"task": "t", **sent}, task))
    assert submission.queue == sent.get("queue", task.queue)
    assert submission.priority == sent.get("priority", task.priority)
    assert submission.max_attempts == sent.get("max_attempts", task.max_attempts)
    assert submission.timeout_s == sent.get("timeout_seconds", task.timeout_s)
    backoff = {**task.backoff.to_json(), **sent.get("backoff", {})}
    if backoff["max_seconds"] < backoff["base_seconds"]:  # the task's cap is below the base sent
        backoff["max_seconds"] = RetryPolicy().max_s
    assert submission.backoff.to_json() == backoff


def test_without_a_task_a_submission_is_left_as_sent() -> None:
    sent = {"task": "t", "priority": 2}
    assert with_defaults(sent, None) == sent
    assert parse_submission(with_defaults(sent, None)).queue == "default"


def test_a_field_given_as_something_to_refuse_stays_the_submissions() -> None:
    task = TaskInfo(
        name="t",
        queue="mail",
        priority=0,
        max_attempts=3,
        backoff=RetryPolicy(),
        timeout_s=5.0,
        params=Parameters(),
    )
    filled = with_defaults({"task": "t", "backoff": "fast", "queue": None}, task)
    assert filled["backoff"] == "fast" and filled["queue"] is None


class Reads:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=UTC)
        self.count = 0
        self.down = False
        self.tasks: list[TaskInfo] = []

    def read(self) -> list[TaskInfo]:
        if self.down:
            raise StoreUnavailable(message="down")
        self.count += 1
        return list(self.tasks)


def _info(name: str) -> TaskInfo:
    return TaskInfo(
        name=name,
        queue="q",
        priority=0,
        max_attempts=3,
        backoff=RetryPolicy(),
        timeout_s=None,
        params=Parameters(),
    )


def test_a_process_reads_the_catalog_at_most_once_a_second() -> None:
    reads = Reads()
    catalog = TaskCatalog(reads.read, lambda: reads.now)
    assert catalog.get("a") is None and reads.count == 1
    reads.tasks = [_info("a")]
    assert catalog.get("a") is None and catalog.get("b") is None and reads.count == 1
    reads.now += timedelta(seconds=CATALOG_READ_EVERY_S)
    assert catalog.get("a") == _info("a") and reads.count == 2


def test_a_failed_read_keeps_what_was_read_and_a_first_one_fails() -> None:
    reads = Reads()
    reads.down = True
    catalog = TaskCatalog(reads.read, lambda: reads.now)
    with pytest.raises(StoreUnavailable):
        catalog.get("a")
    reads.down = False
    reads.tasks = [_info("a")]
    assert catalog.get("a") == _info("a")
    reads.down = True
    reads.now += timedelta(seconds=5)
    assert catalog.get("a") == _info("a"), "the store is asked again, and what was read kept"
