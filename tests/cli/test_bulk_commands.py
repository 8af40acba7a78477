"""`taskyard queues pause|resume NAME` and `taskyard jobs retry|cancel` by filter: the bulk
commands count what they will touch and ask first (`--yes` does not; without a terminal
they refuse rather than hang), and hostile names are one clear line, never a traceback."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from taskyard.entrypoints.standalone import Standalone
from tests.cli.conftest import Ran, RunCli
from tests.eventually import eventually

WAIT_S = 20.0


class Terminal(io.StringIO):
    """stdin as a person at a terminal who types `answer`."""

    def isatty(self) -> bool:
        return True


def _json(ran: Ran) -> Any:
    assert ran.code == 0, ran.err
    return json.loads(ran.out)


def _states(run_cli: RunCli, url: str, queue: str) -> list[str]:
    page = _json(run_cli("jobs", "list", "--queue", queue, "--json", "--url", url))
    return sorted(job["state"] for job in page["jobs"])


def _waiting(run_cli: RunCli, url: str, queue: str, count: int) -> None:
    for _ in range(count):
        _json(
            run_cli("submit", "sleep", "--queue", queue, "--delay", "3600", "--json", "--url", url)
        )


def _paused(run_cli: RunCli, url: str) -> dict[str, bool]:
    return {
        q["name"]: q["paused"] for q in _json(run_cli("queues", "--json", "--url", url))["queues"]
    }


def test_queues_pause_and_resume_a_queue(system: Standalone, run_cli: RunCli) -> None:
    url = ["--url", system.url]
    paused = run_cli("queues", "pause", "reports", *url)
    assert (paused.code, paused.err) == (0, "")
    assert paused.out.startswith("paused queue reports: workers claim nothing more from it")
    assert _paused(run_cli, system.url) == {"reports": True}
    table = run_cli("queues", *url).out.splitlines()
    assert table[1].split()[:2] == ["reports", "yes"]

    # The options may come before the action too; --json prints the API's answer.
    resumed = run_cli("queues", *url, "--json", "resume", "reports")
    assert _json(resumed) == {"name": "reports", "paused": False}
    assert _paused(run_cli, system.url) == {}
    assert run_cli("queues", "resume", "reports", *url).out == "resumed queue reports\n"


HOSTILE_NAMES = [
    "a\x00b",
    "\x1b[31mred",
    "line\nbreak",
    "a b",
    "",
    "../../etc",
    "caf\u00e9",
    "q" * 1_000_000,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:12]))
@pytest.mark.parametrize(
    "argv",
    [
        ["queues", "pause", "{}"],
        ["queues", "resume", "{}"],
        ["jobs", "retry", "--state", "dead", "--queue", "{}", "--yes"],
        ["jobs", "cancel", "--queue", "ok", "--queue", "{}", "--yes"],
        ["jobs", "list", "--queue", "{}"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_a_hostile_queue_name_is_one_clear_line_and_changes_nothing(
    system: Standalone, run_cli: RunCli, argv: list[str], name: str
) -> None:
    _waiting(run_cli, system.url, "ok", 1)
    ran = run_cli(*[name if arg == "{}" else arg for arg in argv], "--url", system.url)
    assert (ran.code, ran.out, len(ran.err_lines)) == (2, "", 1), ran.err[:300]
    line = ran.err_lines[0]
    assert line.startswith("taskyard: ") and "is not a queue name" in line
    assert len(line) < 200 and line.isprintable() and "Traceback" not in ran.err
    assert _paused(run_cli, system.url) == {"ok": False}
    assert _states(run_cli, system.url, "ok") == ["scheduled"]


def test_a_hostile_task_name_is_one_clear_line(system: Standalone, run_cli: RunCli) -> None:
    ran = run_cli("jobs", "cancel", "--task", "t" * 500_000, "--yes", "--url", system.url)
    assert (ran.code, len(ran.err_lines)) == (2, 1)
    assert ran.err_lines[0].startswith("taskyard: --task: 'tttt")
    assert "(500,000 characters): a task name is 1 to 200 characters" in ran.err_lines[0]


def test_bulk_cancel_and_retry_with_yes_change_every_matching_job(
    system: Standalone, run_cli: RunCli
) -> None:
    url = ["--url", system.url]
    _waiting(run_cli, system.url, "lane", 3)
    _waiting(run_cli, system.url, "other", 1)
    cancelled = run_cli("jobs", "cancel", "--queue", "lane", "--yes", *url)
    assert (cancelled.code, cancelled.err) == (0, "")
    assert cancelled.out == "cancelled (or, running, asked to stop) 3 jobs\n"
    assert _states(run_cli, system.url, "lane") == ["cancelled"] * 3
    assert _states(run_cli, system.url, "other") == ["scheduled"]

    retried = run_cli("jobs", "retry", "--state", "cancelled", "--queue", "lane", "--yes", *url)
    assert (retried.code, retried.out) == (0, "retried 3 jobs\n")
    eventually(
        lambda: _states(run_cli, system.url, "lane") == ["succeeded"] * 3,
        timeout_s=WAIT_S,
        what="the retried jobs ran",
    )
    nothing = run_cli("jobs", "retry", "--state", "dead", "--queue", "lane", *url)
    assert (nothing.code, nothing.out) == (0, "no dead jobs in queue lane: nothing to retry\n")


def test_bulk_retry_of_dead_jobs_by_task_with_json(system: Standalone, run_cli: RunCli) -> None:
    url = ["--url", system.url]
    for _ in range(2):
        run_cli("submit", "sleep", "--args", '{"fail": true}', "--max-attempts", "1", *url)
    eventually(
        lambda: _states(run_cli, system.url, "default") == ["dead", "dead"],
        timeout_s=WAIT_S,
        what="both jobs dead",
    )
    ran = run_cli("jobs", "retry", "--state", "dead", "--task", "sleep", "--yes", "--json", *url)
    assert _json(ran) == {"count": 2}


def test_without_yes_and_without_a_terminal_it_refuses_and_changes_nothing(
    system: Standalone, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    _waiting(run_cli, system.url, "lane", 2)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # a pipe: nobody to ask
    ran = run_cli("jobs", "cancel", "--queue", "lane", "--url", system.url)
    assert (ran.code, ran.out, len(ran.err_lines)) == (2, "", 1)
    assert ran.err_lines[0].startswith(
        "taskyard: --yes: stdin is not a terminal to ask on: Cancel 2 jobs "
        "(unfinished jobs in queue lane)? Counted just now"
    )
    assert ran.err_lines[0].endswith("Add --yes to go ahead.")
    assert _states(run_cli, system.url, "lane") == ["scheduled"] * 2


@pytest.mark.parametrize(("answer", "goes_on"), [("y\n", True), ("yes\n", True), ("n\n", False),
                                                 ("\n", False), ("", False)])  # fmt: skip
def test_at_a_terminal_it_shows_the_count_and_goes_on_only_on_yes(
    system: Standalone,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    goes_on: bool,
) -> None:
    _waiting(run_cli, system.url, "lane", 2)
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    ran = run_cli("jobs", "cancel", "--queue", "lane", "--state", "scheduled", "--url", system.url)
    assert ran.err.startswith(
        "Cancel 2 jobs (scheduled jobs in queue lane)? Counted just now: jobs that start or "
        "stop matching before the cancel runs change that number. [y/N] "
    )
    if goes_on:
        assert (ran.code, ran.out) == (0, "cancelled (or, running, asked to stop) 2 jobs\n")
        assert _states(run_cli, system.url, "lane") == ["cancelled"] * 2
    else:
        assert (ran.code, ran.out) == (1, "")
        # At a terminal the typed answer ends the prompt's line; here only end of input does.
        assert ran.err.endswith("taskyard: not confirmed: no job was cancelled\n")
        assert _states(run_cli, system.url, "lane") == ["scheduled"] * 2


def test_one_job_or_a_filter_but_not_both_nor_neither(system: Standalone, run_cli: RunCli) -> None:
    some_id = "0190a000-0000-7000-8000-000000000000"
    for argv in (["jobs", "retry", some_id, "--state", "dead"], ["jobs", "cancel"]):
        ran = run_cli(*argv, "--url", system.url)
        assert (ran.code, len(ran.err_lines)) == (2, 1)
        assert ran.err_lines[0].startswith("taskyard: ID: give a job ID")
    assert run_cli("jobs", "retry", "--state", "queued", "--url", system.url).code == 2


def test_jobs_list_help_lists_the_states(run_cli: RunCli) -> None:
    ran = run_cli("jobs", "list", "--help")
    assert ran.code == 0
    text = " ".join(ran.out.split())
    assert "scheduled, queued, running, retrying, succeeded, dead, cancelled" in text
    retry_help = " ".join(run_cli("jobs", "retry", "--help").out.split())
    assert "--state STATE dead, cancelled" in retry_help
