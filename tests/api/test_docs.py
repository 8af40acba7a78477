"""docs/api.md names every route, setting and metric the code has."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from taskyard.domain import contract, schema
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


def test_every_doc_cites_only_files_and_tests_that_exist() -> None:
    """A path of ours (`taskyard/...`, `tests/...`, `benchmarks/...`) or a test named in
    any of docs/*.md, the README or DEVELOPERS.md is one the tree has."""
    root = Path(__file__).parents[2]
    defined = {
        match
        for path in (root / "tests").rglob("test_*.py")
        for match in re.findall(r"^\s*def (test_\w+)", path.read_text(), flags=re.MULTILINE)
    }
    missing: list[str] = []
    for doc in [*sorted((root / "docs").glob("*.md")), root / "README.md", root / "DEVELOPERS.md"]:
        text = doc.read_text()
        for path in re.findall(r"(?<![\w/.])((?:taskyard|tests|benchmarks)/[\w/.-]*\w)", text):
            if "NNNN" not in path and not (root / path).exists():
                missing.append(f"{doc.name}: {path}")
        code = "\n".join(re.findall(r"```.*?```", text, flags=re.DOTALL))  # examples define tests
        files = set(re.findall(r"(test_\w+)\.py", text))
        for name in set(re.findall(r"\b(test_\w+)\b", text)) - files:
            if name not in defined and f"def {name}" not in code:
                missing.append(f"{doc.name}: {name}")
    assert not missing, missing


# --- docs/api.md's tables of fields and parameters, against the declaration ------------------


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def kind_text(kind: schema.Kind) -> tuple[str, str]:
    """(the kind in a word or two, its bounds) as docs/api.md's tables write them."""
    if isinstance(kind, schema.Text):
        if kind.pattern is not None:
            return "string", f"`{kind.pattern}`"
        return "string", f"{kind.min_len} to {_number(kind.max_len or 0)} characters"
    if isinstance(kind, schema.Integer):
        return "integer", f"{_number(kind.low or 0)} to {_number(kind.high or 0)}"
    if isinstance(kind, schema.Number):
        if kind.high is None:
            return "number", f"≥ {_number(kind.low or 0)}"
        low = f"0, or {_number(kind.low or 0)}" if kind.zero else _number(kind.low or 0)
        return "number", f"{low} to {_number(kind.high)}"
    if isinstance(kind, schema.Choice):
        return "string", ", ".join(f"`{value}`" for value in kind.values)
    if isinstance(kind, schema.ListOf):
        return f"list of {kind.noun}", f"at most {kind.max_items:,}"
    if isinstance(kind, schema.OneOrMany):
        return "string or list", f"1 to {kind.max_items} of {kind_text(kind.item)[1]}"
    if isinstance(kind, schema.Shape):
        return "object", f"`{kind.name}`"
    if isinstance(kind, schema.Time):
        return "time", "RFC 3339 with an offset"
    return "object", "JSON"


def expected_rows(fields: tuple[schema.Field | schema.Param, ...]) -> dict[str, list[str]]:
    rows = {}
    for item in fields:
        default = item.default
        shown = "required" if getattr(item, "required", False) else "none"
        if default is not schema.ABSENT:
            shown = f"`{json.dumps(default)}`"
        kind, bounds = kind_text(item.kind)
        rows[f"`{item.name}`"] = [
            kind + (", repeats" if getattr(item, "many", False) else ""),
            bounds,
            shown,
        ]
    return rows


TABLES: dict[str, tuple[schema.Field | schema.Param, ...]] = {
    "JobSubmission": contract.SUBMISSION.fields,
    "BackoffInput": contract.BACKOFF_INPUT.fields,
    "JobChange": contract.CHANGE.fields,
    "JobFilter": contract.FILTER.fields,
    "ScheduleInput": contract.SCHEDULE_INPUT.fields,
    "QueueSettingsInput": contract.QUEUE_SETTINGS_INPUT.fields,
    "RateLimitInput": contract.RATE_LIMIT_INPUT.fields,
    "RetentionInput": contract.RETENTION_INPUT.fields,
    "listing parameters": contract.LISTING_PARAMS,
    "other parameters": (contract.DRY_RUN, contract.WINDOW),
}


def documented_rows(name: str) -> dict[str, list[str]]:
    """The rows of the table after `<!-- contract: name -->`: field, kind, bounds, default
    (the fifth column, what it means, is prose)."""
    after = DOC.split(f"<!-- contract: {name} -->\n", 1)[1]
    rows = {}
    for line in after.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = [cells[1], cells[2], cells[3]]
    return rows


@pytest.mark.parametrize("name", sorted(TABLES))
def test_a_table_of_fields_says_what_the_declaration_says(name: str) -> None:
    expected = expected_rows(TABLES[name])
    documented = documented_rows(name)
    assert list(documented) == list(expected), "the fields, in the declared order"
    for field_name, cells in expected.items():
        assert documented[field_name] == cells, (field_name, "| " + " | ".join(cells) + " |")
