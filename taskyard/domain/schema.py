"""The words the API's shapes are declared in (`contract.py`), and the validation compiled
from a declaration, once.

A declaration is plain data: kinds (`Text`, `Integer`, `Number`, `Choice`, `Time`,
`JobId`, `JsonObject`, `ListOf`, `OneOrMany`, `Shape`, ...) with their bounds, patterns,
defaults and descriptions. `Shape.validator()` turns a shape into a function that reads a
body (a parsed JSON object, or the same built in Python) and names every problem at once,
each under its field path, with a message made from the kind: `"must be " + kind.says()`.
The OpenAPI document is rendered from the same declaration
(`taskyard.entrypoints.api.openapi`), and `docs/api.md`'s tables are checked against it.

>>> point = Shape("Point", (Field(name="x", kind=Integer(low=0, high=9), required=True),
...                         Field(name="tag", kind=Text(max_len=3), default="a")))
>>> values, errors = point.validator()({"x": 10, "tag": "long", "z": 1})
>>> for e in errors: print(f"{e.field}: {e.message}")
z: unknown field
x: must be an integer from 0 to 9
tag: must be a string of 1 to 3 characters
>>> point.validator()({"x": 3})
({'x': 3, 'tag': 'a'}, [])
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from taskyard.domain.errors import FieldError
from taskyard.domain.ids import parse_job_id
from taskyard.domain.storable import escape_text, json_problems, text_problem
from taskyard.domain.timefmt import parse_time

DURATION_S_MIN = 0.001
"""The shortest duration a job carries (a timeout, a backoff, a delay other than 0): a
millisecond. Anything shorter could not be honoured: a worker times an attempt out at
its next tick, datetimes keep microseconds (a 5e-324 s delay would be no delay), and a
backoff base near the smallest float made the growth of the delay overflow. (Declared
here, under `contract.py`, so that `flow.py` can bound a rate limit's period by it too.)"""


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ABSENT: Any = _Marker("ABSENT")
"""No value: a field that was not sent, or has no default."""
INVALID: Any = _Marker("INVALID")
"""What a check returns for a value it refused (the problem is already named)."""

Check = Callable[[Any, str, "str | int", list[FieldError]], Any]
"""`check(raw, parent path, key, errors)`: the value as the domain holds it, or INVALID
after naming the problem. Paths are written only for a problem (`where`)."""


def where(parent: str, key: str | int) -> str:
    """The path of `key` under `parent`: `backoff.jitter`, `depends_on[2]`, `task`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def quoted(text: str, *, shown_max: int = 40) -> str:
    """A value named in a message: escaped, quoted, and cut when long.

    >>> quoted("ok"), quoted("x" * 50)
    ("'ok'", "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' (50 characters)")
    """
    if len(text) <= shown_max:
        return repr(escape_text(text))
    return f"{escape_text(text[:shown_max])!r}"[:-1] + f"...' ({len(text):,} characters)"


def is_int(value: object) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


class Scalar:
    """A kind read in one step: `read(raw)` gives the value or INVALID, `message(raw)`
    then says why."""

    def says(self) -> str:
        raise NotImplementedError

    def read(self, raw: Any) -> Any:
        raise NotImplementedError

    def message(self, raw: Any) -> str:
        return "must be " + self.says()

    def compile(self) -> Check:
        read, message = self.read, self.message

        def check(raw: Any, parent: str, key: str | int, errors: list[FieldError]) -> Any:
            value = read(raw)
            if value is INVALID:
                errors.append(FieldError(where(parent, key), message(raw)))
            return value

        return check


@attrs.frozen(kw_only=True)
class Text(Scalar):
    """A string of `min_len` to `max_len` characters that every store can hold
    (`storable.py`); with a `pattern`, matched as a whole, which alone decides (and
    `words` says it in words)."""

    min_len: int = 1
    max_len: int | None = None
    pattern: str | None = None
    words: str | None = None
    _match: Any = attrs.field(init=False, eq=False, repr=False)
    _max_len: float = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        pattern = re.compile(self.pattern) if self.pattern is not None else None
        object.__setattr__(self, "_match", pattern.fullmatch if pattern else None)
        object.__setattr__(self, "_max_len", math.inf if self.max_len is None else self.max_len)

    def says(self) -> str:
        if self.words is not None:
            return self.words
        if self.max_len is None:
            return "a string"
        return f"a string of {self.min_len} to {self.max_len} characters"

    def read(self, raw: Any) -> Any:
        if not isinstance(raw, str) or not self.min_len <= len(raw) <= self._max_len:
            return INVALID
        if self._match is not None:
            return raw if self._match(raw) is not None else INVALID
        return raw if text_problem(raw) is None else INVALID

    def message(self, raw: Any) -> str:
        fits = isinstance(raw, str) and self.min_len <= len(raw) <= self._max_len
        if self._match is None and fits:
            return text_problem(raw) or ""
        return "must be " + self.says()


@attrs.frozen(kw_only=True)
class Integer(Scalar):
    """An integer (never a bool) from `low` to `high`."""

    low: int | None = None
    high: int | None = None

    def says(self) -> str:
        if self.high is None:
            return "an integer" if self.low is None else f"an integer >= {self.low}"
        return f"an integer from {self.low} to {self.high}"

    def read(self, raw: Any) -> Any:
        if not is_int(raw) or (self.low is not None and raw < self.low):
            return INVALID
        return int(raw) if self.high is None or raw <= self.high else INVALID


@attrs.frozen(kw_only=True)
class Number(Scalar):
    """A finite number (never a bool) from `low` to `high`; with `zero`, 0 as well (a
    duration that may be none at all); with `low_exclusive`, above `low` only."""

    low: float | None = None
    high: float | None = None
    zero: bool = False
    low_exclusive: bool = False
    words: str | None = None
    _bounds: tuple[float, float] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        """(low, high) as compared, finite: NaN and the infinities fall outside both."""
        low = -sys.float_info.max if self.low is None else self.low
        high = sys.float_info.max if self.high is None else self.high
        object.__setattr__(self, "_bounds", (low, high))

    def says(self) -> str:
        if self.words is not None:
            return self.words
        if self.high is None:
            if self.low is None:
                return "a number"
            return f"a number {'>' if self.low_exclusive else '>='} {self.low:g}"
        low = f"0, or a number from {self.low:g}" if self.zero else f"a number from {self.low:g}"
        return f"{low} to {self.high:g}"

    def read(self, raw: Any) -> Any:
        if type(raw) is not float and (isinstance(raw, bool) or not isinstance(raw, int | float)):
            return INVALID
        try:
            value = float(raw)
        except OverflowError:  # an integer beyond any float
            return INVALID
        low, high = self._bounds
        if (low < value if self.low_exclusive else low <= value) and value <= high:
            return value
        return value if self.zero and value == 0 else INVALID

    def problem(self, raw: object) -> str | None:
        """Why `raw` is not such a number, or None."""
        return None if self.read(raw) is not INVALID else self.message(raw)


@attrs.frozen(kw_only=True)
class Boolean(Scalar):
    def says(self) -> str:
        return "true or false"

    def read(self, raw: Any) -> Any:
        return raw if isinstance(raw, bool) else INVALID


@attrs.frozen(kw_only=True)
class Choice(Scalar):
    """One of a few strings."""

    values: tuple[str, ...]

    def says(self) -> str:
        return f"one of {', '.join(self.values)}"

    def read(self, raw: Any) -> Any:
        return raw if isinstance(raw, str) and raw in self.values else INVALID


@attrs.frozen(kw_only=True)
class Const(Scalar):
    """Always this value (in answers)."""

    value: Any

    def says(self) -> str:
        return repr(self.value)

    def read(self, raw: Any) -> Any:
        return raw if raw == self.value and type(raw) is type(self.value) else INVALID


TIME_WORDS = "an RFC 3339 time with an offset"


def parse_run_at(raw: object) -> tuple[datetime | None, str | None]:
    """A time as sent: an RFC 3339 string with an offset (or an aware `datetime` from
    Python). Returns the time, or the problem with it."""
    if isinstance(raw, datetime):
        if raw.tzinfo is None:
            return None, "a time needs an offset (Z or +hh:mm)"
        return raw, None
    if isinstance(raw, str):
        try:
            return parse_time(raw), None
        except ValueError as exc:
            return None, str(exc)
    return None, "must be " + TIME_WORDS


@attrs.frozen(kw_only=True)
class Time(Scalar):
    """An instant. In: RFC 3339 with any offset (a `datetime` with one from Python). Out:
    always UTC with milliseconds and Z (`output`)."""

    output: bool = False

    def says(self) -> str:
        return TIME_WORDS

    def read(self, raw: Any) -> Any:
        moment, problem = parse_run_at(raw)
        return INVALID if problem is not None else moment

    def message(self, raw: Any) -> str:
        return parse_run_at(raw)[1] or ""


@attrs.frozen(kw_only=True)
class JobId(Scalar):
    """A job id: a UUID in canonical text (a `UUID` from Python)."""

    def says(self) -> str:
        return "a job id (a UUID)"

    def read(self, raw: Any) -> Any:
        if isinstance(raw, UUID):
            return raw
        found = parse_job_id(raw) if isinstance(raw, str) else None
        return INVALID if found is None else found


@attrs.frozen(kw_only=True)
class AnyJson(Scalar):
    """Any JSON value every store can hold (in answers: what a handler saved or returned)."""

    def says(self) -> str:
        return "any JSON value"

    def read(self, raw: Any) -> Any:
        return INVALID if json_problems(raw, "") else raw


@attrs.frozen(kw_only=True)
class JsonObject:
    """A JSON object of anything every store can hold (`storable.json_problems`)."""

    def says(self) -> str:
        return "a JSON object"

    def compile(self) -> Check:
        def check(raw: Any, parent: str, key: str | int, errors: list[FieldError]) -> Any:
            if not isinstance(raw, Mapping):
                errors.append(FieldError(where(parent, key), "must be a JSON object"))
                return INVALID
            errors.extend(json_problems(raw, where(parent, key)))
            return raw

        return check


@attrs.frozen(kw_only=True)
class ListOf:
    """A list of `min_items` to `max_items` items (`noun` names them: "a list of job
    ids"; `count_noun` counts them: "at most 1000 dependencies"). With `unique`, repeats
    collapse into the first. A list of objects (`Shape`) is checked here as a list only:
    its items belong to their own parser, so each item's problems come under its index."""

    item: Kind
    noun: str
    count_noun: str = "items"
    min_items: int = 0
    max_items: int | None = None
    unique: bool = False

    def says(self) -> str:
        return f"a list of {self.noun}"

    def count_says(self) -> str:
        if self.min_items:
            return f"must hold {self.min_items} to {self.max_items} {self.count_noun}"
        return f"at most {self.max_items} {self.count_noun}"

    def compile(self) -> Check:
        item = None if isinstance(self.item, Shape) else self.item.compile()
        low, high = self.min_items, self.max_items if self.max_items is not None else math.inf
        message, count_message, unique = "must be " + self.says(), self.count_says(), self.unique

        def check(raw: Any, parent: str, key: str | int, errors: list[FieldError]) -> Any:
            if isinstance(raw, str) or not isinstance(raw, Sequence):
                errors.append(FieldError(where(parent, key), message))
                return INVALID
            if not low <= len(raw) <= high:
                errors.append(FieldError(where(parent, key), count_message))
                return INVALID
            if item is None:
                return raw
            path, before = where(parent, key), len(errors)
            values = [item(value, path, index, errors) for index, value in enumerate(raw)]
            if len(errors) > before:
                return INVALID
            return tuple(dict.fromkeys(values)) if unique else tuple(values)

        return check


@attrs.frozen(kw_only=True)
class OneOrMany:
    """A filter's values: a string, or a list of 1 to `max_items` of them (any of). A bad
    value is named in its message, under the field's own path; the good ones are kept, so
    that a rule over them can name its own problems too."""

    item: Text | Choice
    max_items: int

    def says(self) -> str:
        return "a string or a list of strings"

    def compile(self) -> Check:
        read, message, high = self.item.read, self.item.message, self.max_items

        def check(raw: Any, parent: str, key: str | int, errors: list[FieldError]) -> Any:
            path = where(parent, key)
            values = [raw] if isinstance(raw, str) else raw
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                errors.append(FieldError(path, "must be a string or a list of strings"))
            elif not 1 <= len(values) <= high:
                errors.append(
                    FieldError(
                        path, f"at most {high} values" if values else "must name at least one value"
                    )
                )
            else:
                good = {value for value in values if read(value) is not INVALID}
                for bad in sorted(set(values) - good):
                    errors.append(FieldError(path, f"{quoted(bad)} {message(bad)}"))
                return frozenset(good)
            return INVALID

        return check


@attrs.frozen(kw_only=True)
class Field:
    """A field of a shape. In a request, `required` fields must be sent, others take
    `default` (or None); a `nullable` field's null counts as not sent. In an answer, every
    `required` field is always there, null where `nullable`."""

    name: str
    kind: Kind
    required: bool = False
    default: Any = ABSENT
    nullable: bool = False
    description: str = ""


def field(name: str, kind: Kind, description: str = "", **options: Any) -> Field:
    return Field(name=name, kind=kind, description=description, **options)


@attrs.frozen(kw_only=True)
class Param:
    """A parameter outside the body: in the query string (`many`: it may repeat, any of
    its values), the path, or a header."""

    name: str
    kind: Text | Integer | Choice
    where: str = "query"
    many: bool = False
    default: Any = ABSENT
    description: str = ""


@attrs.frozen
class Shape:
    """A JSON object with exactly these fields.

    `unknown` is the message for a field it does not have, `not_object` for a value that
    is not an object; `at_least_one` (when set) refuses an object naming none of its
    fields. A Python value of `python_type` is taken as it is (a `RetryPolicy`)."""

    name: str
    fields: tuple[Field, ...]
    description: str = ""
    unknown: str = "unknown field"
    not_object: str = "must be an object"
    at_least_one: str | None = None
    python_type: type | None = None

    def says(self) -> str:
        return "an object"

    def __getitem__(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def validator(self) -> Callable[[Any], tuple[dict[str, Any] | None, list[FieldError]]]:
        """`validate(data)`: the values of the fields (defaults filled in, INVALID where a
        field was refused) and every problem; None for values when `data` is not an object."""
        check = self.compile()

        def validate(data: Any) -> tuple[dict[str, Any] | None, list[FieldError]]:
            errors: list[FieldError] = []
            values = check(data, "", "", errors)
            return (None if values is INVALID else values), errors

        return validate

    def compile(self) -> Check:
        """Its values (INVALID where a field was refused), or INVALID when not an object."""
        compiled = [
            (f.name, f.nullable or f.required, f.required, f.default, *_reader(f.kind))
            for f in self.fields
        ]
        names = frozenset(f.name for f in self.fields)
        unknown, not_object, at_least_one = self.unknown, self.not_object, self.at_least_one
        python_type = self.python_type

        def check(raw: Any, parent: str, key: str | int, errors: list[FieldError]) -> Any:
            if python_type is not None and isinstance(raw, python_type):
                return raw
            path = where(parent, key)
            if type(raw) is not dict and not isinstance(raw, Mapping):
                errors.append(FieldError(path, not_object))
                return INVALID
            if not raw.keys() <= names:
                for name in sorted(set(raw) - names, key=str):
                    errors.append(FieldError(where(path, str(name)), unknown))
            values: dict[str, Any] = {}
            get = raw.get
            for name, null_absent, required, default, read, message, field_check in compiled:
                value = get(name, ABSENT)
                if value is ABSENT or (value is None and null_absent):
                    if required:
                        errors.append(FieldError(where(path, name), "is required"))
                    values[name] = None if default is ABSENT else default
                elif read is None:
                    values[name] = field_check(value, path, name, errors)
                else:  # a scalar, read in place
                    values[name] = got = read(value)
                    if got is INVALID:
                        errors.append(FieldError(where(path, name), message(value)))
            if at_least_one is not None and not errors and raw.keys().isdisjoint(names):
                errors.append(FieldError(path, at_least_one))
            return values

        return check


def _reader(kind: Kind) -> tuple[Any, Any, Check]:
    """(read, message, check) of a scalar, which a shape reads in place; (None, None,
    check) of any other kind."""
    if isinstance(kind, Scalar):
        return kind.read, kind.message, kind.compile()
    return None, None, kind.compile()


Kind = (
    Text
    | Integer
    | Number
    | Boolean
    | Choice
    | Const
    | Time
    | JobId
    | JsonObject
    | AnyJson
    | ListOf
    | OneOrMany
    | Shape
)
