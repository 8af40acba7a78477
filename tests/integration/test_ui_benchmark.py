"""`benchmarks/ui_pages.py` runs (on a small table): every page answers, and it leaves no
database behind. The figures themselves are the benchmark's, never a test's."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import psycopg
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ui_pages.py"


def _databases(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}


def test_the_page_benchmark_times_every_page_and_drops_its_database(
    postgres_admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("ui_pages", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = _databases(postgres_admin_url)
    args = ["--admin-url", postgres_admin_url, "--jobs", "2000", "--requests", "1"]
    assert module.main([*args, "--explain-over-ms", "100000"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^(/ui\S*)\s+.*\s(\d{3})$", out, flags=re.MULTILINE)
    assert len(rows) == 12 and {status for _, status in rows} == {"200", "404"}, out
    assert "in the background: the overview's chart" in out
    assert _databases(postgres_admin_url) == before
