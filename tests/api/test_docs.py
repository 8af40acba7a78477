"""docs/api.md names every route, setting and metric the code has."""

from __future__ import annotations

import re
from pathlib import Path

from taskyard.entrypoints.api.app import ROUTES
from taskyard.entrypoints.api.metrics import METRICS
from taskyard.entrypoints.config import SETTINGS

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
    for template, _ in ROUTES:
        shown = re.sub(r"{job_id}", "{id}", template)
        assert f"{shown}`" in DOC or f"{shown} " in DOC or f"{shown}?" in DOC, template
