"""Numbers written as text by the outside world (query strings, settings, command-line
flags): plain ASCII, nothing else.

Python's `int()` and `float()` take more than anyone types on purpose: any Unicode
decimal digit (`int("\\u0661\\u0660")`, Arabic-Indic "10", is 10), underscores
(`"1_000"`), surrounding whitespace, and for `float()` also `nan`, `inf` and `infinity`.
Every number this package reads from text goes through here instead, so
`limit=%D9%A1%D9%A0` is refused like any other bad value.

>>> ascii_int("42"), ascii_int("-7"), ascii_int("1_000"), ascii_int("1\\n")
(42, -7, None, None)
>>> ascii_int("\\u0661\\u0660"), ascii_int("+3", signed=False), ascii_int("9" * 5000)
(None, None, None)
>>> ascii_float("2.5"), ascii_float("-1e-3"), ascii_float(".5"), ascii_float("nan")
(2.5, -0.001, 0.5, None)
>>> ascii_float("\\u0661.\\u0665"), ascii_float("1e999"), ascii_float(" 1")
(None, None, None)
"""

from __future__ import annotations

import math
import re

DIGITS_MAX = 100
"""Longer digit strings are refused before Python is asked to read them."""

_SIGNED_INTEGER = re.compile(rf"[+-]?[0-9]{{1,{DIGITS_MAX}}}")
_UNSIGNED_INTEGER = re.compile(rf"[0-9]{{1,{DIGITS_MAX}}}")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")


def ascii_int(text: str, *, signed: bool = True) -> int | None:
    """The integer `text` spells in ASCII digits (with a sign when `signed`), or None."""
    pattern = _SIGNED_INTEGER if signed else _UNSIGNED_INTEGER
    if pattern.fullmatch(text) is None:
        return None
    return int(text)


def ascii_float(text: str) -> float | None:
    """The finite number `text` spells in ASCII (`12`, `-0.5`, `.5`, `1e-3`), or None."""
    if len(text) > DIGITS_MAX or _DECIMAL.fullmatch(text) is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None
