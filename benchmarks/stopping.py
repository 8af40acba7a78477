"""How long a Ctrl-C (SIGINT) takes to end `taskyard standalone`, `worker` or `scheduler`.

    python benchmarks/stopping.py                           # standalone, idle, 5 runs
    python benchmarks/stopping.py --job-seconds 3           # with a 3 s job running
    python benchmarks/stopping.py --command worker --runs 10

Each run starts the command in a temporary directory on a SQLite file of its own (JSON
logs), waits until it is up (and, with --job-seconds, until a `sleep` job of that length
runs), sends SIGINT and waits for the exit. It prints, per run, the time from the signal
to the exit, when the process logged that it exited (relative to the signal), and the
exit code; then the median and the worst. With a job, the stop waits for the job by
design: what is left of the job is part of the figure. Loopback only; every wait has a
deadline.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

DEADLINE_S = 60.0
EXITED = {
    "standalone": "standalone exited",
    "worker": "worker exited",
    "scheduler": "scheduler exited",
}


def taskyard() -> list[str]:
    script = Path(sys.executable).parent / "taskyard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "taskyard.entrypoints.cli"]


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"stopping.py: not within {DEADLINE_S:g} s: {what}")
        time.sleep(0.01)


def one_run(command: str, job_s: float) -> tuple[float, float | None, int]:
    from taskyard import App
    from taskyard.domain.model import JobState

    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{Path(folder) / 'jobs.db'}"
        args = [command, "--db", db, "--log-format", "json"]
        if command == "standalone":
            args += ["--port", "0"]
        out, err = Path(folder) / "out", Path(folder) / "err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [*taskyard(), *args],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        try:
            wait_for(lambda: "\n" in out.read_text() or proc.poll() is not None, "up")
            if job_s:
                with App(db) as app:
                    job = app.enqueue("sleep", args={"seconds": job_s})
                    wait_for(lambda: app.get(job).state is JobState.RUNNING, "the job running")
            sent_wall = time.time()
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=DEADLINE_S)
            took_s = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=DEADLINE_S)
        logged_s = None
        for line in err.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("message") == EXITED[command]:
                at = datetime.fromisoformat(json.loads(line)["time"].replace("Z", "+00:00"))
                logged_s = at.timestamp() - sent_wall
        return took_s, logged_s, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command", choices=sorted(EXITED), default="standalone")
    parser.add_argument("--runs", type=int, default=5, help="1 to 50 (default 5)")
    parser.add_argument("--job-seconds", type=float, default=0.0, help="0 to 30 (default 0)")
    args = parser.parse_args()
    if not 1 <= args.runs <= 50 or not 0 <= args.job_seconds <= 30:
        parser.error("--runs is 1 to 50, --job-seconds 0 to 30")
    job = f", a {args.job_seconds:g} s job running" if args.job_seconds else ", idle"
    print(f"SIGINT -> exit of taskyard {args.command}{job}, {args.runs} runs")
    took: list[float] = []
    for index in range(args.runs):
        took_s, logged_s, code = one_run(args.command, args.job_seconds)
        took.append(took_s)
        logged = "-" if logged_s is None else f"{logged_s:.3f} s"
        print(f"run {index + 1}: exit {code} after {took_s:.3f} s ('exited' logged at {logged})")
    print(f"median {statistics.median(took):.3f} s, worst {max(took):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
