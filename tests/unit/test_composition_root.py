"""One composition root: the production adapters are named in `entrypoints/bootstrap.py`
and nowhere else in the package, and every `TASKYARD_*` variable the code names is a
declared setting."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import taskyard
from taskyard.entrypoints import config

PACKAGE = Path(taskyard.__file__).resolve().parent
BOOTSTRAP = PACKAGE / "entrypoints" / "bootstrap.py"
SIMULATION = PACKAGE / "simulation"
"""The simulator builds its own world of simulated adapters; import-linter keeps it from
the entrypoints, so it cannot reach the composition root."""
ADAPTERS = PACKAGE / "adapters"

FAKES = frozenset({"ManualClock"})
"""Test doubles a test (or `taskyard.testing`) builds and hands to `bootstrap`."""
RANDOM_SOURCES = frozenset({"SystemRandom"})
"""The production random source is the root's to build, as the clocks are."""


def _modules(folder: Path) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _production_adapters() -> frozenset[str]:
    """Every store, coordinator and clock class the adapters define."""
    names = {
        node.name
        for _, tree in _modules(ADAPTERS)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and node.name.endswith(("JobStore", "Coordinator", "Clock"))
    }
    return frozenset(names - FAKES)


def _named(tree: ast.Module, names: frozenset[str]) -> list[tuple[int, str]]:
    """Where `tree` imports, calls or reaches for one of `names` (also `module.Name`)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [(node.lineno, a.name) for a in node.names if a.name in names]
        elif isinstance(node, ast.Attribute) and node.attr in names:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.Name) and node.id in names:
            found.append((node.lineno, node.id))
    return found


def test_only_the_composition_root_builds_a_store_a_coordinator_a_clock_or_chance() -> None:
    adapters = _production_adapters()
    assert {
        "InMemoryJobStore",
        "SqliteJobStore",
        "PostgresJobStore",
        "RedisCoordinator",
    } <= adapters
    assert {"InMemoryCoordinator", "SystemClock", "MonotonicClock"} <= adapters
    wanted = adapters | RANDOM_SOURCES
    offenders: list[str] = []
    for path, tree in _modules(PACKAGE):
        if path == BOOTSTRAP or SIMULATION in path.parents:
            continue
        if ADAPTERS in path.parents:
            # An adapter module names its own classes; it builds no other adapter.
            own = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
            calls = [
                (node.lineno, node.func.id)
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in wanted - own
            ]
            offenders += [
                f"{path.relative_to(PACKAGE)}:{line} builds {name}" for line, name in calls
            ]
            continue
        offenders += [
            f"{path.relative_to(PACKAGE)}:{line} names {name}"
            for line, name in _named(tree, wanted)
        ]
    assert offenders == [], "build it in entrypoints/bootstrap.py instead:\n" + "\n".join(offenders)


NOT_SETTINGS = frozenset({config.CONFIG_ENV, "TASKYARD_COMMIT"})
"""Variables that are no setting: the settings file's path, the commit a simulation reports."""


def test_every_variable_the_code_names_is_a_declared_setting() -> None:
    declared = {setting.env for setting in config.SETTINGS.values()} | NOT_SETTINGS
    named: dict[str, list[str]] = {}
    for path, tree in _modules(PACKAGE):
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for variable in re.findall(r"\bTASKYARD_[A-Z0-9_]*[A-Z0-9]\b", node.value):
                    named.setdefault(variable, []).append(
                        f"{path.relative_to(PACKAGE)}:{node.lineno}"
                    )
    unknown = {variable: where for variable, where in named.items() if variable not in declared}
    assert unknown == {}, f"no such setting (see config.SETTINGS): {unknown}"
