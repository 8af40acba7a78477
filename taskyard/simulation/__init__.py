"""The deterministic fault-injection simulator (see docs/simulation.md).

    from taskyard.simulation import simulate
    result = simulate(7)          # one world, drawn from seed 7, checked
    assert result.ok, result.report.violations

`taskyard.simulation.checker` judges a finished history against every guarantee of the
design; it takes plain values, so a real store's history can be checked the same way.
"""

from taskyard.simulation.checker import CheckReport, History, Violation, check
from taskyard.simulation.faults import FaultAction, FaultKind, FaultPlan
from taskyard.simulation.profiles import PROFILES, Run, draw
from taskyard.simulation.run import RunResult, simulate, summary
from taskyard.simulation.world import Scenario, WorkerSpec, World

__all__ = [
    "PROFILES",
    "CheckReport",
    "FaultAction",
    "FaultKind",
    "FaultPlan",
    "History",
    "Run",
    "RunResult",
    "Scenario",
    "Violation",
    "WorkerSpec",
    "World",
    "check",
    "draw",
    "simulate",
    "summary",
]
