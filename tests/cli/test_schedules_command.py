"""`taskyard schedules` lists, shows, pauses, resumes and deletes schedules through the
API; a schedule declared with `@app.periodic` is in the store once the worker started."""

from __future__ import annotations

import json

import taskyard
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.standalone import Standalone
from tests.cli.conftest import RunCli
from tests.eventually import eventually

app = taskyard.App("memory://")


@app.periodic(every=1, args={"seconds": 0}, overlap="allow")
@app.task(name="beat")
def beat(seconds: float) -> None: ...


def test_schedules_list_show_pause_resume_and_delete(run_cli: RunCli) -> None:
    settings = Settings(database_url="memory://", port=0, concurrency=1, poll_interval_s=0.1)
    system = Standalone(settings, app=app).start()
    url = ["--url", system.url]
    try:
        eventually(
            lambda: "enqueued" in run_cli("schedules", "show", "beat", *url).out,
            timeout_s=20,
            what="the worker synced the schedule and a fire was enqueued",
        )
        table = run_cli("schedules", *url).out.splitlines()
        assert table[0].split()[:4] == ["SCHEDULE", "TASK", "WHEN", "NEXT"]
        assert table[1].split()[:4] == ["beat", "beat", "every", "1s"]
        listed = json.loads(run_cli("schedules", "--json", *url).out)["schedules"]
        assert [s["name"] for s in listed] == ["beat"] and listed[0]["every_seconds"] == 1
        shown = json.loads(run_cli("schedules", "show", "beat", "--json", *url).out)
        fire = shown["recent_fires"][0]
        job = json.loads(run_cli("jobs", "get", fire["job_id"], "--json", *url).out)
        assert job["schedule"] == {"name": "beat", "fire_at": fire["fire_at"]}

        paused = run_cli("schedules", "pause", "beat", *url)
        assert paused.code == 0 and "yes" in paused.out
        resumed = json.loads(run_cli("schedules", "resume", "beat", "--json", *url).out)
        assert resumed["paused"] is False
        assert run_cli("schedules", "delete", "beat", *url).code == 0
        missing = run_cli("schedules", "show", "beat", *url)
        assert missing.code == 1 and "no schedule 'beat'" in missing.err
        assert run_cli("schedules", "pause", *url).code == 2
    finally:
        system.stop(grace_s=0)
