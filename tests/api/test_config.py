"""Settings: flags > environment > taskyard.toml > defaults; one-line errors, exit code 2."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from taskyard.entrypoints import cli, config
from taskyard.entrypoints.commands.api import gunicorn_options
from taskyard.entrypoints.config import ConfigError

USED = ("database_url", "api_workers", "api_threads", "bind", "api_tokens", "shell_enabled")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, USED)
    return parser.parse_args(argv)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TASKYARD_* from the machine, and a working directory without a taskyard.toml."""
    import os

    for name in list(os.environ):
        if name.startswith("TASKYARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    write_toml(
        tmp_path / "taskyard.toml",
        'database_url = "memory://"\napi_workers = 3\napi_threads = 5\nbind = "0.0.0.0:9"\n',
    )
    environ = {"TASKYARD_API_WORKERS": "2", "TASKYARD_API_THREADS": "6"}
    settings = config.resolve(parse(["--threads", "7"]), USED, environ=environ)
    assert settings.api_threads == 7  # flag over environment and file
    assert settings.api_workers == 2  # environment over file
    assert settings.bind == "0.0.0.0:9"  # file over default
    assert settings.database_url == "memory://"
    assert settings.shell_enabled is False  # default
    assert settings.config_file == tmp_path / "taskyard.toml"
    assert settings.sources["api_threads"] == "--threads"
    assert settings.sources["api_workers"] == "TASKYARD_API_WORKERS"
    assert settings.sources["bind"] == f"bind in {tmp_path / 'taskyard.toml'}"


def test_the_file_comes_from_the_flag_then_the_environment(tmp_path: Path) -> None:
    write_toml(tmp_path / "taskyard.toml", "api_threads = 1\n")
    write_toml(tmp_path / "a.toml", "api_threads = 2\n")
    write_toml(tmp_path / "b.toml", "api_threads = 3\n")
    environ = {"TASKYARD_CONFIG": "b.toml"}
    assert config.resolve(parse(["--config", "a.toml"]), USED, environ=environ).api_threads == 2
    assert config.resolve(parse([]), USED, environ=environ).api_threads == 3
    assert config.resolve(parse([]), USED, environ={}).api_threads == 1


def test_file_values_may_be_toml_types_or_strings(tmp_path: Path) -> None:
    write_toml(
        tmp_path / "taskyard.toml",
        'api_tokens = ["one", "two"]\nshell_enabled = true\napi_workers = "4"\n',
    )
    settings = config.resolve(parse([]), USED, environ={})
    assert settings.api_tokens == ("one", "two")
    assert settings.shell_enabled is True and settings.api_workers == 4


def test_values_are_parsed_as_documented() -> None:
    environ = {
        "TASKYARD_API_TOKENS": " a , b,,a ",
        "TASKYARD_SHELL_ENABLED": "yes",
        "TASKYARD_DATABASE_URL": "",
    }
    settings = config.resolve(parse(["--no-shell-enabled"]), USED, environ=environ)
    assert settings.api_tokens == ("a", "b")
    assert settings.shell_enabled is False  # the flag wins
    assert settings.database_url is None  # an empty variable counts as unset
    hosts = config.resolve(
        None, ["http_allowed_hosts"], environ={"TASKYARD_HTTP_ALLOWED_HOSTS": "Example.com,h:81"}
    )
    assert hosts.http_allowed_hosts == frozenset({"example.com", "h:81"})


def test_settings_a_command_does_not_use_are_not_read() -> None:
    settings = config.resolve(None, ["api_threads"], environ={"TASKYARD_DATABASE_URL": "bogus"})
    assert settings.database_url is None


def test_per_command_defaults_apply_below_everything_else() -> None:
    settings = config.resolve(
        None, ["database_url"], environ={}, defaults={"database_url": "sqlite:///taskyard.db"}
    )
    assert settings.database_url == "sqlite:///taskyard.db"


