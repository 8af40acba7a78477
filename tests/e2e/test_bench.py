"""`taskyard bench` end to end: real worker and scheduler processes, a database and Redis
keys of its own that are gone afterwards, every phase's figures in the JSON report.

Small sizes: these check that each phase runs and checks what it claims (every job
succeeded once; the killed worker's job ran again elsewhere and committed once), never
how fast anything was."""

from __future__ import annotations

import doctest
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

import taskyard.domain.store.plans
import taskyard.entrypoints.bench.phases
import taskyard.entrypoints.bench.target

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
    return subprocess.run(
        [sys.executable, "-m", "taskyard.entrypoints.cli", "bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def _bench_databases(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'taskyard_bench_%'"
        ).fetchall()
    return {name for (name,) in rows}


def test_every_phase_runs_checks_its_jobs_and_leaves_nothing_behind(
    postgres_url: str, redis_url: str
) -> None:
    before = _bench_databases(postgres_url)
    phases = "enqueue-one,enqueue-bulk,drain,latency,kill"
    done = bench(
        "--store", postgres_url, "--redis", redis_url, "--phases", phases,
        "--jobs", "300", "--batch-size", "100", "--workers", "2", "--concurrency", "8",
        "--latency-jobs", "20", "--latency-gap-ms", "2",
        "--kill-job", "2", "--kill-at", "0.5", "--lease-ttl", "1",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert list(report["phases"]) == phases.split(",")
    medians = {name: phase["median"] for name, phase in report["phases"].items()}
    for name in ("enqueue-one", "enqueue-bulk", "drain"):
        assert medians[name]["jobs"] == 300 and medians[name]["jobs_per_s"] > 0
    assert medians["latency"]["mode"] == "doorbell"
    assert 0 < medians["latency"]["p50_ms"] <= medians["latency"]["p99_ms"]
    kill = medians["kill"]
    assert kill["committed_once"] and kill["other_worker"]
    assert kill["attempts"] == ["worker_lost", "succeeded"]
    assert kill["ran_again_after_s"] > 0
    assert report["server"].startswith("PostgreSQL")
    # One line of progress per run, on stderr.
    assert [line.split(":")[1].strip() for line in done.stderr.splitlines()] == [
        f"{name} run 1" for name in phases.split(",")
    ]
    # Its own database is dropped and its own Redis keys deleted.
    assert _bench_databases(postgres_url) == before
    client: Any = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{report['redis_prefix']}*")) == []
    finally:
        client.close()


def test_a_sqlite_store_is_benched_too_and_the_table_names_each_phase(tmp_path: Path) -> None:
    done = bench(
        "--store", f"sqlite:///{tmp_path / 'ignored.db'}", "--phases",
        "enqueue-one,enqueue-bulk,drain", "--jobs", "100", "--workers", "1",
        "--concurrency", "4", "--repeat", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "sqlite" in lines[0] and "median of 2 run(s)" in lines[3]
    table = {line.split("  ")[0].strip(): line for line in lines[5:]}
    assert set(table) == {"enqueue, one at a time", "enqueue, in bulk", "drain"}
    assert all("jobs/s" in line for line in table.values())
    assert not (tmp_path / "ignored.db").exists(), "the bench writes only a file of its own"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_api_phase_drives_gunicorn_with_wrk(postgres_url: str) -> None:
    done = bench(
        "--store", postgres_url, "--phases", "api", "--api-duration", "1",
        "--api-connections", "4", "--api-threads", "2", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    api = json.loads(done.stdout)["phases"]["api"]["median"]
    assert api["requests"] > 0 and api["non_2xx"] == 0
    assert api["stored"] >= api["requests"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "postgresql://postgres@db.example.com/x"], "--store: 'db.example.com'"),
        (["--store", "postgresql://127.0.0.1/x", "--redis", "redis://10.1.2.3:6379/0"],
         "--redis: '10.1.2.3'"),
        (["--store", "memory://"], "--store: memory:// lives inside one process"),
        (["--store", "sqlite:///x.db", "--phases", "drain,warp"], "--phases: unknown ['warp']"),
        (["--store", "sqlite:///x.db", "--kill-at", "12"], "--kill-at: 0 < --kill-at"),
        (["--store", "sqlite:///x.db", "--jobs", "0"], "--jobs: 1 to 1,000,000"),
    ],
)  # fmt: skip
def test_a_bad_setting_stops_the_bench_with_one_line_and_exit_2(
    args: list[str], message: str
) -> None:
    done = bench(*args)
    assert done.returncode == 2
    assert done.stderr.startswith(f"taskyard: {message}"), done.stderr
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "module",
    [
        taskyard.entrypoints.bench.phases,
        taskyard.entrypoints.bench.target,
        taskyard.domain.store.plans,
    ],
)
def test_the_doctests_of_the_bench_and_the_batch_planning_hold(module: Any) -> None:
    failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0
