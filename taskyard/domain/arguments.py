"""What a task's handler takes, and the check of a job's `args` against it.

A job's `args` are the handler's keyword arguments, so a handler is described by its
named parameters: each required or optional, and whether it takes any other name
(`**kwargs`). The description comes from the function's signature where the function is
at hand (`parameters_of`, for the Python library and the worker), and from the task
catalog elsewhere (the REST API and the CLI read what the workers published). Either
way a submission is checked by `Parameters.problems`, once, here:

    >>> def send_welcome(user_id: int, lang: str = "en") -> None: ...
    >>> for problem in parameters_of(send_welcome).problems({"user": 1}):
    ...     print(problem.field, "-", problem.message)
    args.user - unknown argument (it takes 'user_id' and 'lang')
    args.user_id - required

The context (`JobContext`) is handed in by the worker, never sent: its parameter is not
part of the description.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from taskyard.domain.errors import FieldError

NAMES_SHOWN_MAX = 10
"""How many of a handler's parameter names a refusal spells out."""


class Kind(enum.StrEnum):
    """How a parameter is given: `required` (no default) or `optional` (a default)."""

    REQUIRED = "required"
    OPTIONAL = "optional"


@attrs.frozen(kw_only=True)
class Parameter:
    name: str
    kind: Kind


@attrs.frozen(kw_only=True)
class Parameters:
    """A handler's named parameters, in order, and whether it takes any other name."""

    named: tuple[Parameter, ...] = ()
    any_other: bool = False
    """True for a handler with `**kwargs`: an arg of another name is not refused."""
    positional: tuple[str, ...] = attrs.field(default=(), eq=False)
    """The names a Python call may also give by position (`enqueue(42)`), in order: a
    Python call's business, not the catalog's (no part of equality)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.named)

    def problems(self, args: Mapping[str, Any]) -> list[FieldError]:
        """Every arg the handler does not take and every required one missing, each named
        by its path (`args.<name>`); none when the handler would accept them."""
        names = self.names
        errors: list[FieldError] = []
        if not self.any_other:
            unknown = sorted(key for key in args if key not in names)
            message = f"unknown argument ({self._takes()})"
            errors.extend(FieldError(f"args.{key}", message) for key in unknown)
        errors.extend(
            FieldError(f"args.{p.name}", "required")
            for p in self.named
            if p.kind is Kind.REQUIRED and p.name not in args
        )
        return errors

    def _takes(self) -> str:
        names = [repr(name) for name in self.names]
        if not names:
            return "it takes none"
        if len(names) > NAMES_SHOWN_MAX:
            shown = ", ".join(names[:NAMES_SHOWN_MAX]) + f" and {len(names) - NAMES_SHOWN_MAX} more"
        elif len(names) == 1:
            shown = names[0]
        else:
            shown = ", ".join(names[:-1]) + " and " + names[-1]
        return f"it takes {shown}"

    def bind(self, positional: Sequence[Any], named: Mapping[str, Any]) -> dict[str, Any]:
        """The args of a Python call `enqueue(*positional, **named)`: positional values
        take the names of the handler's positional parameters. Raises `TypeError`, as the
        call of the function itself would, for too many of them or a name given twice."""
        if len(positional) > len(self.positional):
            raise TypeError(
                f"takes {len(self.positional)} positional argument(s) but "
                f"{len(positional)} were given"
            )
        args = dict(zip(self.positional, positional, strict=False))
        for name, value in named.items():
            if name in args:
                raise TypeError(f"got multiple values for argument {name!r}")
            args[name] = value
        return args

    def to_json(self) -> dict[str, Any]:
        """As the task catalog holds it and the API shows it."""
        return {
            "params": [{"name": p.name, "kind": p.kind.value} for p in self.named],
            "any_other": self.any_other,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Parameters:
        return cls(
            named=tuple(
                Parameter(name=str(p["name"]), kind=Kind(p["kind"])) for p in data["params"]
            ),
            any_other=bool(data["any_other"]),
        )


ANY = Parameters(any_other=True)
"""What is known of a handler whose signature cannot be read: it may take anything."""


def parameters_of(handler: Callable[..., Any], *, context: str | None = None) -> Parameters:
    """The parameters of `handler`, leaving out `context` (the name of its `JobContext`
    parameter, if it takes one). `*args` is left out too: a job's args have names.

    Raises `ValueError` for a required positional-only parameter: no job could give it.
    """
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return ANY
    named: list[Parameter] = []
    positional: list[str] = []
    any_other = False
    for param in signature.parameters.values():
        if param.name == context or param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.VAR_KEYWORD:
            any_other = True
            continue
        required = param.default is param.empty
        if param.kind is param.POSITIONAL_ONLY:
            if required:
                raise ValueError(
                    f"parameter {param.name!r} is positional-only: a job's args are given "
                    "by name, so no job could give it"
                )
            continue
        named.append(Parameter(name=param.name, kind=Kind.REQUIRED if required else Kind.OPTIONAL))
        if param.kind is param.POSITIONAL_OR_KEYWORD:
            positional.append(param.name)
    return Parameters(named=tuple(named), any_other=any_other, positional=tuple(positional))
