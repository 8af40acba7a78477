"""A real `taskyard worker` process running `async def` handlers beside plain ones, and
`--pool process` killing a handler at its timeout: the job behind it gets the slot."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.domain.model import JobState, Outcome
from taskyard.entrypoints.library import App
from tests.e2e.harness import Procs, clean_environment
from tests.eventually import eventually, process_gone

WAIT_S = 30.0

POOLS_APP = """
    import asyncio
    import os
    import time
    from pathlib import Path

    import taskyard

    app = taskyard.App()


    @app.task(name="double")
    async def double(n: int) -> dict[str, int]:
        await asyncio.sleep(0.01)
        return {"double": n * 2, "pid": os.getpid()}


    @app.task(name="stall", timeout=1.0, max_attempts=1)
    async def stall() -> None:
        await asyncio.sleep(120)


    @app.task(name="hang", timeout=1.0, max_attempts=1)
    def hang(pid_file: str) -> str:
        Path(pid_file).write_text(str(os.getpid()))
        time.sleep(120)
        return "outlived its timeout"


    @app.task(name="pid")
    def pid() -> int:
        return os.getpid()
"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with App(f"sqlite:///{tmp_path / 'jobs.db'}") as opened:
        yield opened


def test_a_process_pool_worker_runs_async_handlers_and_kills_a_hung_one(
    procs: Procs, app: App, tmp_path: Path
) -> None:
    (tmp_path / "pools_app.py").write_text(textwrap.dedent(POOLS_APP))
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    args = ["worker", "--db", db, "--app", "pools_app:app", "--pool", "process"]
    worker = procs.start(
        "worker", [*args, "--concurrency", "1"], env=clean_environment(), cwd=tmp_path
    )
    worker.banner()

    doubles = [app.enqueue("double", args={"n": n}) for n in range(10)]
    stalled = app.enqueue("stall")
    pid_file = tmp_path / "hang.pid"
    hung = app.enqueue("hang", args={"pid_file": str(pid_file)})
    eventually(pid_file.exists, timeout_s=WAIT_S, what="the hung handler started")
    child = int(pid_file.read_text())
    after = app.enqueue("pid")

    def settled() -> bool:
        return all(app.get(job).state.is_terminal for job in [*doubles, stalled, hung, after])

    eventually(settled, timeout_s=WAIT_S, what="every job ended")
    # async def handlers are awaited in the worker itself, not stored as coroutines.
    assert [app.get(job).result for job in doubles] == [
        {"double": n * 2, "pid": worker.pid} for n in range(10)
    ]
    for timed_out in (stalled, hung):
        assert app.get(timed_out).state is JobState.DEAD
        assert [a.outcome for a in app.attempts(timed_out)] == [Outcome.TIMEOUT]
    # One slot: the job after the hung one ran because the hung child was killed.
    done = app.get(after)
    assert done.state is JobState.SUCCEEDED
    assert done.result not in (worker.pid, child)
    eventually(lambda: process_gone(child), timeout_s=WAIT_S, what="the hung child killed")
    assert worker.stop() == 0
