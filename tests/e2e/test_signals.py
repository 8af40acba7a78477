"""Stopping real worker and scheduler processes with signals.

* SIGTERM: a worker stops claiming, lets running jobs finish within the grace period,
  hands back what is left (queued again at once, not after the lease), and exits 0.
* A second signal exits at once, even with a handler that ignores every request to stop;
  its job is not lost: the lease expires and it runs again.
* A scheduler that stops gives up the leadership, so the standby leads at once.
* Ctrl-C on `taskyard standalone`: the running job finishes, nothing new is claimed, the
  port is released and it exits 0 (the way an ordinary exit would: threads that are not
  daemons are waited for, atexit handlers run); a second Ctrl-C exits at once with 130.
"""

from __future__ import annotations

import signal
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.domain.model import Job, JobState, Outcome
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.library import App
from tests.e2e.harness import Proc, Procs, clean_environment
from tests.eventually import eventually

WAIT_S = 20.0

STUBBORN_APP = """
    import time

    import taskyard

    app = taskyard.App()


    @app.task(name="stubborn")
    def stubborn(ctx: taskyard.JobContext) -> str:
        # Ignores cancellation on its first attempt: only a hard exit ends it early.
        if ctx.attempt == 1:
            time.sleep(120)
        return f"done on attempt {ctx.attempt}"
"""


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def app(db: str) -> Iterator[App]:
    with App(db) as opened:
        yield opened


def _running(app: App, jobs: list[Job]) -> bool:
    return all(app.get(job).state is JobState.RUNNING for job in jobs)


def _saw(proc_lines: object, message: str) -> bool:
    assert isinstance(proc_lines, list)
    return any(line.get("message") == message for line in proc_lines)


def _begin_graceful_stop(proc: Proc, signum: int) -> None:
    """Send the first signal and wait until the process logged that it stops gracefully."""
    proc.send(signum)
    eventually(
        lambda: _saw(
            proc.log_lines(), "stopping gracefully (send the signal again to exit at once)"
        ),
        timeout_s=WAIT_S,
        what="the graceful stop began",
    )


def test_sigterm_hands_unfinished_jobs_back_at_once_and_exits_0(
    procs: Procs, db: str, app: App
) -> None:
    env = clean_environment(TASKYARD_LOG_FORMAT="json")
    worker = procs.start(
        "worker",
        ["worker", "--db", db, "--concurrency", "2", "--grace-period", "0.5", "--lease-ttl", "60"],
        env=env,
    )
    worker_id = worker.process_id()
    jobs = [app.enqueue("sleep", args={"seconds": 600}) for _ in range(2)]
    eventually(lambda: _running(app, jobs), timeout_s=WAIT_S, what="both jobs running")
    worker.send(signal.SIGTERM)
    # Well within the 60 s lease: the jobs were handed back, not left to expire.
    assert worker.wait(WAIT_S) == 0
    for job in jobs:
        back = app.get(job)
        assert back.state is JobState.QUEUED and back.lease is None
        [attempt] = app.attempts(job)
        assert attempt.worker == worker_id and attempt.outcome is Outcome.WORKER_LOST
        assert attempt.error is not None and attempt.error.type == "shutdown"
    lines = worker.log_lines()
    assert _saw(lines, "stopping gracefully (send the signal again to exit at once)")
    [stopped] = [line for line in lines if line["message"] == "worker stopped"]
    assert stopped["released"] == 2 and stopped["worker_id"] == worker_id


def test_sigterm_lets_a_running_job_finish_within_the_grace_period(
    procs: Procs, db: str, app: App
) -> None:
    worker = procs.start(
        "worker",
        ["worker", "--db", db, "--grace-period", "30"],
        env=clean_environment(TASKYARD_LOG_FORMAT="json"),
    )
    worker.banner()
    job = app.enqueue("sleep", args={"seconds": 1.0})
    eventually(lambda: _running(app, [job]), timeout_s=WAIT_S, what="the job running")
    worker.send(signal.SIGTERM)
    waiting = app.enqueue("sleep", args={"seconds": 0})
    assert worker.wait(WAIT_S) == 0
    assert app.get(job).state is JobState.SUCCEEDED
    assert [a.outcome for a in app.attempts(job)] == [Outcome.SUCCEEDED]
    assert app.get(waiting).state is JobState.QUEUED  # nothing new was claimed