@pytest.mark.parametrize(
    ("environ", "argv", "setting", "problem"),
    [
        (
            {"TASKYARD_DATABASE_URL": "bogus://x"},
            [],
            "TASKYARD_DATABASE_URL",
            "unsupported scheme 'bogus' (use postgresql://, sqlite:///, memory://)",
        ),
        ({}, ["--db", "mysql://h/db"], "--db", "unsupported scheme 'mysql'"),
        ({"TASKYARD_API_WORKERS": "0"}, [], "TASKYARD_API_WORKERS", "out of range"),
        ({}, ["--threads", "lots"], "--threads", "'lots' is not an integer"),
        ({"TASKYARD_SHELL_ENABLED": "maybe"}, [], "TASKYARD_SHELL_ENABLED", "not a boolean"),
        ({}, ["--bind", "localhost"], "--bind", "is not HOST:PORT"),
        ({"TASKYARD_API_TOKENS": "a b"}, [], "TASKYARD_API_TOKENS", "token 1"),
    ],
)
def test_a_bad_value_names_where_it_was_written(
    environ: dict[str, str], argv: list[str], setting: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.resolve(parse(argv), USED, environ=environ)
    assert caught.value.setting == setting
    assert problem in caught.value.problem


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("TASKYARD_LEASE_TTL_SECONDS", "0", "out of range"),
        ("TASKYARD_LEASE_TTL_SECONDS", "nan", "not a number"),
        ("TASKYARD_POLL_INTERVAL_SECONDS", "soon", "not a number"),
        ("TASKYARD_REDIS_URL", "http://h", "unsupported scheme 'http'"),
        ("TASKYARD_HTTP_ALLOWED_HOSTS", "h:99999", "not a host"),
        ("TASKYARD_LOG_FORMAT", "xml", "not one of text, json"),
        ("TASKYARD_UNKNOWN_TASK", "ignore", "not one of warn, refuse"),
        ("TASKYARD_UNKNOWN_TASK", "warn\x00", "not one of warn, refuse"),
        ("TASKYARD_REDIS_KEY_PREFIX", "has space", "use 1 to 64"),
        # numbers are ASCII digits, names match as a whole (int() and float() take more)
        ("TASKYARD_CONCURRENCY", "\u0664", "not an integer"),
        ("TASKYARD_CONCURRENCY", "1_0", "not an integer"),
        ("TASKYARD_LEASE_TTL_SECONDS", "\u0661\u0660", "not a number"),
        ("TASKYARD_LEASE_TTL_SECONDS", "1_0", "not a number"),
        ("TASKYARD_POLL_INTERVAL_SECONDS", "infinity", "not a number"),
        ("TASKYARD_HTTP_ALLOWED_HOSTS", "example.com:\u0668\u0660", "not a host"),
        ("TASKYARD_BIND", "127.0.0.1:\u0668\u0660", "not HOST:PORT"),
        ("TASKYARD_QUEUES", "a\nb", "not a queue name"),
        ("TASKYARD_API_TOKENS", "tok\nen", "cannot carry"),
        # the handler pools, retention and upkeep
        ("TASKYARD_ASYNC_CONCURRENCY", "0", "out of range"),
        ("TASKYARD_ASYNC_CONCURRENCY", "99999999999999999999999", "out of range"),
        ("TASKYARD_ASYNC_CONCURRENCY", "1\x00", "not an integer"),
        ("TASKYARD_PREFETCH", "-1", "out of range"),
        ("TASKYARD_PREFETCH", "99999999999999999999999", "out of range"),
        ("TASKYARD_PREFETCH", "2.5", "not an integer"),
        ("TASKYARD_PREFETCH", "4\x00", "not an integer"),
        ("TASKYARD_PREFETCH", "true", "not an integer"),
        ("TASKYARD_POOL", "threads", "not one of thread, process"),
        ("TASKYARD_POOL", "process\x00", "not one of thread, process"),
        ("TASKYARD_RETENTION_SUCCEEDED_SECONDS", "-1", "out of range"),
        ("TASKYARD_RETENTION_DEAD_SECONDS", "1e400", "not an integer"),
        ("TASKYARD_RETENTION_CANCELLED_SECONDS", "99999999999999999999999", "out of range"),
        ("TASKYARD_VACUUM_SECONDS", "nan", "not a number"),
        ("TASKYARD_VACUUM_SECONDS", "-1", "out of range"),
        # an interval has a floor, so that its loop cannot spin (0 turns the vacuum off)
        ("TASKYARD_VACUUM_SECONDS", "0.0001", "(0 (off), or a number >= 1 and <= 3600)"),
        ("TASKYARD_VACUUM_SECONDS", "0.999", "out of range"),
        ("TASKYARD_VACUUM_SECONDS", "-0.5", "out of range"),
        ("TASKYARD_LEASE_TTL_SECONDS", "0.0001", "(a number >= 1 and <= 86400)"),
        ("TASKYARD_POLL_INTERVAL_SECONDS", "0.0001", "(a number >= 0.05 and <= 3600)"),
        ("TASKYARD_POLL_INTERVAL_SECONDS", "0", "out of range"),
        ("TASKYARD_LEADER_TTL_SECONDS", "0.0001", "(a number >= 1 and <= 3600)"),
        ("TASKYARD_LEADER_TTL_SECONDS", "0", "out of range"),
    ],
)
def test_every_setting_checks_its_value(name: str, value: str, problem: str) -> None:
    attr = next(s.attr for s in config.SETTINGS.values() if s.env == name)
    with pytest.raises(ConfigError) as caught:
        config.resolve(None, [attr], environ={name: value})
    assert caught.value.setting == name and problem in caught.value.problem


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TASKYARD_VACUUM_SECONDS", "0", 0.0),
        ("TASKYARD_VACUUM_SECONDS", "1", 1.0),
        ("TASKYARD_VACUUM_SECONDS", "3600", 3600.0),
        ("TASKYARD_LEASE_TTL_SECONDS", "1", 1.0),
        ("TASKYARD_POLL_INTERVAL_SECONDS", "0.05", 0.05),
        ("TASKYARD_LEADER_TTL_SECONDS", "1.5", 1.5),
    ],
)
def test_an_interval_at_its_floor_or_off_is_taken(name: str, value: str, expected: float) -> None:
    attr = next(s.attr for s in config.SETTINGS.values() if s.env == name)
    settings = config.resolve(None, [attr], environ={name: value})
    assert getattr(settings, attr) == expected


