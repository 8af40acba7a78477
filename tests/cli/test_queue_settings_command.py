"""`taskyard queues set|show NAME` and `taskyard submit --concurrency-key`, against a real
API on a loopback port: `set` changes only the settings it names, `none` removes one,
`--reset` starts from none; a bad value is a usage error (2) before anything is sent, a
value the API refuses is exit 1 naming the field; nothing is stored either way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskyard.domain.flow import QueueLimits, RateLimit
from taskyard.domain.model import JobState
from taskyard.entrypoints.standalone import Standalone
from tests.cli.conftest import Ran, RunCli


def _json(ran: Ran) -> Any:
    assert ran.code == 0, ran.err
    return json.loads(ran.out)


def _view(out: str) -> dict[str, str]:
    rows = {}
    for line in out.splitlines():
        name, _, value = line.rpartition("  ")
        rows[name.strip()] = value.strip()
    return rows


def test_set_changes_only_what_it_names_and_show_prints_it(
    system: Standalone, run_cli: RunCli
) -> None:
    url = ["--url", system.url]
    shown = run_cli("queues", "show", "reports", *url)
    assert shown.code == 0, shown.err
    assert _view(shown.out) == {
        "queue": "reports",
        "concurrency_limit": "-",
        "key_concurrency_limit": "-",
        "rate_limit": "-",
        "key_rate_limit": "-",
        "weight": "1",
        "retain succeeded": "default",
        "retain dead": "default",
        "retain cancelled": "default",
    }
    ran = run_cli(
        "queues",
        "set",
        "reports",
        "--concurrency-limit",
        "2",
        "--rate-limit",
        "100/60",
        "--key-rate-limit",
        "5/0.5",
        "--retain",
        "succeeded=3600",
        "--retain",
        "dead=0",
        *url,
    )
    assert ran.code == 0, ran.err
    view = _view(ran.out)
    assert view["concurrency_limit"] == "2" and view["rate_limit"] == "100/60s"
    assert view["key_rate_limit"] == "5/0.5s"
    assert (view["retain succeeded"], view["retain dead"]) == ("3600s", "forever")
    store = system.store
    assert store.queue_limits()["reports"] == QueueLimits(
        concurrency_limit=2,
        rate_limit=RateLimit(count=100, period_s=60),
        key_rate_limit=RateLimit(count=5, period_s=0.5),
    )

    # Only what is named changes; `none` removes a limit or a state's retention.
    changed = _json(
        run_cli(
            "queues",
            "set",
            "reports",
            "--weight",
            "3",
            "--rate-limit",
            "none",
            "--retain",
            "dead=none",
            "--json",
            *url,
        )
    )
    assert changed == {
        "name": "reports",
        "concurrency_limit": 2,
        "key_concurrency_limit": None,
        "rate_limit": None,
        "key_rate_limit": {"count": 5, "period_seconds": 0.5},
        "weight": 3,
        "retention_seconds": {"succeeded": 3600},
    }
    assert _json(run_cli("queues", "show", "reports", "--json", *url)) == changed
    assert store.retention_overrides() == {"reports": {JobState.SUCCEEDED: 3600}}

    reset = _json(run_cli("queues", "set", "reports", "--reset", "--weight", "2", "--json", *url))
    assert reset["weight"] == 2 and reset["concurrency_limit"] is None
    assert reset["retention_seconds"] is None
    assert store.queue_limits() == {"reports": QueueLimits(weight=2)}


def test_the_queues_table_shows_each_queue_s_limit_and_rate(
    system: Standalone, run_cli: RunCli
) -> None:
    url = ["--url", system.url]
    run_cli("queues", "set", "lane", "--concurrency-limit", "3", "--rate-limit", "10/60", *url)
    run_cli("submit", "sleep", "--queue", "lane", "--delay", "600", *url)
    header, row = run_cli("queues", *url).out.splitlines()
    assert header.split()[-3:] == ["LIMIT", "RATE", "OLDEST_QUEUED"]
    assert row.split()[0] == "lane" and row.split()[-3:-1] == ["3", "0/10/60s"]
    listed = _json(run_cli("queues", "--json", *url))["queues"][0]
    assert listed["limits"]["concurrency_limit"] == 3
    assert listed["usage"] == {"running": 0, "started_in_window": 0}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--concurrency-limit", "two"], "--concurrency-limit"),
        (["--concurrency-limit", "\u0661"], "--concurrency-limit"),
        (["--concurrency-limit", "1_000"], "--concurrency-limit"),
        (["--rate-limit", "100"], "--rate-limit"),
        (["--rate-limit", "100/nan"], "--rate-limit"),
        (["--rate-limit", "100/inf"], "--rate-limit"),
        (["--rate-limit", "1.5/60"], "--rate-limit"),
        (["--rate-limit", "/60"], "--rate-limit"),
        (["--key-rate-limit", "1/2/3"], "--key-rate-limit"),
        (["--weight", "none"], "--weight"),
        (["--retain", "running=5"], "--retain"),
        (["--retain", "dead"], "--retain"),
        (["--retain", "dead=-x"], "--retain"),
    ],
)
def test_a_value_that_cannot_be_read_is_a_usage_error(
    system: Standalone, run_cli: RunCli, argv: list[str], named: str
) -> None:
    ran = run_cli("queues", "set", "reports", *argv, "--url", system.url)
    assert ran.code == 2 and named in ran.err, ran.err
    assert system.store.queue_limits() == {}


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--concurrency-limit", "0"], "concurrency_limit"),
        (["--key-concurrency-limit", "-1"], "key_concurrency_limit"),
        (["--rate-limit", "0/60"], "rate_limit.count"),
        (["--rate-limit", "1/0"], "rate_limit.period_seconds"),
        (["--key-rate-limit", "1/86401"], "key_rate_limit.period_seconds"),
        (["--weight", "1001"], "weight"),
        (["--retain", "dead=-1"], "retention_seconds.dead"),
    ],
)
def test_a_value_the_api_refuses_is_exit_1_naming_the_field(
    system: Standalone, run_cli: RunCli, argv: list[str], field: str
) -> None:
    ran = run_cli("queues", "set", "reports", *argv, "--url", system.url)
    assert ran.code == 1 and "422" in ran.err and field in ran.err, ran.err
    assert system.store.queue_limits() == {}
    assert system.store.retention_overrides() == {}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["queues", "set", "reports"], "set"),
        (["queues", "set"], "NAME"),
        (["queues", "show"], "NAME"),
        (["queues", "show", "a\x00b"], "NAME"),
        (["queues", "set", "x" * 101, "--weight", "2"], "NAME"),
        (["queues", "--weight", "2"], "--weight"),
        (["queues", "show", "reports", "--concurrency-limit", "2"], "--concurrency-limit"),
        (["queues", "pause", "reports", "--reset"], "--reset"),
    ],
)
def test_usage_errors_are_exit_2_naming_what_is_wrong(
    system: Standalone, run_cli: RunCli, argv: list[str], named: str
) -> None:
    ran = run_cli(*argv, "--url", system.url)
    assert ran.code == 2 and named in ran.err, ran.err
    assert system.store.queue_limits() == {}
    assert not [q for q in system.store.queues() if q.paused]


def test_submit_sends_the_concurrency_key(system: Standalone, run_cli: RunCli) -> None:
    job = _json(
        run_cli("submit", "sleep", "--concurrency-key", "tenant-7", "--json", "--url", system.url)
    )
    assert job["concurrency_key"] == "tenant-7"
    later = _json(run_cli("submit", "sleep", "--delay", "600", "--json", "--url", system.url))
    shown = _view(run_cli("jobs", "get", later["id"], "--url", system.url).out.split("\n\n")[0])
    assert shown["waiting_reason"] == "run_at"
    refused = run_cli("submit", "sleep", "--concurrency-key", "", "--url", system.url)
    assert refused.code == 1 and "concurrency_key" in refused.err
