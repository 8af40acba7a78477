"""The files of deploy/ name only what exists: every `taskyard` command line in the compose
file, the Dockerfile and the systemd units parses with `taskyard`'s own parser, every
TASKYARD_* variable is a setting and its value passes that setting's check, nginx's body
limits are the API's, the alert rules use only metrics the API serves and pass promtool,
and the compose file passes `docker compose config` where that plugin is installed."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskyard.adapters.postgres.store import split_url
from taskyard.entrypoints.api.body import BATCH_BODY_BYTES_MAX, BODY_BYTES_MAX
from taskyard.entrypoints.api.metrics import METRICS
from taskyard.entrypoints.cli import build_parser
from taskyard.entrypoints.config import CONFIG_ENV, SETTINGS
from tests import services

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
PROMETHEUS = DEPLOY / "prometheus"
BY_ENV = {setting.env: setting for setting in SETTINGS.values()}
TOKEN = "deploy-files-test-token"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _interpolated(value: str) -> str:
    """Compose's `${NAME:?message}` and `${NAME}`, with a token for the one variable the
    file asks for."""
    return re.sub(r"\$\{TASKYARD_API_TOKENS(:\?[^}]*)?\}", TOKEN, value)


def _check_command(args: list[str], where: str) -> None:
    listed = re.findall(r"^    (\w+)", build_parser().format_help(), re.MULTILINE)
    assert args and args[0] in listed, f"{where}: {args[:1]} is not in `taskyard --help`"
    try:
        build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: `taskyard {shlex.join(args)}` does not parse")


def _check_setting(name: str, value: str, where: str) -> None:
    if name == CONFIG_ENV:
        return
    assert name in BY_ENV, f"{where}: {name} is not a taskyard setting"
    try:
        BY_ENV[name].parse(_interpolated(value))
    except ValueError as exc:
        pytest.fail(f"{where}: {name}={value!r}: {exc}")


# --- compose and the Dockerfile ------------------------------------------------------------


def _taskyard_services() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in _compose()["services"].items():
        if service.get("image", "").startswith("taskyard:"):
            yield name, service


def test_the_compose_file_runs_only_taskyard_commands_and_settings_that_exist() -> None:
    services_found = dict(_taskyard_services())
    commands = {name: service["command"][0] for name, service in services_found.items()}
    assert sorted(commands.values()) == ["api", "api", "migrate", "scheduler", "worker"]
    for name, service in services_found.items():
        _check_command(service["command"], f"compose service {name}")
        for key, value in service["environment"].items():
            _check_setting(key, str(value), f"compose service {name}")


def test_the_compose_topology_waits_for_migrate_and_runs_enough_of_each() -> None:
    compose = _compose()["services"]
    assert compose["migrate"]["restart"] == "no"
    for name, service in _taskyard_services():
        if name != "migrate":
            condition = service["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully", name
    assert compose["scheduler"]["deploy"]["replicas"] == 2
    assert compose["worker"]["deploy"]["replicas"] >= 1
    assert {"api-1", "api-2", "nginx", "postgres", "redis", "pgbouncer"} <= set(compose)
    # Only nginx is published; the API answers only through it.
    assert [name for name, service in compose.items() if "ports" in service] == ["nginx"]


def test_compose_processes_go_through_pgbouncer_with_its_url_setting_and_migrate_does_not() -> None:
    for name, service in _taskyard_services():
        url = service["environment"]["TASKYARD_DATABASE_URL"]
        _, pool = split_url(url)
        if name == "migrate":
            assert "@postgres:5432/" in url
        else:
            assert "@pgbouncer:6432/" in url and pool.prepare_threshold is None, name


def test_the_api_is_not_started_without_tokens() -> None:
    for name, service in _taskyard_services():
        if service["command"][0] == "api":
            assert service["environment"]["TASKYARD_API_TOKENS"].startswith(
                "${TASKYARD_API_TOKENS:?"
            ), name


def test_the_dockerfile_runs_a_taskyard_command_as_a_user_with_a_health_check() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    joined = text.replace("\\\n", " ")  # continuation lines
    instructions = re.findall(r"^([A-Z]+) (.*)$", joined, re.MULTILINE)
    last: dict[str, str] = {}
    for keyword, rest in instructions:
        last[keyword] = rest
    assert yaml.safe_load(last["ENTRYPOINT"]) == ["taskyard"]
    _check_command(yaml.safe_load(last["CMD"]), "Dockerfile CMD")
    assert last["USER"] == "taskyard"
    assert "/healthz" in last["HEALTHCHECK"]
    for name, value in re.findall(r"(TASKYARD_[A-Z_]+)=(\S+)", text):
        _check_setting(name, value, "Dockerfile ENV")


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")
def test_docker_compose_config_accepts_the_file_and_refuses_it_without_tokens(
    tmp_path: Path,
) -> None:
    plugin = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if plugin.returncode != 0:
        pytest.skip("the docker CLI's compose plugin is not installed (`docker compose` fails)")
    compose = ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"]
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        compose, env={**env, "TASKYARD_API_TOKENS": TOKEN}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    refused = subprocess.run(
        compose, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode != 0 and "TASKYARD_API_TOKENS" in refused.stderr


# --- systemd -------------------------------------------------------------------------------


def _unit_entries(path: Path) -> list[tuple[str, str]]:
    """`Key=value` lines of a unit file (a key may repeat, as EnvironmentFile= does)."""
    entries = []
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            entries.append((key.strip(), value.strip()))
    return entries


UNITS = sorted(SYSTEMD.glob("*.service"))


def test_there_is_a_unit_per_process_and_a_template_for_workers() -> None:
    assert [unit.name for unit in UNITS] == [
        "taskyard-api.service",
        "taskyard-migrate.service",
        "taskyard-scheduler.service",
        "taskyard-worker@.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=[unit.name for unit in UNITS])
def test_a_unit_runs_a_taskyard_command_with_settings_that_exist(unit: Path) -> None:
    entries = _unit_entries(unit)
    [exec_start] = [value for key, value in entries if key == "ExecStart"]
    binary, *args = shlex.split(exec_start)
    assert binary.endswith("/taskyard"), exec_start
    _check_command(args, unit.name)
    for key, value in entries:
        if key == "Environment":
            name, _, setting = value.partition("=")
            _check_setting(name, setting, unit.name)
        if key == "EnvironmentFile":
            assert value.lstrip("-").startswith("/etc/taskyard/"), value
    if args[0] != "migrate":
        assert ("RestartPreventExitStatus", "2") in entries, "a bad setting must not crash-loop"


def test_the_environment_file_names_only_settings_with_good_values() -> None:
    lines = (SYSTEMD / "taskyard.env.example").read_text().splitlines()
    names = []
    for line in lines:
        match = re.fullmatch(r"#?(TASKYARD_[A-Z_]+)=(.*)", line)
        if match:
            names.append(match.group(1))
            _check_setting(match.group(1), match.group(2), "taskyard.env.example")
    assert {"TASKYARD_DATABASE_URL", "TASKYARD_REDIS_URL", "TASKYARD_API_TOKENS"} <= set(names)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """With the path of this checkout's `taskyard` instead of /opt/taskyard/bin/taskyard."""
    taskyard = shutil.which("taskyard")
    assert taskyard is not None
    for unit in UNITS:
        name = unit.name.replace("@.", "@1.")
        (tmp_path / name).write_text(
            unit.read_text().replace("/opt/taskyard/bin/taskyard", taskyard)
        )
    done = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