def test_a_bad_file_is_named(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "taskyard.toml", "api_treads = 4\n")
    with pytest.raises(ConfigError, match="unknown setting 'api_treads'") as caught:
        config.resolve(parse([]), USED, environ={})
    assert caught.value.setting == str(path)
    write_toml(path, "api_threads = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.resolve(parse([]), USED, environ={})
    path.write_bytes(b"\xff\xfeapi_threads = 4\n")
    with pytest.raises(ConfigError, match="not valid TOML: not UTF-8") as caught:
        config.resolve(parse([]), USED, environ={})
    assert caught.value.setting == str(path)
    write_toml(path, 'api_threads = "x"\n')
    with pytest.raises(ConfigError) as caught:
        config.resolve(parse([]), USED, environ={})
    assert caught.value.setting == f"api_threads in {path}"
    write_toml(path, "api_threads = 4.0\n")
    with pytest.raises(ConfigError, match=r"must be an integer, not 4\.0") as caught:
        config.resolve(parse([]), USED, environ={})
    assert caught.value.setting == f"api_threads in {path}"
    with pytest.raises(ConfigError, match="no such file") as caught:
        config.resolve(parse([]), USED, environ={"TASKYARD_CONFIG": "missing.toml"})
    assert caught.value.setting == "TASKYARD_CONFIG"


@pytest.mark.parametrize(
    ("argv", "environ", "line"),
    [
        (
            ["api"],
            {"TASKYARD_DATABASE_URL": "bogus://x"},
            "taskyard: TASKYARD_DATABASE_URL: unsupported scheme 'bogus' "
            "(use postgresql://, sqlite:///, memory://)",
        ),
        (["api"], {}, "taskyard: TASKYARD_DATABASE_URL: not set"),
        (
            ["api", "--db", "memory://", "--workers", "2"],
            {},
            "taskyard: --workers: 2 workers on memory:// would each keep jobs of their own",
        ),
        (["api", "--db", "memory://", "--config", "nope.toml"], {}, "taskyard: --config: no such"),
    ],
)
def test_the_command_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    line: str,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(line), err


def test_memory_runs_one_worker_and_a_database_two_by_default() -> None:
    memory = config.resolve(
        None, config.API_SETTINGS, environ={"TASKYARD_DATABASE_URL": "memory://"}
    )
    assert gunicorn_options(memory)["workers"] == 1
    sqlite = config.resolve(
        None,
        config.API_SETTINGS,
        environ={"TASKYARD_DATABASE_URL": "sqlite:///x.db", "TASKYARD_API_THREADS": "9"},
    )
    options = gunicorn_options(sqlite)
    assert options["workers"] == 2 and options["threads"] == 9
    assert options["bind"] == ["127.0.0.1:8000"] and options["timeout"] == 30
    assert options["accesslog"] is None and options["control_socket_disable"] is True


@pytest.mark.usefixtures("restore_logging")
def test_get_app_builds_the_api_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import falcon.testing

    from taskyard.entrypoints.api import get_app

    monkeypatch.setenv("TASKYARD_DATABASE_URL", "memory://")
    monkeypatch.setenv("TASKYARD_API_TOKENS", "env-token")
    client = falcon.testing.TestClient(get_app())
    assert client.simulate_get("/v1/jobs").status_code == 401
    authorized = {"Authorization": "Bearer env-token"}
    assert (
        client.simulate_post("/v1/jobs", json={"task": "t"}, headers=authorized).status_code == 201
    )
    monkeypatch.delenv("TASKYARD_DATABASE_URL")
    with pytest.raises(ConfigError, match="not set"):
        get_app()
