"""One root seed, and a separate random stream for each component derived from it.

A component draws only from its own stream, so adding a draw in one place does not
shift every other component's choices: a run stays recognisable across small changes.
The derivation hashes the seed and the stream's name (never Python's `hash`, which is
salted per process).
"""

from __future__ import annotations

import hashlib
import random


def derive(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class Streams:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def get(self, name: str) -> random.Random:
        stream = self._streams.get(name)
        if stream is None:
            stream = random.Random(derive(self.seed, name))
            self._streams[name] = stream
        return stream
