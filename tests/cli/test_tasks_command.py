"""`taskyard tasks` shows the catalog a worker published at start; `taskyard submit` gets a
task's defaults from it, and says on standard error when no worker published the task."""

from __future__ import annotations

import json

import taskyard
from taskyard.domain.catalog import UNKNOWN_TASK_WARNING
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.standalone import Standalone
from tests.cli.conftest import RunCli
from tests.eventually import eventually

app = taskyard.App("memory://")


@app.task(name="emails.send", queue="emails", max_attempts=5, timeout=1)
def send(user_id: int, lang: str = "en") -> None: ...


def test_tasks_lists_what_the_worker_published_and_submit_takes_its_defaults(
    run_cli: RunCli,
) -> None:
    settings = Settings(database_url="memory://", port=0, concurrency=1, poll_interval_s=0.1)
    system = Standalone(settings, app=app).start()
    url = ["--url", system.url]
    try:
        eventually(
            lambda: "emails.send" in run_cli("tasks", *url).out,
            timeout_s=20,
            what="the worker published its tasks",
        )
        table = run_cli("tasks", *url).out.splitlines()
        assert table[0].split() == [
            "TASK",
            "QUEUE",
            "PRIORITY",
            "ATTEMPTS",
            "TIMEOUT",
            "ARGS",
            "PUBLISHED",
            "BY",
        ]
        assert table[1].split()[:7] == [
            "emails.send",
            "emails",
            "0",
            "5",
            "1s",
            "user_id,",
            "lang=",
        ]
        assert table[1].split()[-1] == system.worker_id
        listed = json.loads(run_cli("tasks", "--json", *url).out)["tasks"]
        assert [t["name"] for t in listed] == ["emails.send"]

        sent = run_cli("submit", "emails.send", "--args", '{"user_id": 1}', "--json", *url)
        assert sent.code == 0 and "warning" not in sent.err
        job = json.loads(sent.out)
        assert (job["queue"], job["max_attempts"], job["timeout_seconds"]) == ("emails", 5, 1)

        refused = run_cli("submit", "emails.send", "--args", '{"user": 1}', *url)
        assert refused.code == 1 and "args.user: unknown argument" in refused.err

        unknown = run_cli("submit", "emails.sned", *url)
        assert unknown.code == 0
        assert f"taskyard: warning: task: {UNKNOWN_TASK_WARNING}" in unknown.err_lines
    finally:
        system.stop(grace_s=0)
