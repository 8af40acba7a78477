"""The FastAPI lifespan example (docs/examples/fastapi_lifespan.py) runs as written, through
Starlette's TestClient: a sign-up and its job commit together (a refused one leaves
neither), the workers are woken after the commit, and a job can be waited for."""

from __future__ import annotations

import importlib.util
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from fastapi.testclient import TestClient

from taskyard.entrypoints import config
from taskyard.entrypoints.bootstrap import bootstrap

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "fastapi_lifespan.py"
DEADLINE_S = 20


@pytest.fixture
def example(
    migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[ModuleType]:
    for setting in config.SETTINGS.values():
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASKYARD_DATABASE_URL", migrated_postgres_url)
    with psycopg.connect(migrated_postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (id serial PRIMARY KEY, name text UNIQUE)")
    name = f"fastapi_example_{secrets.token_hex(3)}"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)


def test_the_fastapi_example_signs_up_enqueues_in_one_transaction_and_waits(
    example: ModuleType, migrated_postgres_url: str
) -> None:
    tasks = example.tasks
    user = f"ada-{secrets.token_hex(3)}"
    worker_side = bootstrap(config.Settings(database_url=migrated_postgres_url))
    worker = worker_side.worker_runtime(
        worker_side.task_registry(tasks.tasks), worker_id=f"fastapi-{secrets.token_hex(3)}"
    )
    with TestClient(example.api) as client:
        signed = client.post("/users", params={"name": user})
        assert signed.status_code == 201, signed.text
        job_id = signed.json()["job_id"]
        assert tasks.coordinator.wait(["emails"], timeout_s=0), "woken after the commit"
        assert client.get(f"/jobs/{job_id}").json()["state"] == "queued"

        again = client.post("/users", params={"name": user})
        assert again.status_code == 409
        jobs = tasks.list_jobs(tasks=[example.send_welcome.name]).jobs
        assert [str(j.id) for j in jobs] == [job_id], "the refused sign-up left no job"

        worker.start()
        try:
            done = client.get(f"/jobs/{job_id}", params={"wait": DEADLINE_S}).json()
        finally:
            worker.stop(grace_s=5.0)
            worker_side.close()
        assert done["state"] == "succeeded"
        assert done["result"] == {"welcomed": signed.json()["user_id"]}
        assert client.get("/jobs/nope").status_code == 404
