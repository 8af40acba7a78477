"""`taskyard migrate`: twice, or from several processes at once, is harmless."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from taskyard.adapters.sqlshared import load_migrations
from taskyard.entrypoints import cli
from taskyard.entrypoints.process import redact_url
from tests import services

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_url(postgres_admin_url: str) -> Iterator[str]:
    with services.fresh_database(postgres_admin_url, prefix="taskyard_migrate") as url:
        yield url


def _migrate(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TASKYARD_DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "taskyard.entrypoints.cli", "migrate"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


MIGRATIONS = load_migrations("postgres")
ALL_VERSIONS = [(m.version, m.name) for m in MIGRATIONS]
LAST = MIGRATIONS[-1].version
"""Derived from the shipped files: another migration must not break these tests."""


def _applied(after: int = 0) -> list[str]:
    return [f"applied {m.version:04d}_{m.name}" for m in MIGRATIONS if m.version > after]


def _recorded(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return [
            (int(v), str(n))
            for v, n in conn.execute(
                "SELECT version, name FROM taskyard.schema_migrations ORDER BY version"
            )
        ]


def test_migrate_twice_exits_zero_and_records_the_version_once(fresh_url: str) -> None:
    first = _migrate(fresh_url)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert out.splitlines() == [
        f"taskyard migrate {redact_url(fresh_url)}",
        *_applied(),
        f"taskyard schema at version {LAST}",
    ]
    second = _migrate(fresh_url)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert out.splitlines() == [
        f"taskyard migrate {redact_url(fresh_url)}",
        f"taskyard schema at version {LAST} (up to date)",
    ]
    assert _recorded(fresh_url) == ALL_VERSIONS
    with psycopg.connect(fresh_url) as conn:
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'taskyard'"
            )
        }
        functions = sorted(
            conn.execute(
                "SELECT proname, pronargs FROM pg_proc"
                " WHERE pronamespace = 'taskyard'::regnamespace"
            ).fetchall()
        )
    assert tables == {
        "jobs",
        "attempts",
        "dependencies",
        "paused_queues",
        "tasks",
        "schedules",
        "queue_retention",
        "schema_migrations",
        "job_counts",
        "attempt_counts",
        "run_s_ladder",
        "queue_settings",
        "queue_starts",
    }
    # Version 3's claim and success report take the states they write as arguments;
    # version 2's stay beside them for the taskyard before this one in a rolling upgrade.
    # Version 6's counters are kept by trigger functions. Version 10's claim_flow hands a
    # claim to version 3's claim, or to claim_governed where it reaches a governed queue.
    assert functions == [
        ("claim", 5),
        ("claim", 7),
        ("claim_flow", 7),
        ("claim_governed", 8),
        ("count_attempts", 0),
        ("count_jobs", 0),
        ("forget_attempt_counts", 0),
        ("forget_job_counts", 0),
        ("heartbeat", 4),
        ("report_succeeded", 4),
        ("report_succeeded", 7),
        ("run_s_bound", 1),
    ]


def test_a_version_1_schema_is_upgraded_by_applying_only_what_it_lacks(fresh_url: str) -> None:
    from taskyard.adapters.postgres.schema import migrations

    first = migrations()[0]
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA taskyard")
        conn.execute(
            """CREATE TABLE taskyard.schema_migrations (version integer PRIMARY KEY,
               name text NOT NULL, checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        conn.execute(first.sql.encode())
        conn.execute(
            "INSERT INTO taskyard.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
            (first.version, first.name, first.checksum),
        )
    proc = _migrate(fresh_url)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.splitlines()[1:] == [*_applied(after=1), f"taskyard schema at version {LAST}"]
    assert _recorded(fresh_url) == ALL_VERSIONS


def test_concurrent_migrations_apply_each_version_once(fresh_url: str) -> None:
    procs = [_migrate(fresh_url) for _ in range(4)]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in results]
    applied = [out for out, _ in results if "applied 0001_initial" in out]
    assert len(applied) == 1
    assert _recorded(fresh_url) == ALL_VERSIONS


def test_migrate_refuses_a_bad_url_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKYARD_DATABASE_URL", "bogus://somewhere")
    assert cli.main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "taskyard: TASKYARD_DATABASE_URL: unsupported scheme 'bogus' "
        "(use postgresql://, sqlite:///, memory://)\n"
    )
    monkeypatch.delenv("TASKYARD_DATABASE_URL")
    assert cli.main(["migrate"]) == 2
    assert capsys.readouterr().err.startswith("taskyard: TASKYARD_DATABASE_URL: not set")


def test_migrate_of_an_unreachable_server_exits_one(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["migrate", "--database-url", "postgresql://postgres@127.0.0.1:1/x"])
    assert code == 1
    assert capsys.readouterr().err.startswith("taskyard: cannot migrate: PostgreSQL unavailable")


def test_migrate_creates_a_sqlite_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.db"
    assert cli.main(["migrate", "--database-url", f"sqlite:///{path}"]) == 0
    assert capsys.readouterr().out == (
        f"taskyard migrate sqlite:///{path}\n{path}: taskyard schema at version "
        f"{load_migrations('sqlite')[-1].version}\n"
    )
    assert path.exists()
