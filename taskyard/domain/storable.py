"""What every store can hold, decided once, before anything reaches a store.

No store may answer differently from another, so the narrowest of them sets the rule:

* text (a name, a key, any string in a JSON value, an object's keys) holds no U+0000:
  PostgreSQL refuses NUL in `text` and in `jsonb`;
* text holds no UTF-16 surrogate (U+D800 to U+DFFF): half of a pair cannot be written
  as UTF-8, so no store can keep it;
* a JSON value is made of objects with string keys, lists (or tuples), strings, finite
  numbers, booleans and null: JSON has no NaN or Infinity, and integers stop at
  `INT_DIGITS_MAX` digits (Python writes no longer ones as text).

Where this is applied: a submission's text fields and every key and value of its args
(422 naming the field), the filters of bulk operations (422) and of listings (400), a
job's `correlation_id`, a checkpoint, and what a handler hands back (`context.invoke`:
a result that breaks the rule fails the attempt; an error's text is escaped with
`escape_text`).

>>> json_problems({"a": [1, "x\\x00"], "b": float("nan")}, "args")
[FieldError(field='args.a[1]', message='must not contain U+0000 (NUL)'), \
FieldError(field='args.b', message='must be a finite number (JSON has no NaN or Infinity)')]
>>> escape_text("a\\x00b\\ud800")
'a\\\\x00b\\\\ud800'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from taskyard.domain.errors import FieldError

INT_DIGITS_MAX = 4300
"""The longest integer a JSON value may hold, in decimal digits (Python's own limit for
turning an integer into text, which every store's JSON writer goes through)."""
_INT_LIMIT = 10**INT_DIGITS_MAX
PROBLEMS_MAX = 10
"""At most this many problems are named for one value (a large value may hold many)."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

NUL_MESSAGE = "must not contain U+0000 (NUL)"
SURROGATE_MESSAGE = "must not contain a lone UTF-16 surrogate (U+D800 to U+DFFF)"


def text_problem(text: str) -> str | None:
    """Why a store cannot hold `text`, or None when every store can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return NUL_MESSAGE if found.group() == "\x00" else SURROGATE_MESSAGE


def escape_text(text: str) -> str:
    """`text` with what a store cannot hold written out: U+0000 as the four characters
    `\\x00`, a surrogate as `\\udXXX`. Text a store can hold comes back unchanged."""
    if _UNSTORABLE.search(text) is None:
        return text
    escaped = text.replace("\x00", "\\x00")
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


Trail = tuple["Trail", "str | int"] | None
"""Where a value sits: (the trail of its parent, its key or index); None at the top. Paths
are written out only for a problem, so a clean value costs no string building."""


def _path(field: str, trail: Trail) -> str:
    steps: list[str | int] = []
    while trail is not None:
        trail, step = trail
        steps.append(step)
    path = field
    for step in reversed(steps):
        if isinstance(step, int):
            path += f"[{step}]"
        else:
            path = f"{path}.{escape_text(step)}" if path else escape_text(step)
    return path


def json_problems(value: Any, field: str) -> list[FieldError]:
    """Where `value` (a JSON value as Python holds it) breaks the rule, each problem under
    its path (`args.a[2]`, `args.key`); empty when every store can hold it. Names at most
    `PROBLEMS_MAX` problems. Walks with its own stack, so any depth is fine."""
    found: list[tuple[Trail, str]] = []
    stack: list[tuple[Any, Trail]] = [(value, None)]
    search = _UNSTORABLE.search
    while stack and len(found) < PROBLEMS_MAX:
        item, trail = stack.pop()
        kind = type(item)
        if kind is str or (kind is not bool and isinstance(item, str)):
            if search(item) is not None:
                found.append((trail, text_problem(item) or ""))
        elif item is None or kind is bool:
            continue
        elif isinstance(item, int):
            if not -_INT_LIMIT < item < _INT_LIMIT:
                found.append((trail, f"must be an integer of at most {INT_DIGITS_MAX} digits"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                found.append((trail, "must be a finite number (JSON has no NaN or Infinity)"))
        elif isinstance(item, Mapping):
            children: list[tuple[Any, Trail]] = []
            for key, child in item.items():
                if not isinstance(key, str):
                    found.append((trail, f"has a key that is not a string: {key!r}"))
                    continue
                if search(key) is not None:
                    found.append(((trail, key), f"a key {text_problem(key)}"))
                children.append((child, (trail, key)))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(child, (trail, i)) for i, child in enumerate(item)]))
        else:
            found.append(
                (
                    trail,
                    "must be a JSON value (object, list, string, number, true, false, null), "
                    f"not {kind.__name__}",
                )
            )
    return [FieldError(_path(field, trail), message) for trail, message in found[:PROBLEMS_MAX]]
