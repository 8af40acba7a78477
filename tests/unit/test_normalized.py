"""`sqlshared.normalized`: a value as a JSON column gives it back, so the job a SQL store
returns from an enqueue equals the one it reads later. A flat object of plain values is
copied rather than sent through JSON; it must give what the round trip gives."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskyard.adapters.sqlshared import normalized
from tests.strategies import hostile_text, json_scalars, json_values


def _round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 is not 1.0 nor True here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b) and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 2


flat_objects = st.dictionaries(
    st.one_of(hostile_text, st.integers(), st.booleans(), st.none()),
    st.one_of(json_scalars, st.sampled_from([Level.HIGH, True, -0.0])),
    max_size=5,
)


@given(value=st.one_of(flat_objects, json_values))
def test_a_value_is_what_its_json_round_trip_gives(value: Any) -> None:
    try:
        expected = _round_trip(value)
    except ValueError as refused:  # NaN, infinities, digits past Python's limit
        with pytest.raises(ValueError, match=str(refused).split("(")[0]):
            normalized(value)
        return
    got = normalized(value)
    assert _same(got, expected), (value, got, expected)


def test_a_flat_object_is_a_copy() -> None:
    args = {"i": 1, "t": 2.5, "s": "x", "b": True, "n": None}
    got = normalized(args)
    assert got == args and got is not args


def test_what_json_changes_still_goes_through_it() -> None:
    assert normalized({1: "a", "l": (1, 2)}) == {"1": "a", "l": [1, 2]}
    assert normalized({"level": Level.HIGH}) == {"level": 2}
    assert type(normalized({"level": Level.HIGH})["level"]) is int  # type: ignore[index]
    with pytest.raises(TypeError):
        normalized({"colour": Colour.RED})
    with pytest.raises(ValueError, match="Out of range float values"):
        normalized({"x": math.inf})


@pytest.mark.parametrize(
    ("value", "refusal"),
    [
        (math.nan, "Out of range float"),
        (math.inf, "Out of range float"),
        (-math.inf, "Out of range float"),
        (10**4301 - 1, "Exceeds the limit"),
    ],
    ids=["nan", "inf", "-inf", "4301 digits"],
)
def test_a_bare_scalar_json_refuses_is_refused(value: Any, refusal: str) -> None:
    """A scalar alone takes the same rule as one inside an object: what JSON cannot write
    (NaN, infinities, integers past Python's digit limit) is refused, not handed back."""
    with pytest.raises(ValueError, match=refusal):
        _round_trip(value)
    with pytest.raises(ValueError, match=refusal):
        normalized(value)


def test_a_bare_scalar_subclass_reads_back_as_its_base() -> None:
    assert normalized(Level.HIGH) == 2 and type(normalized(Level.HIGH)) is int
    assert normalized(10**4299 - 1) == 10**4299 - 1
