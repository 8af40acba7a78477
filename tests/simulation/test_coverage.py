"""The simulator alone runs at least 95 % of the domain's lines: the command of
`make sim-coverage` (`coverage run --source=taskyard/domain -m taskyard.entrypoints.cli
simulate --seeds 1..100`), run as it is in a subprocess, so that the lines that run when a
module is imported count as they do on the command line. One process: coverage would
need its multiprocessing mode to follow `--jobs`, and a hundred seeds take seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEEDS = "1..100"
FLOOR_PERCENT = 95.0


def test_the_simulator_alone_runs_95_percent_of_the_domain(tmp_path: Path) -> None:
    env = {**os.environ, "COVERAGE_FILE": str(tmp_path / "coverage.data")}
    run = [sys.executable, "-m", "coverage", "run", "--source=taskyard/domain"]
    simulated = subprocess.run(
        [*run, "-m", "taskyard.entrypoints.cli", "simulate", "--seeds", SEEDS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert simulated.returncode == 0, simulated.stdout[-3000:] + simulated.stderr[-3000:]
    report = tmp_path / "coverage.json"
    subprocess.run(
        [sys.executable, "-m", "coverage", "json", "-q", "-o", str(report)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    data = json.loads(report.read_text())
    total = data["totals"]["percent_covered"]
    misses = sorted(
        (len(info["missing_lines"]), name)
        for name, info in data["files"].items()
        if info["missing_lines"]
    )
    worst = ", ".join(f"{name} {count}" for count, name in reversed(misses[-8:]))
    assert total >= FLOOR_PERCENT, (
        f"the simulator runs {total:.1f} % of taskyard/domain's lines, under "
        f"{FLOOR_PERCENT} %; most lines missed: {worst}. Drive the new code from the "
        "simulator (docs/simulation.md), or move what is not a rule out of the domain."
    )
