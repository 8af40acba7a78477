"""A stand-in for `jq` where it is not installed: exactly the filters the README's tour
uses, printed as jq prints them. Anything else is refused (exit 3), so a README that starts
using more of jq fails loudly here instead of passing on a wrong imitation.

    jq_subset.py [-r] FILTER     # JSON on stdin
    FILTER := STEP ('|' STEP)*
    STEP   := '.' | '.name' | '.name[]' | '{name, name, ...}'

`tests/e2e/test_readme_tour.py` checks it against the real jq when jq is there.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_STEP = re.compile(rf"^(?:\.(?P<field>{_NAME})?(?P<each>\[\])?|\{{(?P<object>[^{{}}]*)\}})$")


class Unsupported(Exception):
    pass


def _apply(step: str, value: Any) -> Iterator[Any]:
    match = _STEP.match(step.strip())
    if match is None:
        raise Unsupported(step)
    if match.group("object") is not None:
        names = [name.strip() for name in match.group("object").split(",")]
        if not all(re.fullmatch(_NAME, name) for name in names):
            raise Unsupported(step)
        if not isinstance(value, dict):
            raise ValueError(f"cannot index {type(value).__name__} with {names[0]!r}")
        yield {name: value.get(name) for name in names}
        return
    field = match.group("field")
    if field is not None:
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"cannot index {type(value).__name__} with {field!r}")
        value = None if value is None else value.get(field)
    if match.group("each"):
        if not isinstance(value, list | dict):
            raise ValueError(f"cannot iterate over {type(value).__name__}")
        yield from value if isinstance(value, list) else value.values()
        return
    yield value


def run(filter_text: str, value: Any) -> list[Any]:
    values = [value]
    for step in filter_text.split("|"):
        values = [out for item in values for out in _apply(step, item)]
    return values


def main(argv: list[str]) -> int:
    raw = argv[:1] == ["-r"]
    args = argv[1:] if raw else argv
    if len(args) != 1:
        print("jq_subset: usage: jq_subset.py [-r] FILTER", file=sys.stderr)
        return 2
    try:
        outputs = run(args[0], json.load(sys.stdin))
    except Unsupported as exc:
        print(f"jq_subset: unsupported filter step {str(exc)!r}", file=sys.stderr)
        return 3
    except ValueError as exc:
        print(f"jq: error: {exc}", file=sys.stderr)
        return 5
    for out in outputs:
        if raw and isinstance(out, str):
            print(out)
        else:
            print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
