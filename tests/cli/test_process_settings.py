"""The long-running commands' settings: a bad value stops `worker`, `scheduler` or
`standalone` before anything starts, with exit code 2 and one line naming the setting;
`--app` loading; the tasks a worker offers."""

from __future__ import annotations

import argparse
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.domain.builtins import BuiltinPolicy
from taskyard.domain.context import PermanentFailure
from taskyard.domain.retention import Retention
from taskyard.domain.worker import PROCESS_CONCURRENCY_DEFAULT, THREAD_CONCURRENCY_DEFAULT
from taskyard.entrypoints import config
from taskyard.entrypoints.bootstrap import bootstrap
from taskyard.entrypoints.config import ConfigError
from taskyard.entrypoints.library import App
from taskyard.entrypoints.process import load_app, with_app_settings
from tests.cli.conftest import RunCli

_OPEN_REFUSAL = (
    "taskyard: TASKYARD_API_TOKENS: not set, and {shown} is not a loopback address: anyone "
    "who can reach it could read, submit and cancel jobs; set TASKYARD_API_TOKENS, or "
    "TASKYARD_API_OPEN=1 (--open) to serve an open API on purpose"
)

BAD_SETTINGS = [
    (
        ["worker"],
        {},
        "taskyard: TASKYARD_DATABASE_URL: not set (use --db or TASKYARD_DATABASE_URL: "
        "postgresql://, sqlite:///, memory://)",
    ),
    (
        ["scheduler", "--db", "memory://"],
        {},
        "taskyard: --db: memory:// keeps jobs inside one process, so a scheduler cannot share "
        "it: use postgresql:// or sqlite:/// (or `taskyard standalone`, which runs it all in one)",
    ),
    (
        ["worker", "--db", "bogus://x"],
        {},
        "taskyard: --db: unsupported scheme 'bogus' (use postgresql://, sqlite:///, memory://)",
    ),
    (
        ["worker", "--db", "sqlite:///j.db", "--concurrency", "0"],
        {},
        "taskyard: --concurrency: 0 is out of range (1 to 1024)",
    ),
    (
        ["worker", "--db", "sqlite:///j.db"],
        {"TASKYARD_QUEUES": "emails, big reports"},
        "taskyard: TASKYARD_QUEUES: 'big reports' is not a queue name "
        "(1 to 100 of letters, digits, . _ -)",
    ),
    (
        ["worker", "--db", "sqlite:///j.db", "--app", "jobs"],
        {},
        "taskyard: --app: 'jobs' is not MODULE:ATTRIBUTE (e.g. myproject.jobs:app)",
    ),
    (
        ["worker", "--db", "sqlite:///j.db", "--app", "no_such_module_here:app"],
        {},
        "taskyard: --app: cannot import 'no_such_module_here': "
        "No module named 'no_such_module_here'",
    ),
    (
        ["worker", "--db", "sqlite:///j.db", "--app", "os.path:join"],
        {},
        "taskyard: --app: 'os.path:join' is a function, not a taskyard.App",
    ),
    (
        ["worker", "--db", "sqlite:///j.db", "--lease-ttl", "0"],
        {},
        "taskyard: --lease-ttl: '0' is out of range (a number >= 1 and <= 86400)",
    ),
    (
        ["bench", "--store", "sqlite:///j.db", "--lease-ttl", "0.0001"],
        {},
        "taskyard: --lease-ttl: at least 1, at most 600",
    ),
    (
        ["scheduler", "--db", "sqlite:///j.db"],
        {"TASKYARD_LEADER_TTL_SECONDS": "soon"},
        "taskyard: TASKYARD_LEADER_TTL_SECONDS: 'soon' is not a number",
    ),
    (
        ["standalone", "--port", "70000"],
        {},
        "taskyard: --port: 70000 is out of range (0 to 65535)",
    ),
    (
        ["standalone"],
        {"TASKYARD_GRACE_PERIOD_SECONDS": "-1"},
        "taskyard: TASKYARD_GRACE_PERIOD_SECONDS: '-1' is out of range (a number >= 0 and "
        "<= 86400)",
    ),
    (
        ["standalone", "--redis", "http://localhost"],
        {},
        "taskyard: --redis: unsupported scheme 'http' (use redis://, rediss://, unix://, or "
        "memory:// for one process)",
    ),
    # No open API by accident (tests/cli/test_exposure.py): refused before any store opens.
    (
        ["standalone", "--host", "0.0.0.0", "--port", "0", "--db", "sqlite:///j.db"],
        {},
        _OPEN_REFUSAL.format(shown="0.0.0.0 (--host)"),
    ),
    (
        ["standalone", "--port", "0", "--no-open", "--db", "sqlite:///j.db"],
        {"TASKYARD_HOST": "::"},
        _OPEN_REFUSAL.format(shown=":: (TASKYARD_HOST)"),
    ),
    (
        ["api", "--bind", "0.0.0.0:0", "--db", "sqlite:///j.db"],
        {},
        _OPEN_REFUSAL.format(shown="0.0.0.0:0 (--bind)"),
    ),
    (
        ["api", "--db", "sqlite:///j.db"],
        {"TASKYARD_BIND": "[::]:0", "TASKYARD_API_OPEN": "0"},
        _OPEN_REFUSAL.format(shown="[::]:0 (TASKYARD_BIND)"),
    ),
]


