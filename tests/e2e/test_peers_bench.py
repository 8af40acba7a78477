"""The peers benchmark (benchmarks/peers/): its pieces, and a tiny taskyard-only run end to
end. The peers themselves need virtualenvs made from downloads, so they are not run here.

These check that each piece does what it says (the side channel delivers and parses what a
handler sends, the table shows medians, ratios and failures, a run leaves no database or
Redis key behind), never how fast anything was.
"""

from __future__ import annotations

import doctest
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "benchmarks" / "peers"
RUN_TIMEOUT_S = 120


@pytest.fixture
def peers(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The benchmark's modules, importable as it imports them."""
    monkeypatch.syspath_prepend(str(PEERS))
    monkeypatch.syspath_prepend(str(PEERS / "drivers"))
    return importlib.import_module


def test_the_modules_examples_hold(peers: Any) -> None:
    for name in ("sidechannel", "phases", "report", "services"):
        failed, attempted = doctest.testmod(peers(name))
        assert attempted > 0 and failed == 0, name


def test_what_a_handler_sends_arrives_parsed_and_garbage_is_counted_apart(
    peers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidechannel = peers("sidechannel")
    common = peers("peers_common")
    with sidechannel.receiver() as recv:
        monkeypatch.setenv(common.SOCKET_ENV, recv.path)
        monkeypatch.setenv(common.LANES_ENV, str(recv.lanes))
        try:
            common.started(3, 12.5)
            common.started(4, 0.0)
            common.finished(3)
        finally:
            common._local.__dict__.pop("sock").close()  # the thread's socket, made by started()
        assert common._local.path in recv.paths  # the thread kept to one of the lanes
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"S 1 not-a-number 2 3", recv.paths[0])
            raw.sendto(b"\x00\xff", recv.paths[-1])
        starts = recv.wait_starts(2, timeout_s=10)
        done = recv.wait_done(3, timeout_s=10)
        assert recv.wait_for(4, nth=1, timeout_s=10) is not None
        # nothing more comes: the bounded wait gives back what there is
        assert recv.wait_starts(3, timeout_s=0.2) == starts
        assert recv.wait_for(4, nth=2, timeout_s=0.2) is None
    assert [(s.index, s.enqueued_at, s.pid) for s in starts] == [
        (3, 12.5, os.getpid()),
        (4, 0.0, os.getpid()),
    ]
    assert all(s.at > 0 for s in starts)
    assert done is not None and done.index == 3 and done.at >= starts[0].at
    assert recv.rejected == 2


def _run(figures: dict[str, Any], errors: dict[str, str] | None = None) -> dict[str, Any]:
    return {"figures": figures, "errors": errors or {}}


def test_the_table_shows_medians_ratios_to_pgqueuer_failures_and_blanks(peers: Any) -> None:
    report = peers("report")
    x = report.TIMES

    def column(system: str, config: str, runs: list[dict[str, Any]], **kw: Any) -> Any:
        return report.Column(
            system=system,
            title=system.title(),
            version="1.0",
            config=config,
            label=f"{config} label",
            runs=runs,
            **kw,
        )

    pgq = column(
        "pgqueuer",
        "defaults",
        [
            _run({"drain_per_s": v, "pickup_p50_ms": 2.0, "pickup_p99_ms": 4.0})
            for v in (900, 1000, 5000)
        ],
        kill={"figures": {"recovery_s": 30.0, "committed": 1}, "errors": {}},
    )
    mine = column(
        "taskyard",
        "defaults",
        [
            _run({"drain_per_s": 500.0, "pickup_p50_ms": 1.0, "pickup_p99_ms": 8.0}),
            _run({}, {"drain": "timeout: 10 of 50 handlers started in 30 s"}),
        ],
        kill={"figures": {"recovery_s": 7.5, "committed": 1, "outcome": "succeeded"}, "errors": {}},
    )
    broken = column("huey", "defaults", [_run({}, {"drain": "every worker exited"})])
    lost = column(
        "celery",
        "defaults",
        [_run({"drain_per_s": 100.0})],
        kill={
            "figures": {
                "recovery_s": None,
                "recovery": "not run again within 60 s",
                "committed": None,
            },
            "errors": {},
        },
    )
    missing = column("procrastinate", "defaults", [], failure="pip install failed")
    text = report.table([mine, pgq, broken, lost, missing], gap_ms=20, kill_at_s=2, kill_job_s=10)
    lines = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in text.splitlines()}

    drain = lines["drain, jobs/s between the first and the last handler start"]
    assert drain[0] == f"500 (0.50{x})"  # the median of the runs that have it, over PgQueuer's
    assert drain[1] == "1,000"
    assert drain[2] == "failed: every worker exited"
    assert drain[3] == "100"
    assert drain[4].startswith("failed: pip install failed")
    pickup = lines[
        "pickup: one job every 20 ms to idle workers, enqueue call included, p50 / p99 ms"
    ]
    assert pickup[0] == f"1.0 (0.50{x}) / 8.0 (2.00{x})"
    assert pickup[3] == ""  # not measured there
    kill = lines["worker SIGKILLed 2 s into a 10 s job: runs again after"]
    assert kill[0] == f"7.5 s (0.25{x}); committed once (succeeded)"
    assert kill[3] == "not run again within 60 s; outcome not recorded by the system"
    assert "Pgqueuer 1.0 (defaults label)" in text.splitlines()[0]


