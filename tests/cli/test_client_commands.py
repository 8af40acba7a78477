"""`taskyard submit | jobs | queues | workers` against a real API on a loopback port:
readable output, the API's JSON with --json, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from taskyard.entrypoints.standalone import Standalone
from tests.cli.conftest import Ran, RunCli, start_system
from tests.eventually import eventually

WAIT_S = 20.0


def _json(ran: Ran) -> Any:
    assert ran.code == 0, ran.err
    return json.loads(ran.out)


def _field(out: str, name: str) -> str:
    """The value of `name` in a job view (`name  value` lines)."""
    for line in out.splitlines():
        key, _, value = line.partition("  ")
        if key == name:
            return value.strip()
    raise AssertionError(f"{name} not in:\n{out}")


def test_submit_prints_the_job_and_jobs_get_shows_it_succeeded_with_its_attempts(
    system: Standalone, run_cli: RunCli
) -> None:
    ran = run_cli("submit", "sleep", "--args", '{"seconds": 0.05}', "--url", system.url)
    assert ran.code == 0 and ran.err == ""
    job_id = _field(ran.out, "id")
    assert _field(ran.out, "task") == "sleep"
    assert _field(ran.out, "state") in ("queued", "running", "succeeded")

    def succeeded() -> bool:
        return (
            _field(run_cli("jobs", "get", job_id, "--url", system.url).out, "state") == "succeeded"
        )

    eventually(succeeded, timeout_s=WAIT_S, what="the job succeeded")
    shown = run_cli("jobs", "get", job_id, "--url", system.url)
    assert _field(shown.out, "result") == '{"slept_seconds":0.05}'
    assert (_field(shown.out, "attempt"), _field(shown.out, "max_attempts")) == ("1", "3")
    header, row = shown.out.split("\n\n")[1].splitlines()
    assert header.split() == ["ATTEMPT", "OUTCOME", "WORKER", "STARTED", "DURATION", "ERROR"]
    assert row.split()[:3] == ["1", "succeeded", system.worker_id]
    assert _json(run_cli("jobs", "get", job_id, "--json", "--url", system.url))["state"] == (
        "succeeded"
    )


def test_submit_sends_every_option_and_an_idempotent_replay_returns_the_same_job(
    system: Standalone, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKYARD_URL", system.url)  # the environment works as --url does
    first = _json(run_cli("submit", "sleep", "--json"))
    options = [
        "--queue",
        "reports",
        "--priority",
        "5",
        "--delay",
        "3600",
        "--max-attempts",
        "2",
        "--idempotency-key",
        "nightly-1",
        "--depends-on",
        first["id"],
    ]
    job = _json(run_cli("submit", "sleep", "--args", '{"seconds": 1}', *options, "--json"))
    assert job["queue"] == "reports" and job["priority"] == 5 and job["max_attempts"] == 2
    assert job["idempotency_key"] == "nightly-1" and job["depends_on"] == [first["id"]]
    assert job["state"] == "scheduled" and job["args"] == {"seconds": 1}
    again = _json(run_cli("submit", "sleep", "--args", '{"seconds": 1}', *options, "--json"))
    assert again["id"] == job["id"]

    at = _json(run_cli("submit", "sleep", "--run-at", "2099-01-01T00:00:00+02:00", "--json"))
    assert at["run_at"] == "2098-12-31T22:00:00.000Z" and at["state"] == "scheduled"


def test_a_refused_submission_prints_the_problem_and_exits_1(
    system: Standalone, run_cli: RunCli
) -> None:
    ran = run_cli("submit", "sleep", "--args", '{"seconds": -1}', "--url", system.url)
    assert ran.code == 1 and ran.out == ""
    assert ran.err_lines == [
        "taskyard: 422 Validation failed: args.seconds: must be 0, or a number from 0.001 to 3600"
    ], "a lone field error is the detail already: printed once"

    missing = "0190a000-0000-7000-8000-000000000000"
    ran = run_cli("submit", "sleep", "--depends-on", missing, "--url", system.url)
    assert ran.code == 1
    assert ran.err_lines == [f"taskyard: 422 Validation failed: depends_on[0]: no job {missing}"]

    ran = run_cli("submit", "sleep", "--idempotency-key", "k", "--url", system.url)
    assert ran.code == 0
    ran = run_cli(
        "submit", "sleep", "--idempotency-key", "k", "--priority", "9", "--url", system.url
    )
    assert ran.code == 1 and ran.err_lines[0].startswith("taskyard: 409 ")


def test_bad_arguments_are_usage_errors_with_exit_2_and_one_line(
    system: Standalone, run_cli: RunCli
) -> None:
    ran = run_cli("submit", "sleep", "--args", "{seconds: 1}", "--url", system.url)
    assert ran.code == 2 and len(ran.err_lines) == 1
    assert ran.err_lines[0].startswith("taskyard: --args: not valid JSON")
    ran = run_cli("submit", "sleep", "--url", "ftp://example.com")
    assert ran.code == 2
    assert ran.err_lines == [
        "taskyard: --url: 'ftp://example.com' is not an http:// or https:// URL"
    ]
    ran = run_cli("submit", "sleep", "--args", '{"seconds": NaN}', "--url", system.url)
    assert ran.code == 2 and ran.err_lines[0].startswith("taskyard: --args: not valid JSON")
    assert run_cli("submit", "sleep", "--priority", "high").code == 2  # argparse's own
    for delay in ("nan", "inf"):
        ran = run_cli("submit", "sleep", "--delay", delay, "--url", system.url)
        assert ran.code == 2 and "is not a finite number" in ran.err
    assert run_cli("jobs", "list", "--state", "lost").code == 2
    assert run_cli("jobs").code == 2


def test_jobs_cancel_retry_and_the_refusals_of_either(system: Standalone, run_cli: RunCli) -> None:
    url = ["--url", system.url]
    delayed = _json(run_cli("submit", "sleep", "--delay", "3600", "--json", *url))
    cancelled = run_cli("jobs", "cancel", delayed["id"], *url)
    assert cancelled.code == 0 and _field(cancelled.out, "state") == "cancelled"
    retried = run_cli("jobs", "retry", delayed["id"], *url)
    assert retried.code == 0 and _field(retried.out, "state") == "queued"  # runs now

    done = _json(run_cli("submit", "sleep", "--json", *url))
    eventually(
        lambda: _json(run_cli("jobs", "get", done["id"], "--json", *url))["state"] == "succeeded",
        timeout_s=WAIT_S,
        what="the job succeeded",
    )
    refused = run_cli("jobs", "cancel", done["id"], *url)
    assert refused.code == 1 and refused.err_lines[0].startswith("taskyard: 409 ")
    refused = run_cli("jobs", "retry", done["id"], *url)
    assert refused.code == 1 and refused.err_lines[0].startswith("taskyard: 409 ")
    unknown = run_cli("jobs", "get", "no-such-job", *url)
    assert unknown.code == 1 and unknown.err_lines[0].startswith("taskyard: 404 ")


def test_jobs_list_filters_pages_and_prints_a_table(system: Standalone, run_cli: RunCli) -> None:
    url = ["--url", system.url]
    ids = [
        _json(run_cli("submit", "sleep", "--queue", "lane", "--delay", "600", "--json", *url))["id"]
        for _ in range(3)
    ]
    _json(run_cli("submit", "sleep", "--queue", "other", "--delay", "600", "--json", *url))
    listed = run_cli(
        "jobs", "list", "--queue", "lane", "--state", "scheduled", "--limit", "2", *url
    )
    assert listed.code == 0
    lines = listed.out.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATE",
        "TASK",
        "QUEUE",
        "PRI",
        "ATTEMPT",
        "RUN_AT",
        "UPDATED",
    ]
    assert [line.split()[0] for line in lines[1:3]] == ids[::-1][:2]  # newest first
    assert lines[3].startswith("more: taskyard jobs list --cursor ")
    cursor = lines[3].split("--cursor ")[1].split()[0]
    rest = _json(run_cli("jobs", "list", "--queue", "lane", "--cursor", cursor, "--json", *url))
    assert [j["id"] for j in rest["jobs"]] == [ids[0]] and rest["next_cursor"] is None
    assert run_cli("jobs", "list", "--queue", "none-here", *url).out == "no jobs\n"


def test_queues_and_workers(system: Standalone, run_cli: RunCli) -> None:
    url = ["--url", system.url]
    assert run_cli("queues", *url).out == "no queues yet\n"
    _json(run_cli("submit", "sleep", "--queue", "lane", "--delay", "600", "--json", *url))
    table = run_cli("queues", *url).out.splitlines()
    assert table[0].split()[:4] == ["QUEUE", "PAUSED", "SCHEDULED", "QUEUED"]
    assert table[1].split()[:4] == ["lane", "no", "1", "0"]
    assert _json(run_cli("queues", "--json", *url))["queues"][0]["counts"]["scheduled"] == 1

    workers = run_cli("workers", *url).out.splitlines()
    assert workers[0].split()[0] == "WORKER"
    assert workers[1].split()[:3] == [system.worker_id, "*", "2"]
    assert [w["id"] for w in _json(run_cli("workers", "--json", *url))["workers"]] == [
        system.worker_id
    ]
    schedulers = run_cli("workers", "--schedulers", *url).out.splitlines()
    assert schedulers[1].split()[:2] == [system.worker_id, "yes"]


def test_a_token_is_sent_from_the_flag_or_the_environment(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    guarded = start_system(api_tokens=("s3cret",))
    try:
        url = ["--url", guarded.url]
        refused = run_cli("queues", *url)
        assert refused.code == 1 and refused.err_lines[0].startswith("taskyard: 401 ")
        assert run_cli("queues", "--token", "s3cret", *url).code == 0
        monkeypatch.setenv("TASKYARD_TOKEN", "s3cret")
        assert run_cli("queues", *url).code == 0
        assert run_cli("queues", "--token", "wrong", *url).code == 1  # the flag wins
    finally:
        guarded.stop(grace_s=0)


CLIENT_COMMANDS = [
    ["submit", "sleep"],
    ["jobs", "list"],
    ["jobs", "get", "0190a000-0000-7000-8000-000000000000"],
    ["jobs", "cancel", "0190a000-0000-7000-8000-000000000000"],
    ["jobs", "retry", "0190a000-0000-7000-8000-000000000000"],
    ["queues"],
    ["workers"],
    ["workers", "--schedulers"],
    ["queues", "pause", "reports"],
    ["queues", "resume", "reports"],
    ["queues", "show", "reports"],
    ["queues", "set", "reports", "--concurrency-limit", "2"],
    ["jobs", "retry", "--state", "dead", "--yes"],
    ["jobs", "cancel", "--queue", "reports", "--yes"],
]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("argv", CLIENT_COMMANDS, ids=" ".join)
def test_an_api_that_does_not_answer_is_one_line_naming_url_and_taskyard_url_and_exit_1(
    argv: list[str], run_cli: RunCli
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    ran = run_cli(*argv, "--url", url)
    assert (ran.code, ran.out, len(ran.err_lines)) == (1, "", 1), ran.err
    line = ran.err_lines[0]
    assert line.startswith(f"taskyard: cannot reach the API at {url} (from --url): ")
    assert "--url" in line.split("(from --url)")[1] and "TASKYARD_URL" in line


def test_the_unreachable_line_says_where_the_url_came_from(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKYARD_URL", f"http://127.0.0.1:{_closed_port()}")
    ran = run_cli("queues")
    assert ran.code == 1 and len(ran.err_lines) == 1
    assert " (from TASKYARD_URL): Connection refused; " in ran.err_lines[0]
