"""docs/api.md names every route, setting and metric the code has."""

from __future__ import annotations

import re
from pathlib import Path

from taskyard.entrypoints.api.app import ROUTES
from taskyard.entrypoints.api.metrics import METRICS
from taskyard.entrypoints.config import SETTINGS
from taskyard.entrypoints.ui import UI_ROUTES

DOC = (Path(__file__).parents[2] / "docs" / "api.md").read_text()


def test_every_setting_is_documented_with_its_flag() -> None:
    for setting in SETTINGS.values():
        assert f"`{setting.env}`" in DOC, setting.env
        if setting.flag is not None:
            assert f"`{setting.flag}`" in DOC, setting.flag


def test_every_metric_is_documented() -> None:
    for name in METRICS:
        assert f"`{name}" in DOC, name


def test_every_route_is_documented() -> None:
    for route in ROUTES:
        shown = re.sub(r"{job_id}", "{id}", route.template)
        assert f"{shown}`" in DOC or f"{shown} " in DOC or f"{shown}?" in DOC, route.template


def test_the_dashboard_routes_of_the_docs_are_ui_routes() -> None:
    """The table of docs/api.md names each dashboard route, and only those."""
    named = set(re.findall(r"`(?:GET|POST) (/ui[^`?]*)`", DOC))
    assert named == {route.template for route in UI_ROUTES}


def test_docs_guarantees_names_real_tests_and_every_invariant() -> None:
    """docs/guarantees.md cites tests by name: each must exist, and every invariant of
    the simulator's checker must be cited."""
    from taskyard.simulation.checker import INVARIANTS

    root = Path(__file__).parents[2]
    text = (root / "docs" / "guarantees.md").read_text()
    defined = {
        match
        for path in (root / "tests").rglob("test_*.py")
        for match in re.findall(r"^\s*def (test_\w+)", path.read_text(), flags=re.MULTILINE)
    }
    files = set(re.findall(r"(test_\w+)\.py", text))
    cited = set(re.findall(r"\b(test_\w+)\b", text)) - files
    assert cited and not cited - defined, sorted(cited - defined)
    for path in re.findall(r"`(tests/[\w/]+\.py)", text):
        assert (root / path).exists(), path
    for invariant in INVARIANTS:
        assert f"`{invariant.name}`" in text, invariant.name
