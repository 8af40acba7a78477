"""The project's own promises about itself: a pure domain, a fresh state-machine doc,
and formulas whose doctests hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import taskyard.domain
from taskyard.entrypoints import diagram

ROOT = Path(__file__).resolve().parents[2]
DOMAIN_MODULES = sorted(
    m.name for m in pkgutil.walk_packages(taskyard.domain.__path__, "taskyard.domain.")
)


def test_the_domain_imports_no_io_library() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {DOMAIN_MODULES!r}: importlib.import_module(name)\n"
        "bad = sorted({'psycopg', 'psycopg_pool', 'redis', 'falcon', 'gunicorn', 'sqlite3',\n"
        "              'prometheus_client', 'socket', 'urllib.request'} & set(sys.modules))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "", f"taskyard.domain pulled in: {done.stdout.strip()}"


def test_the_state_machine_doc_is_generated_from_the_table() -> None:
    committed = (ROOT / "docs" / "state-machine.md").read_text()
    assert committed == diagram.render(), (
        "docs/state-machine.md is stale: run `python -m taskyard.entrypoints.diagram > "
        "docs/state-machine.md`"
    )


@pytest.mark.parametrize("name", DOMAIN_MODULES)
def test_doctests_hold(name: str) -> None:
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0
