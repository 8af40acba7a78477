"""`App.submission` for a task registered in the app that sets nothing but args validates
the task's defaults once (`Client.plain`) and each job's args alone (`Client.with_args`).
It must accept and refuse exactly what the whole parse does, naming the same fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import taskyard
from taskyard.domain.errors import ValidationError
from taskyard.domain.submission import Submission
from tests.strategies import args_values, edge_text, json_values, junk

app = taskyard.App("memory://")


@app.task(queue="mail", priority=3, max_attempts=5, timeout=30)
def send(to: str, count: int = 1, *, note: str | None = None) -> None: ...


@app.task()
def anything(**kwargs: Any) -> None: ...


def _whole_parse(name: str, args: object) -> Submission | list[tuple[str, str]]:
    """What the whole parse of `{"task": name, "args": args}` gives: the submission, or the
    problems it names."""
    try:
        return app.client.parse({"task": name, "args": args}, local=app._task_info)
    except ValidationError as exc:
        return [(e.field, e.message) for e in exc.errors]


def _fast(name: str, args: object) -> Submission | list[tuple[str, str]]:
    try:
        return app.submission(name, args=args)  # type: ignore[arg-type]
    except ValidationError as exc:
        return [(e.field, e.message) for e in exc.errors]


arg_dicts = st.dictionaries(
    st.one_of(st.sampled_from(["to", "count", "note", "other"]), edge_text),
    st.one_of(args_values, json_values, junk),
    max_size=4,
)


@settings(max_examples=300)
@given(args=arg_dicts, name=st.sampled_from(["send", "anything"]))
def test_a_submission_of_args_only_is_what_the_whole_parse_gives(
    args: dict[str, Any], name: str
) -> None:
    task = f"{__name__}.{name}"
    assert _fast(task, args) == _whole_parse(task, args)


@given(args=junk)
def test_args_that_are_not_an_object_are_refused_as_the_whole_parse_refuses_them(
    args: object,
) -> None:
    task = f"{__name__}.send"
    base = app.client.plain(task, local=app._task_info)
    try:
        fast: object = app.client.with_args(base, args, local=app._task_info)
    except ValidationError as exc:
        fast = [(e.field, e.message) for e in exc.errors]
    assert fast == _whole_parse(task, args)
    if not isinstance(args, dict):
        assert isinstance(fast, list) and ("args", "must be a JSON object") in fast


def test_the_task_defaults_are_filled_and_the_args_are_the_caller_s_copy() -> None:
    args = {"to": "ada", "count": 2}
    job = app.submission(f"{__name__}.send", args=args)
    assert (job.queue, job.priority, job.max_attempts, job.timeout_s) == ("mail", 3, 5, 30)
    assert job.args == args and job.args is not args
    args["count"] = 3
    assert job.args["count"] == 2, "the submission keeps what was sent"


def test_a_task_registered_again_gets_its_new_defaults() -> None:
    other = taskyard.App("memory://")

    @other.task("t", queue="first")
    def first(x: int) -> None: ...

    assert other.submission("t", args={"x": 1}).queue == "first"

    @other.task("t", queue="second")
    def second(y: int) -> None: ...

    assert other.submission("t", args={"y": 1}).queue == "second"
    with pytest.raises(ValidationError, match=r"args\.y: required"):
        other.submission("t", args={"x": 1})


def test_options_and_tasks_not_registered_here_take_the_whole_parse() -> None:
    job = app.submission(f"{__name__}.send", args={"to": "a"}, priority=9, queue="other")
    assert (job.queue, job.priority) == ("other", 9)
    with pytest.raises(ValidationError, match=r"args\.seconds"):
        app.submission("sleep", args={"seconds": "x"})
    elsewhere = app.submission("published.elsewhere", args={"a": 1})
    assert elsewhere.queue == "default"
    with pytest.raises(ValidationError, match="task"):
        app.submission("bad task name\x00", args={})
