"""A virtualenv of its own per system, under a cache folder outside the repository
(`~/.cache/taskyard-peers/<system>-<version>/` by default), made once and reused while its
pinned requirements are the same.

taskyard's is `taskyard-checkout-<hash of the checkout's path>/`, with the checkout
installed in editable mode: it always runs the code the checkout holds, and is reinstalled
when `pyproject.toml` changes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from systems import System

MARKER = "peers-requirements.json"
INSTALL_TIMEOUT_S = 900


class VenvError(Exception):
    pass


def _want(system: System, checkout: Path) -> dict[str, object]:
    if system.requirements:
        return {"requirements": list(system.requirements)}
    pyproject = (checkout / "pyproject.toml").read_bytes()
    return {
        "editable": str(checkout),
        "pyproject_sha256": hashlib.sha256(pyproject).hexdigest(),
    }


def venv_path(system: System, cache: Path, checkout: Path) -> Path:
    if system.requirements:
        return cache / system.venv_name
    digest = hashlib.sha256(str(checkout).encode()).hexdigest()[:10]
    return cache / f"taskyard-checkout-{digest}"


def ensure(system: System, *, cache: Path, checkout: Path, python: str, log: Path) -> Path:
    """The bin folder of the system's virtualenv, made (or remade) when needed. pip's
    output goes to `log`."""
    path = venv_path(system, cache, checkout)
    want = _want(system, checkout)
    marker = path / MARKER
    if marker.exists() and json.loads(marker.read_text()) == want:
        return path / "bin"
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    packages = list(system.requirements) if system.requirements else ["-e", str(checkout)]
    with log.open("a") as out:
        for command in (
            [python, "-m", "venv", str(path)],
            [str(path / "bin" / "python"), "-m", "pip", "install", "-q", *packages],
        ):
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
            try:
                done = subprocess.run(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise VenvError(f"{system.key}: {command[0]} timed out") from None
            if done.returncode != 0:
                raise VenvError(f"{system.key}: `{' '.join(command[:4])} ...` failed (see {log})")
    marker.write_text(json.dumps(want))
    return path / "bin"


def default_python() -> str:
    """The interpreter new virtualenvs are made from: the one running the benchmark."""
    return sys.executable
