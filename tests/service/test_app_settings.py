"""A Python `App` takes the settings an enqueue depends on as the processes do: its own
arguments, else `TASKYARD_*`, else `taskyard.toml`; a bad one is named as it was written."""

from __future__ import annotations

from pathlib import Path

import pytest

import taskyard
from taskyard.domain.errors import ValidationError
from taskyard.domain.model import JobState
from taskyard.entrypoints import config
from taskyard.entrypoints.config import ConfigError
from taskyard.testing import TestRunner


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of the test's own, and no `TASKYARD_*` variable from outside."""
    for setting in config.SETTINGS.values():
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_arguments_win_over_the_environment_which_wins_over_taskyard_toml(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (here / "taskyard.toml").write_text(
        'database_url = "sqlite:///from-the-file.db"\n'
        'redis_url = "redis://127.0.0.1:1/0"\n'
        'redis_key_prefix = "from-the-file:"\n'
    )
    monkeypatch.setenv("TASKYARD_REDIS_KEY_PREFIX", "from-the-env:")
    app = taskyard.App()
    assert (app.url, app.coordinator_url) == ("sqlite:///from-the-file.db", "redis://127.0.0.1:1/0")
    assert app.settings.redis_key_prefix == "from-the-env:"
    assert app.settings.source("database_url") == f"database_url in {here / 'taskyard.toml'}"
    assert app.settings.source("redis_key_prefix") == "TASKYARD_REDIS_KEY_PREFIX"
    mine = taskyard.App("memory://", redis_key_prefix="mine:")
    assert (mine.url, mine.settings.redis_key_prefix) == ("memory://", "mine:")
    assert mine.coordinator_url == "redis://127.0.0.1:1/0"
    assert not (here / "from-the-file.db").exists(), "nothing is opened before it is used"


def test_without_settings_an_app_keeps_its_jobs_and_doorbells_in_this_process(here: Path) -> None:
    app = taskyard.App()
    assert (app.url, app.coordinator_url) == ("memory://", "memory://")
    job = app.enqueue("sleep")
    assert app.get(job).state is JobState.QUEUED
    assert app.coordinator is not None and app.coordinator.wait(["default"], timeout_s=0)


def test_the_builtin_tasks_policy_comes_from_the_same_settings(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="TASKYARD_HTTP_ALLOWED_HOSTS"):
        taskyard.App().enqueue("http", args={"url": "http://hooks.test/ping"})
    monkeypatch.setenv("TASKYARD_HTTP_ALLOWED_HOSTS", "hooks.test")
    job = taskyard.App().enqueue("http", args={"url": "http://hooks.test/ping"})
    assert job.state is JobState.QUEUED


BAD_PREFIXES = [
    pytest.param("argument", "App(redis_key_prefix=...)", id="argument"),
    pytest.param("environment", "TASKYARD_REDIS_KEY_PREFIX", id="environment"),
    pytest.param("file", "redis_key_prefix in {here}/taskyard.toml", id="file"),
]


@pytest.mark.parametrize(("where", "named"), BAD_PREFIXES)
def test_a_bad_key_prefix_names_the_setting_where_it_was_written(
    here: Path, monkeypatch: pytest.MonkeyPatch, where: str, named: str
) -> None:
    given: dict[str, str] = {}
    if where == "argument":
        given["redis_key_prefix"] = ""
    elif where == "environment":
        monkeypatch.setenv("TASKYARD_REDIS_KEY_PREFIX", "no spaces allowed")
    else:
        (here / "taskyard.toml").write_text('redis_key_prefix = ""\n')
    with pytest.raises(ConfigError) as caught:
        taskyard.App("memory://", coordinator_url="redis://127.0.0.1:1/0", **given)
    assert caught.value.setting == named.format(here=here)
    assert "use 1 to 64" in caught.value.problem


def test_a_bad_url_names_the_setting_where_it_was_written(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as caught:
        taskyard.App("mysql://db/jobs")
    assert caught.value.setting == "App(url=...)"
    monkeypatch.setenv("TASKYARD_REDIS_URL", "amqp://127.0.0.1")
    with pytest.raises(ConfigError) as caught:
        taskyard.App()
    assert caught.value.setting == "TASKYARD_REDIS_URL"
    assert "unsupported scheme 'amqp'" in caught.value.problem


def test_a_test_runner_swaps_out_whatever_store_the_settings_name(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens there: a runner that reached for it would fail.
    monkeypatch.setenv("TASKYARD_DATABASE_URL", "postgresql://127.0.0.1:1/nowhere")
    monkeypatch.setenv("TASKYARD_REDIS_URL", "redis://127.0.0.1:1/0")
    app = taskyard.App()

    @app.task(name="double")
    def double(n: int) -> int:
        return 2 * n

    with TestRunner(app) as runner:
        job = double.enqueue(n=21)
        assert runner.run_until_idle() == 1
        assert runner.get(job).result == 42
        assert [j.id for j in runner.jobs("succeeded")] == [job.id]
    assert app.url == "postgresql://127.0.0.1:1/nowhere"