def _database_exists(admin_url: str, url: str) -> bool:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name])
        return bool(row.fetchone()[0])  # type: ignore[index]


def test_a_tiny_taskyard_run_produces_a_row_and_leaves_nothing_behind(
    postgres_admin_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
    done = subprocess.run(
        [
            sys.executable,
            str(PEERS / "run.py"),
            "--systems",
            "taskyard",
            "--configs",
            "defaults,async",
            "--jobs",
            "50",
            "--repeat",
            "1",
            "--phases",
            "enqueue,drain,pickup",
            "--pickup-jobs",
            "20",
            "--pickup-gap-ms",
            "5",
            "--taskyard-python",
            sys.executable,
            "--database-url",
            postgres_admin_url,
            "--redis",
            redis_url,
            "--redis-dbs",
            "1-15",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    column, coroutines = results["columns"]
    assert (column["config"], coroutines["config"]) == ("defaults", "async")
    (awaited,) = coroutines["runs"]
    assert awaited["errors"] == {}, awaited
    assert awaited["figures"]["drain_jobs"] == 50  # async def handlers, awaited by the worker
    (run,) = column["runs"]
    assert run["errors"] == {}, run
    figures = run["figures"]
    assert figures["drain_jobs"] == 50  # every job's handler reported on the side channel
    for key in (
        "drain_per_s",
        "enqueue_one_per_s",
        "enqueue_bulk_per_s",
        "pickup_p50_ms",
        "pickup_p99_ms",
        "rss_mib",
    ):
        assert figures[key] is not None and figures[key] > 0, key
    assert figures["pickup_p50_ms"] <= figures["pickup_p99_ms"]
    assert column["version"].startswith("0.") or column["version"][0].isdigit()
    table = (tmp_path / "table.md").read_text()
    assert "| drain, jobs/s between the first and the last handler start | " in table
    assert "PostgreSQL " in table and "Redis " in table and "machine: " in table
    assert table in done.stdout + "\n"
    where = run["where"]  # a database and a Redis database of its own
    assert where["database"].startswith(postgres_admin_url.rsplit("/", 1)[0] + "/peers_taskyard_")
    assert not _database_exists(postgres_admin_url, where["database"])  # dropped
    assert where["redis"] != redis_url
    client = redis.Redis.from_url(where["redis"])
    try:  # its keys are gone (another run may have claimed the database since: not ours)
        assert not list(client.scan_iter(match="taskyard:*", count=1000))
    finally:
        client.close()
