"""`taskyard standalone`: the README's run command, and the end-to-end workload on SQLite
with a SIGKILL and restart of the whole process."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.adapters.clock import SystemClock
from taskyard.adapters.sqlite import SqliteJobStore
from taskyard.domain.model import JobState
from tests.e2e.harness import Api, Procs, clean_environment, free_port
from tests.e2e.workload import Submitted, judge, plan, submit, wait_all_terminal
from tests.eventually import eventually

LEASE_TTL_S = 2.0


def _curl(*args: str) -> str:
    done = subprocess.run(
        ["curl", "-s", *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
def test_the_readme_run_command_serves_and_runs_a_sleep_job(procs: Procs, tmp_path: Path) -> None:
    """`taskyard standalone` in an empty directory with no settings, then exactly the
    README's curl (on a free port instead of 8000), then polling until `succeeded`."""
    port = free_port()
    system = procs.start(
        "standalone", ["standalone", "--port", str(port)], env=clean_environment(), cwd=tmp_path
    )
    assert system.url() == f"http://127.0.0.1:{port}"
    assert (tmp_path / "taskyard.db").exists()

    job = json.loads(
        _curl(
            f"localhost:{port}/v1/jobs",
            "-d",
            '{"task":"sleep","args":{"seconds":0.1}}',
            "-H",
            "content-type: application/json",
        )
    )
    assert job["task"] == "sleep" and job["state"] == "queued"
    seen: list[str] = []

    def succeeded() -> bool:
        seen.append(json.loads(_curl(f"localhost:{port}/v1/jobs/{job['id']}"))["state"])
        return seen[-1] == "succeeded"

    eventually(succeeded, timeout_s=30, what=f"the job succeeded (states seen: {seen})")
    system.send(signal.SIGINT)  # Ctrl-C
    assert system.wait() == 0


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteJobStore]:
    with SqliteJobStore(tmp_path / "e2e.db", clock=SystemClock()) as store:
        yield store


def test_standalone_on_sqlite_loses_no_job_across_a_sigkill_and_a_restart(
    procs: Procs, tmp_path: Path, sqlite_store: SqliteJobStore, request: pytest.FixtureRequest
) -> None:
    began = time.monotonic()
    env = clean_environment(
        TASKYARD_LEASE_TTL_SECONDS=str(LEASE_TTL_S),
        TASKYARD_POLL_INTERVAL_SECONDS="0.2",
        TASKYARD_LOG_FORMAT="json",
    )
    args = [
        "standalone",
        "--db",
        f"sqlite:///{tmp_path / 'e2e.db'}",
        "--port",
        "0",
        "--concurrency",
        "8",
        "--grace-period",
        "5",
    ]
    first = procs.start("standalone-1", args, env=env)
    api = Api(first.url())
    request.addfinalizer(api.close)
    queue = "default"
    planned = plan(total=500, queue=queue, long_count=8, long_s=3.0, delay_s=3.0)
    submitted = Submitted()
    half = len(planned) // 2
    submit(api, planned[:half], submitted)

    def long_jobs_run() -> bool:
        page = api.ok("GET", f"/v1/jobs?state=running&queue={queue}&limit=1000&include=args")
        return any(
            job["task"] == "sleep" and job["args"].get("seconds") == 3.0 for job in page["jobs"]
        )

    eventually(long_jobs_run, timeout_s=30, what="long jobs running")
    first.kill()  # SIGKILL the whole system mid-run
    found = re.search(r"worker (\S+),", first.banner())
    assert found is not None, first.banner()
    killed_id = found.group(1)
    running_at_kill = [
        job.id
        for job in (sqlite_store.get(i) for i in submitted.ids)
        if job.state is JobState.RUNNING
    ]
    assert running_at_kill, "the kill caught jobs running"

    second = procs.start("standalone-2", args, env=env)
    api.close()
    api.url = second.url()
    submit(api, planned[half:], submitted)
    submitted_at = time.monotonic()
    wait_all_terminal(sqlite_store, submitted.ids, timeout_s=120)
    settled = time.monotonic()

    verdict = judge(sqlite_store, submitted)
    assert set(verdict.lost_by(killed_id)) == set(running_at_kill)
    assert second.stop() == 0
    print(
        f"\ne2e standalone: 500 jobs, killed and restarted, settled "
        f"{settled - submitted_at:.1f} s after the last submission, {settled - began:.1f} s "
        f"in all; attempts by outcome {dict(verdict.outcomes())}"
    )
