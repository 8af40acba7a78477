"""Run many seeds, in this process or in a pool of processes (each world stays
single-threaded; the pool only spreads whole seeds over cores)."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

import attrs

from taskyard.simulation.faults import FaultKind
from taskyard.simulation.run import simulate

CHUNK_SEEDS = 10


@attrs.frozen(kw_only=True)
class SeedOutcome:
    seed: int
    ok: bool
    broken: tuple[str, ...]
    digest: str
    faults: Mapping[str, int]
    exercised: Mapping[str, int]


def run_seed(seed: int, profile: str) -> SeedOutcome:
    result = simulate(seed, profile)
    return SeedOutcome(
        seed=seed,
        ok=result.ok,
        broken=result.broken,
        digest=result.digest,
        faults={kind.value: count for kind, count in result.faults.items()},
        exercised=dict(result.exercised),
    )


def _run_chunk(seeds: Sequence[int], profile: str) -> list[SeedOutcome]:
    return [run_seed(seed, profile) for seed in seeds]


def sweep(
    seeds: Sequence[int],
    profile: str = "default",
    *,
    jobs: int = 1,
    on_done: Callable[[Sequence[SeedOutcome]], None] | None = None,
) -> list[SeedOutcome]:
    """Every seed's outcome, in seed order. `on_done` hears of each finished batch."""
    assert jobs >= 1, jobs
    outcomes: list[SeedOutcome] = []
    chunks = [seeds[i : i + CHUNK_SEEDS] for i in range(0, len(seeds), CHUNK_SEEDS)]
    if jobs == 1:
        for chunk in chunks:
            done = _run_chunk(chunk, profile)
            outcomes.extend(done)
            if on_done is not None:
                on_done(done)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(_run_chunk, chunk, profile) for chunk in chunks]
            for future in as_completed(futures):
                done = future.result()
                outcomes.extend(done)
                if on_done is not None:
                    on_done(done)
    outcomes.sort(key=lambda outcome: outcome.seed)
    return outcomes


@attrs.frozen(kw_only=True)
class Tally:
    """Per fault kind (or exercised path): how many times it happened over the sweep, and
    in how many seeds."""

    total: Mapping[str, int]
    seeds: Mapping[str, int]

    @classmethod
    def of(cls, counts: Iterable[Mapping[str, int]]) -> Tally:
        total: Counter[str] = Counter()
        seeds: Counter[str] = Counter()
        for per_seed in counts:
            for name, count in per_seed.items():
                if count:
                    total[name] += count
                    seeds[name] += 1
        return cls(total=dict(total), seeds=dict(seeds))

    def lines(self, names: Iterable[str]) -> list[str]:
        return [
            f"  {name:<24} {self.total.get(name, 0):>6} times in {self.seeds.get(name, 0):>4} seeds"
            for name in names
        ]


FAULT_NAMES: tuple[str, ...] = tuple(kind.value for kind in FaultKind)
