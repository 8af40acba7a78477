"""The append-only trace of a run: one line per thing that happened, in order, with the
true time first. Its digest names a run: the same seed and profile give the same digest.
"""

from __future__ import annotations

import hashlib


class Trace:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, t: float, who: str, what: str) -> None:
        self.lines.append(f"{t:10.3f}  {who:<10} {what}")

    def digest(self) -> str:
        h = hashlib.sha256()
        for line in self.lines:
            h.update(line.encode())
            h.update(b"\n")
        return h.hexdigest()[:16]

    def tail(self, count: int) -> list[str]:
        return self.lines[-count:]