@pytest.mark.parametrize(("argv", "environ", "line"), BAD_SETTINGS)
def test_a_bad_setting_stops_the_process_with_one_line_and_exit_2(
    argv: list[str],
    environ: dict[str, str],
    line: str,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    ran = run_cli(*argv)
    assert (ran.code, ran.err_lines, ran.out) == (2, [line], "")
    assert not (tmp_path / "j.db").exists()  # nothing was started or created


def test_standalone_on_a_port_in_use_is_exit_2(run_cli: RunCli, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = run_cli("standalone", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", str(port))
    assert ran.code == 2 and len(ran.err_lines) == 1
    assert ran.err_lines[0] == (
        f"taskyard: --port: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not (tmp_path / "x.db").exists(), "the port is tried before the store is created"


def test_standalone_blames_the_host_when_the_host_cannot_be_listened_on(
    run_cli: RunCli, tmp_path: Path
) -> None:
    ran = run_cli(
        "standalone", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--host", "nosuch.invalid",
        "--port", "0",
    )  # fmt: skip
    assert ran.code == 2 and len(ran.err_lines) == 1
    assert ran.err_lines[0].startswith("taskyard: --host: cannot listen on nosuch.invalid:0: ")
    assert not (tmp_path / "x.db").exists()


def test_standalone_on_a_sqlite_file_that_cannot_be_opened_names_the_setting(
    run_cli: RunCli, tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "x.db"
    ran = run_cli("standalone", "--db", f"sqlite:///{missing}", "--port", "0")
    assert ran.code == 2 and len(ran.err_lines) == 1
    assert ran.err_lines[0].startswith("taskyard: --db: cannot open the store: ")


def test_settings_come_from_taskyard_toml_too(tmp_path: Path) -> None:
    (tmp_path / "taskyard.toml").write_text(
        'queues = ["emails", "reports"]\nconcurrency = 12\ngrace_period_seconds = 5\n'
        'url = "http://10.0.0.5:8000/"\n'
    )
    settings = config.resolve(None, [*config.WORKER_SETTINGS, *config.CLIENT_SETTINGS])
    assert settings.queues == frozenset({"emails", "reports"})
    assert settings.concurrency == 12 and settings.grace_period_s == 5.0
    assert settings.url == "http://10.0.0.5:8000"


@pytest.mark.parametrize(
    ("environ", "pool", "concurrency"),
    [
        ({}, "thread", THREAD_CONCURRENCY_DEFAULT),
        ({"TASKYARD_POOL": "process"}, "process", PROCESS_CONCURRENCY_DEFAULT),
        ({"TASKYARD_POOL": "process", "TASKYARD_CONCURRENCY": "7"}, "process", 7),
        ({"TASKYARD_POOL": "thread", "TASKYARD_CONCURRENCY": "2"}, "thread", 2),
    ],
)
def test_the_default_concurrency_follows_the_pool(
    tmp_path: Path, environ: dict[str, str], pool: str, concurrency: int
) -> None:
    """16 threads, but 4 child processes: a process slot is a whole interpreter. A value
    that is set wins whatever the pool."""
    settings = config.resolve(None, config.WORKER_SETTINGS, environ=environ, cwd=tmp_path)
    assert (settings.pool, settings.concurrency) == (pool, concurrency)
    assert THREAD_CONCURRENCY_DEFAULT > PROCESS_CONCURRENCY_DEFAULT


def test_the_pool_and_concurrency_from_taskyard_toml_follow_the_same_rule(tmp_path: Path) -> None:
    (tmp_path / "taskyard.toml").write_text('pool = "process"\n')
    alone = config.resolve(None, config.WORKER_SETTINGS, environ={}, cwd=tmp_path)
    assert (alone.pool, alone.concurrency) == ("process", PROCESS_CONCURRENCY_DEFAULT)
    (tmp_path / "taskyard.toml").write_text('pool = "process"\nconcurrency = 12\n')
    both = config.resolve(None, config.WORKER_SETTINGS, environ={}, cwd=tmp_path)
    assert (both.pool, both.concurrency) == ("process", 12)


APP_MODULE = """
    import taskyard

    app = taskyard.App(
        "sqlite:///from-the-app.db",
        coordinator_url="redis://127.0.0.1:1/0",
        redis_key_prefix="app-prefix:",
    )


    @app.task(name="greet")
    def greet(name: str) -> str:
        return f"hello {name}"
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module `tasks_for_test` in the working directory; imports are undone afterwards."""
    (tmp_path / "tasks_for_test.py").write_text(textwrap.dedent(APP_MODULE))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "tasks_for_test", raising=False)
    yield "tasks_for_test"
    sys.modules.pop("tasks_for_test", None)


def test_app_loads_from_the_working_directory_and_lends_its_urls(app_module: str) -> None:
    app = load_app(f"{app_module}:app")
    assert isinstance(app, App) and "greet" in app.tasks.names()
    settings = with_app_settings(config.Settings(app=f"{app_module}:app"), app)
    assert settings.database_url == "sqlite:///from-the-app.db"
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.redis_key_prefix == "app-prefix:"
    assert settings.source("database_url") == f"App(url=...) in {app_module}:app"
    explicit = config.Settings(app="x:y", database_url="sqlite:///mine.db")
    assert with_app_settings(explicit, app).database_url == "sqlite:///mine.db"
    told = config.Settings(app="x:y", redis_key_prefix="mine:", sources={"redis_key_prefix": "-"})
    assert with_app_settings(told, app).redis_key_prefix == "mine:"
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        load_app(f"{app_module}:nope")


def test_a_worker_offers_the_apps_tasks_and_the_builtins_with_shell_only_when_enabled(
    app_module: str,
) -> None:
    app = load_app(f"{app_module}:app")
    off = bootstrap(config.Settings(database_url="memory://")).task_registry(app.tasks)
    assert off.names() == {"greet", "sleep", "http"}
    on = bootstrap(config.Settings(database_url="memory://", shell_enabled=True)).task_registry()
    assert on.names() == {"sleep", "http", "shell"}
    # The built-ins follow the worker's policy, not the one the app was made with.
    lenient = App(builtins=BuiltinPolicy(http_allowed_hosts=frozenset({"hooks.test"})))
    strict = bootstrap(config.Settings(database_url="memory://"))
    spec = strict.task_registry(lenient.tasks).get("http")
    assert spec is not None
    with pytest.raises(PermanentFailure, match="not in TASKYARD_HTTP_ALLOWED_HOSTS"):
        spec.handler(None, url="http://hooks.test/ping")


def test_retention_comes_from_flags_then_the_environment_then_taskyard_toml(
    tmp_path: Path,
) -> None:
    (tmp_path / "taskyard.toml").write_text(
        "retention_succeeded_seconds = 3600\nretention_dead_seconds = 7200\n"
        "retention_cancelled_seconds = 60\n"
    )
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, config.SCHEDULER_SETTINGS)
    args = parser.parse_args(["--retention-cancelled", "0"])
    environ = {"TASKYARD_RETENTION_DEAD_SECONDS": "86400"}
    settings = config.resolve(args, config.SCHEDULER_SETTINGS, environ=environ, cwd=tmp_path)
    assert settings.retention == Retention(succeeded_s=3600, dead_s=86_400, cancelled_s=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    defaults = config.resolve(None, config.STANDALONE_SETTINGS, environ={}, cwd=empty)
    assert defaults.retention == Retention()
    with pytest.raises(config.ConfigError, match="TASKYARD_RETENTION_SUCCEEDED_SECONDS"):
        config.resolve(
            None,
            config.SCHEDULER_SETTINGS,
            environ={"TASKYARD_RETENTION_SUCCEEDED_SECONDS": "-1"},
            cwd=tmp_path,
        )
