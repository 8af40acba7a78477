"""The context is handed to the parameter annotated `JobContext`, whatever its name, and
that parameter is no job argument: not in the catalog, not accepted at enqueue.

This module has `from __future__ import annotations`, so its handlers' annotations are
text (`"taskyard.JobContext"`); one handler is compiled without it to have the class."""

from __future__ import annotations

import pytest

import taskyard
from taskyard.domain.context import TaskSpec, context_parameter
from taskyard.testing import TestRunner

app = taskyard.App("memory://")


@app.task()
def charge(amount: int, job: taskyard.JobContext) -> str:
    return f"charged {amount} on attempt {job.attempt} of {job.job_id}"


@app.task()
def label(text: str, *, context: taskyard.JobContext, suffix: str = "") -> str:
    context.checkpoint({"seen": text})
    return text + suffix


SOURCE_WITHOUT_FUTURE = """
import taskyard

def measure(c: taskyard.JobContext, size: int) -> int:
    return size * c.attempt
"""


def _compiled_without_future() -> object:
    namespace: dict[str, object] = {}
    exec(compile(SOURCE_WITHOUT_FUTURE, "<handler>", "exec"), namespace)
    return namespace["measure"]


def test_the_parameter_annotated_job_context_gets_the_context_whatever_its_name() -> None:
    measure = app.task(name="measure")(_compiled_without_future())  # type: ignore[arg-type]
    with TestRunner(app) as runner:
        charged = charge.enqueue(amount=3)
        labelled = label.enqueue(text="box", suffix="!")
        measured = measure.enqueue(size=4)
        runner.run_until_idle()
        assert runner.get(charged).result == f"charged 3 on attempt 1 of {charged.id}"
        assert runner.get(labelled).result == "box!"
        assert runner.get(labelled).checkpoint == {"seen": "box"}
        assert runner.get(measured).result == 4


def test_the_context_parameter_is_no_argument_of_the_catalog_or_of_an_enqueue() -> None:
    assert charge.spec.info().params.names == ("amount",)
    assert label.spec.info().params.names == ("text", "suffix")
    with TestRunner(app) as runner:
        with pytest.raises(taskyard.ValidationError) as refused:
            app.enqueue(charge, args={"amount": 1, "job": 2})
        assert [(e.field, e.message) for e in refused.value.errors] == [
            ("args.job", "unknown argument (it takes 'amount')")
        ]
        assert runner.jobs() == []
        assert charge.enqueue(5).args == {"amount": 5}, "positional values skip the context"


def test_which_parameter_is_the_context() -> None:
    def first_named_ctx(ctx, n: int) -> None: ...  # type: ignore[no-untyped-def]

    def none(n: int, job: dict[str, int]) -> None: ...

    def quoted(n: int, c: "taskyard.JobContext") -> None: ...  # noqa: UP037

    def positional_only(c: taskyard.JobContext, /, n: int = 0) -> None: ...

    assert context_parameter(first_named_ctx) == "ctx"
    assert context_parameter(none) is None
    assert context_parameter(quoted) == "c"
    assert context_parameter(positional_only) is None, "a context is handed in by name"
    assert context_parameter(_compiled_without_future()) == "c"  # type: ignore[arg-type]
    assert TaskSpec(name="t", handler=charge.func).context == "job"
