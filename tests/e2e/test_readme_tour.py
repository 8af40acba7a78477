"""The README's five-minute tour, run as written against a real `taskyard standalone`.

The fenced `sh` blocks of the tour are read from README.md, and every command in them
(with the comment that says what it shows) must be exactly one of `TOUR` below, in the
same order: a command or a claim the README changes fails this test until its check here
changes too, so the tour and the code cannot drift apart. Each command then runs, in one
`bash` (so `JOB=$(...)` is seen by the next command), with the real `jq` when it is
installed and `jq_subset.py` otherwise, and its output is checked against the claim.

The tour's port, 8000, becomes a free one: `localhost:8000` in the commands, and the
`TASKYARD_URL` that the start-up line names for the `taskyard` commands, as the tour says
to do on another port.
A `sleep N;` before a command is the tour waiting for something: here the command is run
again until its claim holds, within a deadline, instead of sleeping N seconds.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
import pytest

from tests.e2e import jq_subset
from tests.e2e.harness import Proc, Procs, clean_environment, free_port
from tests.eventually import eventually

README = Path(__file__).resolve().parents[2] / "README.md"
JQ_SUBSET = Path(jq_subset.__file__)
COMMAND_DEADLINE_S = 30.0
CLAIM_DEADLINE_S = 30.0
"""How long a claim after the tour's `sleep N;` may take to hold (generous: a busy box)."""


# --- reading the tour -----------------------------------------------------------------------


@attrs.frozen
class Line:
    """One command of the tour: its text (continuations joined as written), the comment
    after it (what the README says it shows), and the `sleep N` before it, if any."""

    command: str
    claim: str
    wait_s: float | None = None