def test_a_second_signal_exits_at_once_and_the_job_runs_again_after_its_lease(
    procs: Procs, db: str, app: App, tmp_path: Path
) -> None:
    (tmp_path / "stubborn_app.py").write_text(textwrap.dedent(STUBBORN_APP))
    env = clean_environment(TASKYARD_LOG_FORMAT="json")
    common = ["--db", db, "--app", "stubborn_app:app", "--lease-ttl", "2"]
    worker = procs.start("worker", ["worker", *common, "--grace-period", "600"], env=env)
    worker_id = worker.process_id()
    assert "stubborn" in worker.banner()
    job = app.enqueue("stubborn")
    eventually(lambda: _running(app, [job]), timeout_s=WAIT_S, what="the job running")

    _begin_graceful_stop(worker, signal.SIGTERM)
    assert worker.process.poll() is None  # waiting for the handler, up to 600 s
    worker.send(signal.SIGTERM)
    assert worker.wait(WAIT_S) == 128 + signal.SIGTERM
    assert "SIGTERM again: exiting now" in worker.stderr()
    assert app.get(job).state is JobState.RUNNING  # nothing was handed back

    # Not lost: once the lease expires, the job is reaped and runs again.
    rescue = procs.start(
        "standalone", ["standalone", *common, "--port", "0"], env=env, cwd=tmp_path
    )
    rescue.banner()
    eventually(lambda: app.get(job).state is JobState.SUCCEEDED, timeout_s=WAIT_S, what="ran again")
    first, second = app.attempts(job)
    assert (first.worker, first.outcome) == (worker_id, Outcome.WORKER_LOST)
    assert second.outcome is Outcome.SUCCEEDED
    assert app.get(job).result == "done on attempt 2"
    assert rescue.stop() == 0


def test_a_handler_that_ignores_the_stop_does_not_keep_the_worker_alive(
    procs: Procs, db: str, app: App, tmp_path: Path
) -> None:
    (tmp_path / "stubborn_app.py").write_text(textwrap.dedent(STUBBORN_APP))
    worker = procs.start(
        "worker",
        ["worker", "--db", db, "--app", "stubborn_app:app", "--grace-period", "0.2"],
        env=clean_environment(TASKYARD_LOG_FORMAT="json"),
    )
    worker.banner()
    job = app.enqueue("stubborn")
    eventually(lambda: _running(app, [job]), timeout_s=WAIT_S, what="the job running")
    worker.send(signal.SIGTERM)
    assert worker.wait(WAIT_S) == 0
    assert app.get(job).state is JobState.QUEUED  # handed back to run elsewhere
    assert _saw(worker.log_lines(), "handlers ignored the request to stop; exiting without them")


def test_a_scheduler_that_stops_resigns_so_a_standby_leads_at_once(
    procs: Procs, db: str, redis_url: str, redis_prefix: str
) -> None:
    # A leader TTL far longer than the deadlines: only a resignation explains a takeover.
    env = clean_environment(
        TASKYARD_REDIS_URL=redis_url,
        TASKYARD_REDIS_KEY_PREFIX=redis_prefix,
        TASKYARD_LEADER_TTL_SECONDS="120",
        TASKYARD_LOG_FORMAT="json",
    )
    started = [procs.start(f"scheduler{i}", ["scheduler", "--db", db], env=env) for i in range(3)]
    by_id = {proc.process_id(): proc for proc in started}
    observer = bootstrap(
        Settings(database_url="memory://", redis_url=redis_url, redis_key_prefix=redis_prefix)
    )
    coordinator = observer.coordinator
    assert coordinator is not None

    def leader() -> str | None:
        lead = coordinator.leader()
        return lead.holder if lead is not None else None

    def listed() -> list[str]:
        return sorted(s.id for s in coordinator.schedulers())

    try:
        eventually(lambda: leader() is not None, timeout_s=WAIT_S, what="a leader")
        eventually(lambda: listed() == sorted(by_id), timeout_s=WAIT_S, what="all listed")
        leading = leader()
        assert leading is not None
        follower, standby = sorted(i for i in by_id if i != leading)

        assert by_id[follower].stop() == 0  # a follower leaves the list at once
        assert listed() == sorted([leading, standby]) and leader() == leading

        assert by_id[leading].stop() == 0  # the leader resigns: the standby leads at once
        eventually(lambda: leader() == standby, timeout_s=WAIT_S, what="the standby leads")
        assert listed() == [standby]
        assert by_id[standby].stop() == 0
        assert listed() == [] and leader() is None
    finally:
        observer.close()