# --- nginx ---------------------------------------------------------------------------------


def _size_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", text).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


def test_nginx_refuses_exactly_the_bodies_the_api_refuses() -> None:
    text = (DEPLOY / "nginx" / "taskyard.conf").read_text()
    limits = re.findall(r"^\s*client_max_body_size (\S+);", text, re.MULTILINE)
    batch = re.search(r"location = /v1/jobs/batch \{[^}]*client_max_body_size (\S+);", text)
    assert batch is not None
    assert [_size_bytes(v) for v in limits] == [BODY_BYTES_MAX, BATCH_BODY_BYTES_MAX]
    assert _size_bytes(batch.group(1)) == BATCH_BODY_BYTES_MAX
    assert "proxy_request_buffering on;" in text


# --- Prometheus ----------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_alert_rules_use_only_metrics_the_api_serves() -> None:
    suffixes = ("_total", "_bucket", "_sum", "_count")
    for rule in _rules():
        for name in re.findall(r"\btaskyard_[a-z_]+", rule["expr"]):
            base = next((name.removesuffix(s) for s in suffixes if name.endswith(s)), name)
            assert name in METRICS or base in METRICS, f"{rule['alert']}: {name}"


def test_the_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        services.unavailable("promtool", "not installed (apt-get install prometheus)")
    assert promtool is not None
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run(
            [promtool, *command], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