def tour_blocks(text: str) -> list[str]:
    """The `sh` blocks between `## A five-minute tour` and the next `## ` heading."""
    section = text.split("\n## A five-minute tour\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def _split_comment(line: str) -> tuple[str, str]:
    """`command   # claim` as (command, claim); a `#` inside quotes is not a comment."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1 :].strip()
    return line.rstrip(), ""


def tour_lines(block: str) -> list[Line]:
    lines: list[Line] = []
    pending = ""
    for raw in block.splitlines():
        if not raw.strip():
            continue
        command, claim = _split_comment(raw)
        if not command and not pending:
            continue  # a comment of its own: what a command before it printed
        if command.endswith("\\"):
            pending += command + "\n"
            continue
        command = pending + command
        pending = ""
        wait = re.match(r"sleep (\d+(?:\.\d+)?)(?:;\s*|$)", command)
        wait_s = float(wait.group(1)) if wait else None
        if wait:
            command = command[wait.end() :]
        lines.append(Line(command=command, claim=claim, wait_s=wait_s))
    return lines


# --- running it -------------------------------------------------------------------------------


@attrs.frozen
class Output:
    out: str
    err: str
    code: int

    def json(self) -> Any:
        assert self.code == 0, (self.code, self.err)
        return json.loads(self.out)

    def stream(self) -> list[Any]:
        """Several JSON values one after the other (what `jq '.jobs[] | ...'` prints)."""
        decoder = json.JSONDecoder()
        values, text, at = [], self.out.strip(), 0
        while at < len(text):
            value, at = decoder.raw_decode(text, at)
            values.append(value)
            while at < len(text) and text[at].isspace():
                at += 1
        return values

    def field(self, name: str) -> str:
        """The value of `name` in a `taskyard jobs get` view (`name  value` lines)."""
        for line in self.out.splitlines():
            key, _, value = line.partition("  ")
            if key == name:
                return value.strip()
        raise AssertionError(f"{name} not in:\n{self.out}")

    def table(self) -> list[list[str]]:
        return [line.split() for line in self.out.splitlines() if line.strip()]


class Shell:
    """One `bash` that runs the tour's commands one at a time, each with its own output."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=directory,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._count = 0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def run(self, command: str) -> Output:
        self._count += 1
        n = self._count
        out, err = self.directory / f"out.{n}", self.directory / f"err.{n}"
        marker = f"__tour_done__ {n} "
        script = f'{{\n{command}\n}} > {out} 2> {err}\necho "{marker}$?"\n'
        assert self.process.stdin is not None
        self.process.stdin.write(script)
        self.process.stdin.flush()
        deadline = time.monotonic() + COMMAND_DEADLINE_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"not done within {COMMAND_DEADLINE_S:g} s: {command}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line.startswith(marker):
                code = int(line[len(marker) :])
                return Output(out=out.read_text(), err=err.read_text(), code=code)

    def value(self, name: str) -> str:
        return self.run(f'printf %s "${name}"').out

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@attrs.define
class Tour:
    shell: Shell
    system: Proc
    port: int

    @property
    def worker_id(self) -> str:
        match = re.search(r"worker (\S+?),", self.system.banner())
        assert match is not None, self.system.banner()
        return match.group(1)

    def job(self, name: str) -> dict[str, Any]:
        """The job whose id the tour keeps in `$name`, read as the tour reads it."""
        got: dict[str, Any] = self.shell.run(
            f"curl -s localhost:{self.port}/v1/jobs/${name}"
        ).json()
        return got

    def wait_state(self, name: str, state: str) -> None:
        eventually(
            lambda: self.job(name)["state"] == state,
            timeout_s=CLAIM_DEADLINE_S,
            what=f"${name} {state}",
        )


def _uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def _started(attempt: dict[str, Any]) -> float:
    return datetime.fromisoformat(attempt["started_at"].replace("Z", "+00:00")).timestamp()


# --- what each command shows --------------------------------------------------------------------

Check = Callable[[Tour, Output], None]


def _id_in(variable: str) -> Check:
    def check(tour: Tour, _: Output) -> None:
        assert _uuid(tour.shell.value(variable)), f"${variable} holds no job id"

    return check


def _submitted(tour: Tour, ran: Output) -> None:
    job = ran.json()
    assert job["task"] == "sleep" and job["state"] == "queued" and _uuid(job["id"])


def _running_and_leased(tour: Tour, ran: Output) -> None:
    shown = ran.json()
    assert list(shown) == ["state", "attempt", "lease"]
    assert shown["state"] == "running" and shown["attempt"] == 1
    assert shown["lease"]["worker"] == tour.worker_id


def _every_attempt(tour: Tour, ran: Output) -> None:
    [attempt] = ran.json()["attempts"]
    assert attempt["attempt"] == 1 and attempt["outcome"] == "running"


def _as_tables(tour: Tour, ran: Output) -> None:
    assert ran.field("id") == tour.shell.value("JOB") and ran.field("state") == "running"
    header, row = ran.out.split("\n\n")[1].splitlines()
    assert header.split() == ["ATTEMPT", "OUTCOME", "WORKER", "STARTED", "DURATION", "ERROR"]
    assert row.split()[:3] == ["1", "running", tour.worker_id]


def _failed_failed_succeeded(tour: Tour, ran: Output) -> None:
    assert ran.field("state") == "succeeded"
    # A succeeded job shows no error; the failed attempts keep theirs.
    assert "last_error" not in [line.partition("  ")[0] for line in ran.out.splitlines()]
    rows = ran.out.split("\n\n")[1].splitlines()[1:]
    assert [row.split()[1] for row in rows] == ["failed", "failed", "succeeded"]
    assert all("TaskFailed" in row for row in rows[:2]), rows
    # "waits 1 s and then 2 s (its backoff)": never sooner.
    attempts = tour.shell.run(f"curl -s localhost:{tour.port}/v1/jobs/$FLAKY/attempts").json()[
        "attempts"
    ]
    starts = [_started(a) for a in attempts]
    assert starts[1] - starts[0] >= 1.0 and starts[2] - starts[1] >= 2.0, starts


def _dead_with_its_last_error(tour: Tour, ran: Output) -> None:
    doomed = tour.shell.value("DOOMED")
    shown = {job["id"]: job for job in ran.stream()}
    assert shown[doomed] == {
        "id": doomed,
        "attempt": 2,
        "last_error": {"type": "TaskFailed", "message": "asked to fail"},
    }


def _dead_listed(tour: Tour, ran: Output) -> None:
    rows = ran.table()
    assert rows[0][:3] == ["ID", "STATE", "TASK"]
    assert [tour.shell.value("DOOMED"), "dead", "sleep"] in [row[:3] for row in rows[1:]]


def _queued_attempt_2(tour: Tour, ran: Output) -> None:
    assert ran.json() == {"state": "queued", "attempt": 2}


def _running_cancel_requested(tour: Tour, ran: Output) -> None:
    assert ran.json() == {"state": "running", "cancel_requested": True}


def _json_is(expected: Any) -> Check:
    def check(tour: Tour, ran: Output) -> None:
        assert ran.json() == expected

    return check


def _cancelled_view(tour: Tour, ran: Output) -> None:
    assert ran.field("id") == tour.shell.value("LATER") and ran.field("state") == "cancelled"


def _doomed_dead_again(tour: Tour, _: Output) -> None:
    doomed = tour.job("DOOMED")
    assert doomed["state"] == "dead" and doomed["attempt"] == 4


def _cancelled_dependency_failed(tour: Tour, ran: Output) -> None:
    shown = ran.json()
    assert shown["state"] == "cancelled"
    assert shown["last_error"]["type"] == "dependency_failed"
    assert shown["last_error"]["message"] == f"dependency {tour.shell.value('DOOMED')} ended dead"


def _queues(tour: Tour, ran: Output) -> None:
    header, *rows = ran.table()
    assert header[:3] == ["QUEUE", "PAUSED", "SCHEDULED"] and header[-1] == "OLDEST_QUEUED"
    assert [row[:2] for row in rows] == [["default", "no"]]


def _workers(tour: Tour, ran: Output) -> None:
    header, *rows = ran.table()
    assert header[:2] == ["WORKER", "QUEUES"]
    assert [row[:2] for row in rows] == [[tour.worker_id, "*"]]


def _prometheus(tour: Tour, ran: Output) -> None:
    assert '\ntaskyard_jobs{queue="default",state="succeeded"} ' in ran.out
    assert "\n# TYPE taskyard_up gauge\n" in ran.out


def _stats(tour: Tour, ran: Output) -> None:
    stats = ran.json()
    assert stats["window_seconds"] == 3600 and stats["succeeded"] >= 4 and stats["dead"] >= 1


def _schedule_made(tour: Tour, ran: Output) -> None:
    assert ran.json() == {"name": "heartbeat", "paused": False}


def _recent_fires(tour: Tour, ran: Output) -> None:
    assert ran.out.splitlines()[1].split()[:2] == ["heartbeat", "sleep"]
    fires = ran.out.split("\n\n")[-1].splitlines()
    assert fires[0].split() == ["FIRE", "OUTCOME", "JOB"]
    enqueued = [row.split() for row in fires[1:] if row.split()[1] == "enqueued"]
    assert enqueued and all(_uuid(row[2]) for row in enqueued)


def _schedule_paused(tour: Tour, ran: Output) -> None:
    header, row = ran.out.splitlines()[:2]
    assert header.split()[-4] == "PAUSED" and row.split()[-4] == "yes"


def _nothing(tour: Tour, ran: Output) -> None:
    """An assignment or a command whose output the tour does not show."""


POST = "curl -s localhost:8000/v1/jobs -H 'content-type: application/json' \\\n  -d "

TOUR: list[tuple[str, str, Check]] = [
    # Submit and watch
    (
        'curl -s localhost:8000/v1/jobs -d \'{"task":"sleep","args":{"seconds":0.1}}\' '
        "-H 'content-type: application/json'",
        "",
        _submitted,
    ),
    (f'JOB=$({POST}\'{{"task":"sleep","args":{{"seconds":5}}}}\' | jq -r .id)', "", _id_in("JOB")),
    (
        "curl -s localhost:8000/v1/jobs/$JOB | jq '{state, attempt, lease}'",
        "running, leased by the worker",
        _running_and_leased,
    ),
    ("curl -s localhost:8000/v1/jobs/$JOB/attempts", "every attempt, oldest first", _every_attempt),
    ("taskyard jobs get $JOB", "the same, as tables", _as_tables),
    # Fail and retry
    (
        f'FLAKY=$({POST}\'{{"task":"sleep","args":{{"fail_times":2}},'
        '"backoff":{"base_seconds":1,"jitter":"none"}}\' | jq -r .id)',
        "",
        _id_in("FLAKY"),
    ),
    ("taskyard jobs get $FLAKY", "attempts: failed, failed, succeeded", _failed_failed_succeeded),
    # Dead letters
    (
        f'DOOMED=$({POST}\'{{"task":"sleep","args":{{"fail":true}},"max_attempts":2,'
        '"backoff":{"base_seconds":1,"jitter":"none"}}\' | jq -r .id)',
        "",
        _id_in("DOOMED"),
    ),
    (
        "curl -s 'localhost:8000/v1/jobs?state=dead' | jq '.jobs[] | {id, attempt, last_error}'",
        "",
        _dead_with_its_last_error,
    ),
    ("taskyard jobs list --state dead", "", _dead_listed),
    (
        "curl -s -X POST localhost:8000/v1/jobs/$DOOMED/retry | jq '{state, attempt}'",
        "queued, attempt 2: 3 and 4 come next",
        _queued_attempt_2,
    ),
    # Cancel
    (
        f'LONG=$({POST}\'{{"task":"sleep","args":{{"seconds":600}}}}\' | jq -r .id)',
        "",
        _id_in("LONG"),
    ),
    (
        "curl -s -X POST localhost:8000/v1/jobs/$LONG/cancel | jq '{state, cancel_requested}'",
        "running, true",
        _running_cancel_requested,
    ),
    ("curl -s localhost:8000/v1/jobs/$LONG | jq .state", '"cancelled"', _json_is("cancelled")),
    (
        f'LATER=$({POST}\'{{"task":"sleep","delay_seconds":3600}}\' | jq -r .id)',
        "",
        _id_in("LATER"),
    ),
    ("taskyard jobs cancel $LATER", "", _cancelled_view),
    # Dependencies
    (
        f'FIRST=$({POST}\'{{"task":"sleep","args":{{"seconds":2}}}}\' | jq -r .id)',
        "",
        _id_in("FIRST"),
    ),
    (
        f'THEN=$({POST}"{{\\"task\\":\\"sleep\\",\\"depends_on\\":[\\"$FIRST\\"]}}" | jq -r .id)',
        "",
        _id_in("THEN"),
    ),
    ("curl -s localhost:8000/v1/jobs/$THEN | jq .state", '"scheduled"', _json_is("scheduled")),
    ("curl -s localhost:8000/v1/jobs/$THEN | jq .state", '"succeeded"', _json_is("succeeded")),
    ("", "the retried DOOMED job is dead again by now", _doomed_dead_again),
    (
        f'ORPHAN=$({POST}"{{\\"task\\":\\"sleep\\",\\"depends_on\\":[\\"$DOOMED\\"]}}"'
        " | jq -r .id)",
        "",
        _id_in("ORPHAN"),
    ),
    (
        "curl -s localhost:8000/v1/jobs/$ORPHAN | jq '{state, last_error}'",
        "cancelled: dependency_failed",
        _cancelled_dependency_failed,
    ),
    # Schedules
    (
        "curl -s localhost:8000/v1/schedules -H 'content-type: application/json' -d "
        '\'{"name":"heartbeat","task":"sleep","every_seconds":2,"overlap":"allow"}\''
        " | jq '{name, paused}'",
        "",
        _schedule_made,
    ),
    ("taskyard schedules show heartbeat", "its recent fires, each with its job", _recent_fires),
    (
        "taskyard schedules pause heartbeat",
        "paused: no more fires until resumed",
        _schedule_paused,
    ),
    # Look around
    ("taskyard queues", "jobs by queue and state", _queues),
    ("taskyard workers", "live workers (--schedulers: who leads)", _workers),
    ("curl -s localhost:8000/metrics", "Prometheus", _prometheus),
    ("curl -s localhost:8000/v1/stats", "", _stats),
]

PRECONDITIONS: dict[str, tuple[str, str]] = {
    # The tour looks at, and cancels, jobs it has just submitted as running: a worker
    # claims them within milliseconds, but on a busy machine the command could come first,
    # so the test lets the claim happen.
    "curl -s localhost:8000/v1/jobs/$JOB | jq '{state, attempt, lease}'": ("JOB", "running"),
    "curl -s -X POST localhost:8000/v1/jobs/$LONG/cancel | jq '{state, cancel_requested}'": (
        "LONG",
        "running",
    ),
}


# --- the test -----------------------------------------------------------------------------------


def _until_it_holds(tour: Tour, line: Line, command: str, check: Check) -> None:
    """What the tour shows after `sleep N`: run the command until its claim holds."""
    failures: list[str] = []

    def holds() -> bool:
        try:
            check(tour, tour.shell.run(command) if command else Output("", "", 0))
        except Exception as exc:  # not yet: a claim that fails, or output not there yet
            failures[:] = [f"{type(exc).__name__}: {exc}"]
            return False
        return True

    eventually(
        holds,
        timeout_s=(line.wait_s or 0) + CLAIM_DEADLINE_S,
        what=f"after `sleep {line.wait_s:g}`: {line.command!r} # {line.claim} ({failures})",
    )


def test_the_tour_lists_exactly_the_commands_this_test_checks() -> None:
    blocks = tour_blocks(README.read_text())
    start, *rest = blocks
    assert [(line.command, line.claim) for line in tour_lines(start)] == [
        (
            "pip install . && taskyard standalone",
            "",
        ),
    ]
    assert start.splitlines()[1].startswith("# taskyard standalone listening on ")
    section = README.read_text().split("\n## A five-minute tour\n", 1)[1].split("\n## ")[0]
    assert section.count("TASKYARD_URL") == 1, "the tour says once how to point at another port"
    found = [(line.command, line.claim) for block in rest for line in tour_lines(block)]
    assert found == [(command, claim) for command, claim, _ in TOUR]


def _jq_on_path(bin_dir: Path) -> None:
    """The real jq when installed; else `jq_subset.py` under the name `jq`."""
    if shutil.which("jq") is not None:
        return
    shim = bin_dir / "jq"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{JQ_SUBSET}" "$@"\n')
    shim.chmod(0o755)


@pytest.fixture
def tour(procs: Procs, tmp_path: Path) -> Iterator[Tour]:
    port = free_port()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _jq_on_path(bin_dir)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = clean_environment(PATH=path, HOME=str(tmp_path))
    system = procs.start("standalone", ["standalone", "--port", str(port)], env=env, cwd=tmp_path)
    shell = Shell(tmp_path, env)
    try:
        yield Tour(shell=shell, system=system, port=port)
    finally:
        shell.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="the tour uses curl")