# --- taskyard standalone ------------------------------------------------------------------

EXIT_HOOKS_APP = """
    import atexit
    import pathlib
    import threading

    import taskyard

    app = taskyard.App()
    here = pathlib.Path.cwd()

    atexit.register(lambda: (here / "atexit-ran").write_text("yes"))


    def outlive_main() -> None:
        threading.main_thread().join()  # returns once the main thread is done
        (here / "thread-finished").write_text("yes")


    threading.Thread(target=outlive_main, daemon=False).start()
"""


def _port_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


def test_ctrl_c_on_standalone_lets_the_running_job_finish_then_exits_0(
    procs: Procs, db: str, app: App
) -> None:
    system = procs.start(
        "standalone",
        ["standalone", "--db", db, "--port", "0", "--grace-period", "60"],
        env=clean_environment(TASKYARD_LOG_FORMAT="json"),
    )
    url = system.url()
    job = app.enqueue("sleep", args={"seconds": 1.0})
    eventually(lambda: _running(app, [job]), timeout_s=WAIT_S, what="the job running")
    _begin_graceful_stop(system, signal.SIGINT)
    waiting = app.enqueue("sleep", args={"seconds": 0})
    assert system.wait(WAIT_S) == 0
    assert app.get(job).state is JobState.SUCCEEDED  # finished, not handed back
    assert [a.outcome for a in app.attempts(job)] == [Outcome.SUCCEEDED]
    assert app.get(waiting).state is JobState.QUEUED  # nothing new was claimed
    assert system.log_lines()[-1]["message"] == "standalone exited"
    assert _port_closed(url)


def test_ctrl_c_on_an_idle_standalone_exits_0_as_an_ordinary_exit_would(
    procs: Procs, db: str, tmp_path: Path
) -> None:
    """The process ends as an ordinary exit does: it waits for a thread that is not a
    daemon and runs the atexit handlers (an app's, the logs')."""
    (tmp_path / "exit_hooks_app.py").write_text(textwrap.dedent(EXIT_HOOKS_APP))
    system = procs.start(
        "standalone",
        ["standalone", "--db", db, "--port", "0", "--app", "exit_hooks_app:app"],
        env=clean_environment(TASKYARD_LOG_FORMAT="json"),
    )
    url = system.url()
    system.send(signal.SIGINT)
    assert system.wait(WAIT_S) == 0
    assert (tmp_path / "thread-finished").read_text() == "yes"
    assert (tmp_path / "atexit-ran").read_text() == "yes"
    assert system.log_lines()[-1]["message"] == "standalone exited"
    assert system.stdout().startswith("taskyard standalone listening on ")
    assert _port_closed(url)


def test_a_second_ctrl_c_ends_standalone_at_once_with_130(procs: Procs, db: str, app: App) -> None:
    system = procs.start(
        "standalone",
        ["standalone", "--db", db, "--port", "0", "--grace-period", "600"],
        env=clean_environment(TASKYARD_LOG_FORMAT="json"),
    )
    system.banner()
    job = app.enqueue("sleep", args={"seconds": 600})
    eventually(lambda: _running(app, [job]), timeout_s=WAIT_S, what="the job running")
    _begin_graceful_stop(system, signal.SIGINT)
    assert system.process.poll() is None  # waiting for the job, up to 600 s
    system.send(signal.SIGINT)
    assert system.wait(WAIT_S) == 128 + signal.SIGINT
    assert "SIGINT again: exiting now" in system.stderr()
