"""`benchmarks/flow.py` runs (tiny loads) and leaves no database behind, and its fairness
figure means what its docstring says. The speeds are the benchmark's, never a test's."""

from __future__ import annotations

import importlib.util
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "flow.py"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flow_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _databases(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_window_ends_when_the_first_key_ran_out_and_counts_every_key() -> None:
    flow = _module()
    keys = ["k0000", "k0001", "k0002"]
    starts = [
        ("k0000", _at(0)),
        ("k0000", _at(1)),
        ("k0000", _at(2)),
        ("k0000", _at(9)),
        ("k0001", _at(0.5)),
        ("k0001", _at(2)),  # k0001's last start: the window is [0, 2]
        ("k0002", _at(5)),
    ]
    measured = flow.fairness_of(starts, keys)
    assert measured.window_s == 2.0
    assert measured.window_starts == 5  # k0000 3, k0001 2, k0002 none yet
    assert measured.jain == pytest.approx((1.5 + 1.0) ** 2 / (3 * (1.5**2 + 1.0**2)))
    assert measured.heavy_share == pytest.approx(3 / 5)
    assert measured.light_done_s == 5.0
    assert measured.drain_s == 9.0


def test_jain_is_one_for_equal_rates_and_one_over_n_for_one_key_taking_all() -> None:
    flow = _module()
    assert flow.jain([4.0] * 1000) == pytest.approx(1.0)
    assert flow.jain([5.0] + [0.0] * 999) == pytest.approx(1 / 1000)


def test_the_skewed_load_puts_half_the_jobs_on_the_heavy_key_and_spreads_the_rest() -> None:
    flow = _module()
    jobs = flow.skewed(1001, 4)
    keys = [job.concurrency_key for job in jobs]
    assert len(jobs) == 1001 and keys.count("k0000") == 500
    assert sorted(keys.count(k) for k in ("k0001", "k0002", "k0003")) == [167, 167, 167]
    assert keys[:500] == ["k0000"] * 500, "the heavy key's jobs first"


def test_both_benchmarks_run_print_their_figures_and_drop_their_database(
    postgres_admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = _module()
    common = ["--admin-url", postgres_admin_url, "--no-redis", "--repeat", "1"]
    small = ["--workers", "1", "--concurrency", "8"]
    assert flow.main(["cliff", *common, *small, "--jobs", "60"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ratio \(limited / unlimited\) \d+\.\d{3} \(target >= 0\.90\)$", out, re.M)
    assert "median concurrency_limit 800:" in out, out
    assert flow.main(["fairness", *common, *small, "--jobs", "80", "--keys", "5"]) == 0
    out += capsys.readouterr().out
    found = re.search(r"Jain (\d\.\d{4}), heavy key's share (\d\.\d{4})", out)
    assert found is not None, out
    assert 1 / 5 <= float(found[1]) <= 1.0 and 0.0 <= float(found[2]) <= 1.0
    # Other sessions create and drop databases meanwhile: only the bench's own are judged.
    used = set(re.findall(r"on postgresql://[^/]+/(taskyard_bench_[0-9a-f]+)", out))
    assert len(used) == 2, out
    assert not used & _databases(postgres_admin_url)
