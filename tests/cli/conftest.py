"""The command line in process: `cli.main(argv)` with its output captured, and an
in-process taskyard (API + scheduler + worker on the in-memory store) on a free port for
the client commands to talk to."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from taskyard.entrypoints import cli
from taskyard.entrypoints.config import Settings
from taskyard.entrypoints.standalone import Standalone


@attrs.frozen
class Ran:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


RunCli = Callable[..., Ran]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TASKYARD_* from the machine, and a working directory without a taskyard.toml."""
    for name in list(os.environ):
        if name.startswith("TASKYARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    def run(*argv: str) -> Ran:
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Ran(code=code, out=captured.out, err=captured.err)

    return run


def start_system(**settings: object) -> Standalone:
    base: dict[str, object] = {
        "database_url": "memory://",
        "port": 0,
        "concurrency": 2,
        "poll_interval_s": 0.1,
        "lease_ttl_s": 5.0,
    }
    base.update(settings)
    return Standalone(Settings(**base)).start()  # type: ignore[arg-type]


@pytest.fixture
def system() -> Iterator[Standalone]:
    """taskyard in this process, serving on a free loopback port."""
    running = start_system()
    try:
        yield running
    finally:
        running.stop(grace_s=0)