def test_the_readme_tour_shows_what_it_says(tour: Tour, procs: Procs, tmp_path: Path) -> None:
    text = README.read_text()
    start, *rest = tour_blocks(text)
    # On another port than the tour's, the start-up line ends with the TASKYARD_URL to
    # export, and the shell exports it, as the tour says to.
    banner = tour.system.banner()
    hint = f"; export TASKYARD_URL=http://127.0.0.1:{tour.port} for the client commands"
    assert banner.endswith(hint), banner
    tour.shell.run(f"export {hint.split()[2]}")
    claimed = start.splitlines()[1].removeprefix("# ")
    pattern = re.escape(claimed.replace(":8000", f":{tour.port}")).replace(r"\.\.\.", ".*")
    assert re.fullmatch(pattern, banner.removesuffix(hint)), (claimed, banner)
    checks = {(command, claim): check for command, claim, check in TOUR}

    for line in (line for block in rest for line in tour_lines(block)):
        command = line.command.replace("localhost:8000", f"localhost:{tour.port}")
        check = checks[(line.command, line.claim)]
        if line.command in PRECONDITIONS:
            tour.wait_state(*PRECONDITIONS[line.command])
        if line.wait_s is None:
            check(tour, tour.shell.run(command))
            continue
        _until_it_holds(tour, line, command, check)

    # "Ctrl-C stops taskyard standalone gracefully ...; the jobs are in ./taskyard.db at
    # the next start."
    tour.system.send(signal.SIGINT)
    assert tour.system.wait() == 0
    assert (tmp_path / "taskyard.db").exists()
    job_id = tour.shell.value("JOB")
    again = procs.start(
        "standalone-again",
        ["standalone", "--port", str(tour.port)],
        env=clean_environment(),
        cwd=tmp_path,
    )
    again.banner()
    assert tour.job("JOB")["id"] == job_id and tour.job("JOB")["state"] == "succeeded"
    again.send(signal.SIGINT)
    assert again.wait() == 0


