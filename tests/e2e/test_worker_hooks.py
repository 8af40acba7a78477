"""A real `taskyard worker --app` process calls the hooks of the app it loads: each
attempt's ending and a dead job reach a hook that writes them to a file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from taskyard.entrypoints.library import App
from tests.e2e.harness import Procs, clean_environment
from tests.eventually import eventually

WAIT_S = 20.0

HOOKED_APP = """
    import json
    import os

    import taskyard

    app = taskyard.App()
    HEARD = os.environ["HOOKS_HEARD"]


    class Note(taskyard.Hook):
        def _write(self, **line):
            with open(HEARD, "a") as out:
                out.write(json.dumps(line) + "\\n")

        def attempt_ended(self, end):
            self._write(task=end.job.task, ending=end.ending.value)

        def job_dead(self, job, error):
            self._write(task=job.task, dead=error.type)


    app.add_hook(Note())


    @app.task(name="hooked.ok")
    def ok():
        return "fine"


    @app.task(name="hooked.refused")
    def refused():
        raise taskyard.PermanentFailure("never")
"""


def test_a_worker_process_calls_the_hooks_of_its_app(procs: Procs, tmp_path: Path) -> None:
    (tmp_path / "hooked_app.py").write_text(textwrap.dedent(HOOKED_APP))
    heard = tmp_path / "heard.jsonl"
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = clean_environment(HOOKS_HEARD=str(heard))
    worker = procs.start(
        "worker", ["worker", "--db", db, "--app", "hooked_app:app"], env=env, cwd=tmp_path
    )
    assert "hooked.ok" in worker.banner()
    with App(db) as app:
        app.enqueue("hooked.ok")
        app.enqueue("hooked.refused")

        def lines() -> list[dict[str, str]]:
            text = heard.read_text() if heard.exists() else ""
            return [json.loads(line) for line in text.splitlines()]

        eventually(lambda: len(lines()) == 3, timeout_s=WAIT_S, what="three lines heard")
    assert sorted(map(json.dumps, lines())) == sorted(
        map(
            json.dumps,
            [
                {"task": "hooked.ok", "ending": "succeeded"},
                {"task": "hooked.refused", "ending": "failed"},
                {"task": "hooked.refused", "dead": "PermanentFailure"},
            ],
        )
    )
    assert worker.stop() == 0
