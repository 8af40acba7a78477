"""No open API by accident: `standalone` and `api` on an address other machines can reach,
without tokens, refuse to start (exit 2, one line naming TASKYARD_API_TOKENS: the cases are
in BAD_SETTINGS, tests/cli/test_process_settings.py) unless the operator asks for an open
API with TASKYARD_API_OPEN=1 / --open. (`api` opting in is started for real in
tests/api/test_gunicorn.py.)"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskyard.entrypoints import config
from taskyard.entrypoints.config import ConfigError
from taskyard.entrypoints.exposure import is_loopback
from taskyard.entrypoints.standalone import Standalone


def _get(system: Standalone, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", int(system.url.rsplit(":", 1)[1]), timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _standalone(**settings: object) -> Standalone:
    base: dict[str, object] = {"database_url": "memory://", "port": 0, "concurrency": 1}
    return Standalone(config.Settings(**{**base, **settings}))  # type: ignore[arg-type]


def test_standalone_serves_an_open_api_on_any_address_only_when_asked_to() -> None:
    with pytest.raises(ConfigError) as refused:
        _standalone(host="0.0.0.0")
    assert refused.value.setting == "TASKYARD_API_TOKENS"
    system = _standalone(host="0.0.0.0", api_open=True).start()
    try:
        assert _get(system, "/v1/jobs") == 200
    finally:
        system.stop(grace_s=0)


def test_tokens_let_standalone_listen_anywhere_and_are_then_needed() -> None:
    system = _standalone(host="0.0.0.0", api_tokens=("t0ken",)).start()
    try:
        assert _get(system, "/v1/jobs") == 401
        assert _get(system, "/healthz") == 200
    finally:
        system.stop(grace_s=0)


def test_the_open_setting_comes_from_the_flag_the_environment_or_the_file(
    tmp_path: Path,
) -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, config.STANDALONE_SETTINGS)
    flag = config.resolve(parser.parse_args(["--open"]), config.STANDALONE_SETTINGS, environ={})
    assert flag.api_open and flag.source("api_open") == "--open"
    environ = {"TASKYARD_API_OPEN": "1"}
    assert config.resolve(None, config.API_SETTINGS, environ=environ, cwd=tmp_path).api_open
    (tmp_path / "taskyard.toml").write_text("api_open = true\n")
    assert config.resolve(None, config.API_SETTINGS, environ={}, cwd=tmp_path).api_open
    assert not config.resolve(None, config.API_SETTINGS, environ={}, cwd=tmp_path / "x").api_open


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_loopback_exactly_inside_127_0_0_0_8(
    address: ipaddress.IPv4Address,
) -> None:
    inside = address in ipaddress.ip_network("127.0.0.0/8")
    assert is_loopback(str(address)) is inside
    assert is_loopback(f"::ffff:{address}") is inside


@given(st.ip_addresses(v=6))
def test_an_ipv6_address_is_loopback_only_as_1_or_a_mapped_127(
    address: ipaddress.IPv6Address,
) -> None:
    mapped = address.ipv4_mapped
    expected = address == ipaddress.ip_address("::1") or (mapped is not None and mapped.is_loopback)
    assert is_loopback(str(address)) is expected
    assert is_loopback(f"[{address}]") is expected


def test_a_name_is_loopback_when_everything_it_resolves_to_is() -> None:
    assert is_loopback("localhost")
    assert not is_loopback("nosuch.invalid")