JQ_CASES = [
    ("-r", ".id", {"id": "0192", "state": "queued"}),
    ("", ".state", {"state": "scheduled"}),
    ("", "{state, attempt, lease}", {"state": "running", "attempt": 1, "lease": {"worker": "w"}}),
    ("", "{state, last_error}", {"state": "cancelled", "last_error": None, "x": 1}),
    ("", ".jobs[] | {id, attempt, last_error}", {"jobs": [{"id": "a", "attempt": 2}, {"id": "é"}]}),
]


@pytest.mark.parametrize(("flag", "program", "value"), JQ_CASES)
def test_the_jq_stand_in_prints_what_jq_prints(flag: str, program: str, value: Any) -> None:
    argv = [flag, program] if flag else [program]
    stdin = json.dumps(value)
    ours = subprocess.run(
        [sys.executable, str(JQ_SUBSET), *argv], input=stdin, capture_output=True, text=True,
        timeout=30, check=True,
    )  # fmt: skip
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed: nothing to compare with")
    theirs = subprocess.run(
        ["jq", *argv], input=stdin, capture_output=True, text=True, timeout=30, check=True
    )
    assert ours.stdout == theirs.stdout


def test_the_jq_stand_in_refuses_what_it_does_not_know() -> None:
    for program in (".jobs | length", "map(.id)", ".a.b", ".[0]"):
        done = subprocess.run(
            [sys.executable, str(JQ_SUBSET), program], input="{}", capture_output=True,
            text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 3 and "unsupported filter" in done.stderr, program
