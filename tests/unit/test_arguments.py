"""A job's args are checked against its handler's parameters: the rule is Python's own."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from hypothesis import given

from taskyard.domain.arguments import ANY, Parameters, parameters_of
from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.catalog import args_problems
from taskyard.domain.context import JobContext, TaskSpec
from tests.strategies import handler_signatures, task_args


def _handler(signature: inspect.Signature) -> Any:
    def handler(*args: Any, **kwargs: Any) -> None:
        return None

    handler.__signature__ = signature  # type: ignore[attr-defined]
    return handler


@given(handler_signatures(), task_args)
def test_args_are_refused_exactly_when_the_handler_could_not_take_them(
    signature: inspect.Signature, args: dict[str, int]
) -> None:
    problems = parameters_of(_handler(signature)).problems(args)
    try:
        signature.bind(**args)
    except TypeError:
        assert problems, f"{signature} cannot take {args}, yet nothing was refused"
    else:
        assert problems == [], f"{signature} takes {args}, yet {problems} were refused"


@given(handler_signatures(), task_args)
def test_each_problem_names_one_argument_it_is_about(
    signature: inspect.Signature, args: dict[str, int]
) -> None:
    params = parameters_of(_handler(signature))
    for problem in params.problems(args):
        name = problem.field.removeprefix("args.")
        assert problem.field == f"args.{name}"
        if problem.message == "required":
            assert name in params.names and name not in args
        else:
            assert name in args and name not in params.names and not params.any_other


@given(handler_signatures(), task_args)
def test_the_catalogs_form_of_the_parameters_checks_as_the_function_does(
    signature: inspect.Signature, args: dict[str, int]
) -> None:
    params = parameters_of(_handler(signature))
    published = Parameters.from_json(params.to_json())
    assert published.problems(args) == params.problems(args)


def test_a_refusal_says_what_the_handler_takes() -> None:
    def send(user_id: int, lang: str = "en") -> None: ...

    [unknown, missing] = parameters_of(send).problems({"user": 1})
    assert (unknown.field, unknown.message) == (
        "args.user",
        "unknown argument (it takes 'user_id' and 'lang')",
    )
    assert (missing.field, missing.message) == ("args.user_id", "required")

    def nothing() -> None: ...

    [problem] = parameters_of(nothing).problems({"x": 1})
    assert problem.message == "unknown argument (it takes none)"


def test_the_context_is_not_an_argument() -> None:
    def handler(ctx: JobContext, invoice_id: int) -> None: ...

    spec = TaskSpec(name="t", handler=handler)
    assert spec.params.names == ("invoice_id",)
    assert spec.params.positional == ("invoice_id",)


def test_positional_values_take_the_names_of_the_positional_parameters() -> None:
    def handler(a: int, b: int = 2, *, c: int = 3) -> None: ...

    params = parameters_of(handler)
    assert params.bind((1,), {"c": 4}) == {"a": 1, "c": 4}
    with pytest.raises(TypeError, match="takes 2 positional argument"):
        params.bind((1, 2, 3), {})
    with pytest.raises(TypeError, match="multiple values for argument 'a'"):
        params.bind((1,), {"a": 1})


def test_a_required_positional_only_parameter_cannot_be_a_tasks() -> None:
    def handler(a: int, /) -> None: ...

    with pytest.raises(ValueError, match="'a' is positional-only"):
        parameters_of(handler)


def test_a_signature_that_cannot_be_read_takes_anything() -> None:
    def handler() -> None: ...

    handler.__signature__ = "not a signature"  # type: ignore[attr-defined]
    assert parameters_of(handler) == ANY
    assert ANY.problems({"anything": 1}) == []


def test_built_in_tasks_are_checked_by_the_operators_policy() -> None:
    policy = BuiltinPolicy()
    [problem] = args_problems("sleep", {"seconds": -1}, None, builtins=policy)
    assert problem.field == "args.seconds"
    assert args_problems("elsewhere", {"x": 1}, None, builtins=policy) == ()
